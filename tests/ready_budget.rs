//! A connection that always has data does not keep its shard's other tasks
//! waiting: after a run of reads that all found data, a read yields once.

#[path = "util/ready.rs"]
mod ready_util;
mod util;

use std::cell::Cell;
use std::io::Write;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::AsyncReadExt;
use util::run1;

/// Reads made, each finding data already there: more than the budget.
const READS: usize = 64;

#[test]
fn a_stream_that_always_has_data_lets_other_tasks_run() {
    let ticks = run1(|| async {
        let (mut mine, mut peer) = ready_util::std_pair();
        let writer = std::thread::spawn(move || {
            // More than the reads take; blocks once the buffers are full.
            let _ = peer.write_all(&vec![7u8; 1 << 20]);
        });
        // Let the data pile up in the socket before the first read.
        shardlet::sleep(Duration::from_millis(200)).await;
        let ticks = Rc::new(Cell::new(0u32));
        let ticker = shardlet::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    ticks.set(ticks.get() + 1);
                    futures_lite::future::yield_now().await;
                }
            }
        });
        let before = ticks.get();
        let mut buf = [0u8; 1024];
        for _ in 0..READS {
            mine.read_exact(&mut buf).await.unwrap();
        }
        let ticks = ticks.get() - before;
        ticker.cancel();
        drop(mine);
        writer.join().unwrap();
        ticks
    });
    assert!(ticks > 0, "{READS} reads in a row never let the other task run");
}
