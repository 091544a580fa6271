//! What `TcpStream::write_or_keep` holds is what it has not sent: with a
//! peer that reads slowly and a writer that keeps adding while a flush
//! only gets part of the way (a flush under a timeout, a write cancelled
//! midway), the connection's buffer stays near the unsent bytes instead of
//! also holding every byte already sent.
//!
//! Heap use is counted by this test binary's own allocator.

#[path = "util/ready.rs"]
mod ready_util;
mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Read;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use futures_lite::AsyncWriteExt;
use util::run1;

/// The system allocator, counting the bytes live on the heap.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const CHUNK: usize = 4 << 20;
const ROUNDS: usize = 16;

#[test]
fn kept_bytes_already_sent_are_not_held_on_to() {
    let (most_kept, most_held) = run1(|| async {
        let (mut mine, peer) = ready_util::std_pair();
        // The peer reads one chunk each time it is told to.
        let (tell, told) = flume::bounded::<()>(1);
        let (done_tx, done) = flume::bounded::<()>(1);
        let reader = std::thread::spawn(move || {
            let mut peer = peer;
            let mut buf = vec![0u8; CHUNK];
            while told.recv().is_ok() {
                peer.read_exact(&mut buf).unwrap();
                done_tx.send(()).unwrap();
            }
        });
        let chunk = vec![7u8; CHUNK];
        // More than loopback's buffers take at once: part of it is kept.
        for _ in 0..4 {
            mine.write_or_keep(&chunk).unwrap();
        }
        let base = LIVE.load(Ordering::Relaxed);
        let (mut most_kept, mut most_held) = (0isize, 0isize);
        for _ in 0..ROUNDS {
            // The peer takes one chunk while a flush sends; then a flush
            // that gets only part of the way (more than a chunk is kept).
            tell.send_async(()).await.unwrap();
            futures_lite::future::or(async { done.recv_async().await.unwrap() }, async {
                let _ = mine.flush().await;
                done.recv_async().await.unwrap()
            })
            .await;
            let _ = shardlet::timeout(Duration::from_millis(50), mine.flush()).await;
            mine.write_or_keep(&chunk).unwrap();
            most_kept = most_kept.max(mine.kept_len() as isize);
            most_held = most_held.max(LIVE.load(Ordering::Relaxed) - base);
        }
        drop(tell);
        drop(mine);
        reader.join().unwrap();
        (most_kept, most_held)
    });
    assert!(most_kept > 0, "nothing was kept: nothing tested");
    // The buffer may hold up to twice what it needs (a Vec grows by
    // doubling), not the sum of every chunk sent through it.
    assert!(
        most_held <= 2 * most_kept + (CHUNK as isize),
        "kept at most {most_kept} unsent bytes but held {most_held} more heap bytes \
         ({ROUNDS} rounds of {CHUNK})"
    );
}
