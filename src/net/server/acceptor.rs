//! The handoff acceptor: a thread beside shard 0 (pinned to its CPU) that
//! accepts every connection of a [`Server`](crate::net::Server) in
//! [`AcceptMode::Handoff`](crate::AcceptMode::Handoff) and hands each to the
//! least-loaded shard through the [`Handoff`] mailboxes.
//!
//! Why a thread and not a task on shard 0: glommio's `shared_accept` gives a
//! bare descriptor that nothing closes if it is dropped on its way (a
//! leak on every stop), and its accept costs four system calls. An `accept`
//! on a thread costs one while connections keep coming, yields an owned
//! `std::net::TcpStream` that closes itself wherever it is dropped, and
//! sleeps in the kernel (`poll`) while there is nothing to accept; it never
//! delays shard 0's tasks.
//!
//! Stopping: the thread checks its stop flags between accepts; a stop also
//! shuts the listener down (`shutdown(SHUT_RD)` wakes the `poll` on Linux),
//! and the poll's timeout ([`ACCEPT_TICK`]) bounds the wait if that does
//! not. The listener is non-blocking and the thread waits in `poll`, not in
//! a blocking `accept` with a receive timeout (`SO_RCVTIMEO`): Linux copies
//! that timeout to every accepted socket, whose blocking reads would then
//! fail after it.

use std::io;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags};
use socket2::Socket;

use crate::net::server::accept_errors::AcceptError;
use crate::net::server::backoff::{log_backoff, Backoff};
use crate::net::server::mailboxes::Handoff;
use crate::net::server::stats::Counters;
use crate::net::server::stops::Stops;
use crate::net::WhenFull;

/// The longest the acceptor waits for a connection without looking at the
/// stop flags.
const ACCEPT_TICK: Duration = Duration::from_millis(100);

/// Handle to a running acceptor thread; dropping it stops the thread.
#[derive(Debug)]
pub(crate) struct Acceptor {
    quit: Arc<AtomicBool>,
    /// A second handle on the listening socket, to shut it down.
    socket: Socket,
    handoff: Arc<Handoff>,
    /// Disconnects when the thread ends.
    done: flume::Receiver<()>,
}

impl Acceptor {
    /// Starts accepting on `socket` (bound and listening) into `handoff`;
    /// failed accepts, and clients refused while every shard is full
    /// (`when_full` [`WhenFull::Close`]), are counted in `errors` (shard 0's
    /// counters).
    pub(crate) fn start(
        socket: Socket,
        handoff: Arc<Handoff>,
        errors: Arc<Counters>,
        stops: Stops,
        cpu: Option<usize>,
        when_full: WhenFull,
    ) -> io::Result<Acceptor> {
        socket.set_nonblocking(true)?;
        let handle = socket.try_clone()?;
        let quit = Arc::new(AtomicBool::new(false));
        let (done_tx, done) = flume::bounded::<()>(0);
        let thread = Run {
            listener: socket.into(),
            handoff: handoff.clone(),
            errors,
            quit: quit.clone(),
            stops,
            when_full,
        };
        std::thread::Builder::new()
            .name("shardlet-acceptor".into())
            .spawn(move || {
                let _done = done_tx;
                if let Some(id) = cpu {
                    core_affinity::set_for_current(core_affinity::CoreId { id });
                }
                thread.run();
            })?;
        Ok(Acceptor {
            quit,
            socket: handle,
            handoff,
            done,
        })
    }

    /// Stops accepting now: the listener is shut down (pending connections
    /// in its backlog are reset) and the thread ends shortly after.
    pub(crate) fn stop(&self) {
        if !self.quit.swap(true, Ordering::SeqCst) {
            let _ = self.socket.shutdown(std::net::Shutdown::Read);
            self.handoff.interrupt();
        }
    }

    /// Resolves once the thread has ended (and closed the listener).
    pub(crate) async fn finished(&self) {
        let _ = self.done.recv_async().await;
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Run {
    listener: TcpListener,
    handoff: Arc<Handoff>,
    /// Shard 0's counters, where failed accepts are counted.
    errors: Arc<Counters>,
    quit: Arc<AtomicBool>,
    stops: Stops,
    when_full: WhenFull,
}

impl Run {
    fn run(self) {
        let stopping = || self.quit.load(Ordering::SeqCst) || self.stops.is_requested();
        let mut backoff = Backoff::new();
        tracing::debug!(target: "shardlet::net", addr = ?self.listener.local_addr().ok(), "handoff acceptor started");
        let close_when_full = self.when_full == WhenFull::Close;
        // Waiting: only accept while some shard can take a connection; with
        // `Close`, accept anyway and close what no shard can take.
        while if close_when_full {
            !stopping()
        } else {
            self.handoff.wait_for_room(&stopping)
        } {
            match self.listener.accept() {
                Ok((stream, _peer)) => {
                    if let Some((failures, outage)) = backoff.recovered() {
                        tracing::info!(target: "shardlet::net", failures, ?outage, "accepting again");
                    }
                    // Pick now, not before `accept`: loads may have changed
                    // while it waited. (One pick per connection: ties rotate.)
                    let picked = if close_when_full {
                        self.handoff.pick()
                    } else {
                        self.handoff.wait_and_pick(&stopping)
                    };
                    let Some(shard) = picked else {
                        if close_when_full && !stopping() {
                            self.errors.accepted.fetch_add(1, Ordering::Relaxed);
                            self.errors.refused.fetch_add(1, Ordering::Relaxed);
                        }
                        continue; // every shard full (Close), or stopping: the stream closes here
                    };
                    if self.handoff.send(shard, stream, &stopping).is_err() {
                        break;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.wait_readable(&stopping),
                Err(err) => match AcceptError::classify(&err) {
                    AcceptError::Transient => {}
                    AcceptError::Fatal => {
                        if !stopping() {
                            tracing::error!(target: "shardlet::net", error = %err, "handoff acceptor: listener failed; no longer accepting");
                        }
                        break;
                    }
                    AcceptError::Resource | AcceptError::Unknown => {
                        self.errors.accept_errors.fetch_add(1, Ordering::Relaxed);
                        let delay = backoff.fail();
                        log_backoff(&err, delay, backoff.failures());
                        sleep_unless(delay, &stopping);
                    }
                },
            }
        }
        tracing::debug!(target: "shardlet::net", "handoff acceptor stopped");
    }
}

impl Run {
    /// Waits until the listener has a connection to accept (or is shut
    /// down), at most [`ACCEPT_TICK`].
    fn wait_readable(&self, stopping: &dyn Fn() -> bool) {
        let mut fds = [PollFd::new(&self.listener, PollFlags::POLLIN)];
        match poll(&mut fds, ACCEPT_TICK.as_millis() as i32) {
            Ok(_) | Err(Errno::EINTR) => {}
            // Not expected on a valid descriptor; no spinning if it happens.
            Err(err) => {
                tracing::debug!(target: "shardlet::net", error = %err, "handoff acceptor: poll failed");
                sleep_unless(ACCEPT_TICK, stopping);
            }
        }
    }
}

fn sleep_unless(delay: Duration, stopping: &dyn Fn() -> bool) {
    let step = Duration::from_millis(10);
    let mut left = delay;
    while !left.is_zero() && !stopping() {
        let nap = left.min(step);
        std::thread::sleep(nap);
        left -= nap;
    }
}
