//! The reusable parts of shardlet's example applications, apart from their
//! command lines so that the tests and benchmarks can run them in-process:
//!
//! - [`crawler`]: Eventlet's client pattern (`GreenPool::imap`), run by
//!   `examples/crawler.rs` and measured by `crawl_bench` (bench/).
//! - [`feed_scraper`]: Eventlet's dispatch pattern (a `GreenPile` bound to a
//!   `GlobalLimit`, behind an HTTP server), run by `examples/feed_scraper/`
//!   and measured by `cargo bench --bench http`.
//!
//! Not published: the examples are what users copy, and this crate is
//! where their logic lives.

pub mod crawler;
pub mod feed_scraper;

/// A command line's time limit in seconds: a finite number from 0.001 to
/// 86,400 (a day). For clap's `value_parser`: anything else is an error
/// that names the value, not a panic or a silent 1 ms.
///
/// # Errors
///
/// The value is not a number, or out of that range.
pub fn seconds(text: &str) -> Result<f64, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(0.001..=86_400.0).contains(&secs) {
        return Err(format!("`{text}` seconds: must be from 0.001 to 86400"));
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    #[test]
    fn seconds_take_what_a_duration_can_hold() {
        assert_eq!(super::seconds("1.5"), Ok(1.5));
        assert_eq!(super::seconds("86400"), Ok(86_400.0));
        for bad in ["0", "-1", "nan", "inf", "1e20", "abc", "", "0.0001"] {
            assert!(super::seconds(bad).is_err(), "{bad}");
        }
    }
}
