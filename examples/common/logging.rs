//! The examples' log output: `tracing` to stderr, at `info` unless
//! `RUST_LOG` says otherwise, coloured only on a terminal (a log file or a
//! pipe gets plain text, not escape codes).

use std::io::{self, IsTerminal};

/// Installs the subscriber; call once, first thing in `main`.
pub fn init() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .init();
}
