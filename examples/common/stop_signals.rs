//! The examples' stop signals: the first SIGINT or SIGTERM runs the
//! example's stop, a second one ends the process at once (status 130).

use std::io::{self, Write};

use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Calls `stop` on the first SIGINT or SIGTERM, from a thread of its own,
/// then says on stderr that `name` is stopping; a second signal exits.
///
/// That thread unblocks both signals for itself: a process started with
/// them blocked (a mask inherited from its parent, as some supervisors and
/// test harnesses leave it) would otherwise never see them and never stop.
#[allow(dead_code)] // not in embed_tokio, which waits on tokio's signals
pub fn on_stop(name: &'static str, stop: impl FnOnce() + Send + 'static) -> io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("stop-signals".into())
        .spawn(move || {
            if let Err(e) = unblock() {
                let _ = writeln!(io::stderr(), "{name}: {e}");
            }
            let mut signals = signals.forever();
            if signals.next().is_some() {
                // Stop first: a closed stderr must not keep it from
                // stopping (eprintln! panics on EPIPE).
                stop();
                let _ = writeln!(io::stderr(), "{name}: stopping (again to quit at once)");
            }
            if signals.next().is_some() {
                std::process::exit(130);
            }
        })?;
    Ok(())
}

/// Unblocks SIGINT and SIGTERM for the calling thread (and the threads it
/// starts after). A process started with them blocked would never see them.
pub fn unblock() -> io::Result<()> {
    let mut both = SigSet::empty();
    both.add(Signal::SIGINT);
    both.add(Signal::SIGTERM);
    pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&both), None)
        .map_err(|errno| io::Error::other(format!("cannot unblock SIGINT/SIGTERM: {errno}")))
}
