//! `blocking()` off any shardlet runtime uses a process-wide pool sized by
//! `SHARDLET_BLOCKING_THREADS`; that value is held to the bound
//! `Runtime::new` enforces, instead of starting one thread per unit of a
//! typo. One test in this binary: the pool is made once per process, and
//! the variable must be set before that.

use shardlet::{ENV_BLOCKING_THREADS, MAX_BLOCKING_THREADS};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn a_value_above_the_bound_is_held_to_it_outside_a_runtime() {
    // The only test in this binary: no other thread reads the environment.
    std::env::set_var(ENV_BLOCKING_THREADS, "100000");
    let before = threads();
    let answer = futures_lite::future::block_on(shardlet::blocking(|| 6 * 7));
    assert_eq!(answer, Ok(42));
    let started = threads() - before;
    assert!(
        (1..=MAX_BLOCKING_THREADS).contains(&started),
        "{started} threads started for blocking() outside a runtime"
    );
}
