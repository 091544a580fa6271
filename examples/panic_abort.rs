//! A handler that panics under `panic = "abort"`: the message must reach
//! stderr before the process aborts (tests/panics.rs builds this with
//! `cargo build --profile panic-abort --example panic_abort` and checks).
//!
//! ```text
//! cargo run --profile panic-abort --example panic_abort   # aborts, exit 134, after the message
//! cargo run --example panic_abort                         # unwinds: the panic is caught
//! ```

use std::time::Duration;

use shardlet::{Config, Runtime};

fn main() {
    let runtime = Runtime::new(Config::default().with_shards(1).with_pin(false)).expect("runtime");
    runtime
        .run(|| async {
            shardlet::spawn_n(async { panic!("handler blew up under panic=abort") });
            shardlet::sleep(Duration::from_millis(100)).await;
        })
        .expect("the shard ran");
    println!("not aborted: built with panic = \"unwind\", the panic was caught");
}
