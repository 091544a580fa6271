//! ACKs that ride on answers: [`TcpStream::set_acks_with_answers`].
//!
//! A request/response server answers what it reads at once, so the answer
//! can carry the ACK of the request. Linux does that only while the socket
//! is in its interactive ("pingpong") delayed-ACK mode, and it leaves that
//! mode whenever a delayed-ACK timer runs out first: a request that waited
//! longer than the timeout (40 ms and up) before the server got to it,
//! which is routine for a busy server with thousands of connections. Out of
//! that mode, every read that empties the socket sends an ACK of its own at
//! once, a segment the server's CPU pays for in full (on loopback it also
//! runs the peer's receive path), just before the answer that would have
//! carried it.
//!
//! With the option on, the stream puts the socket back in delayed-ACK
//! mode (`TCP_QUICKACK` set to 0) after each write: after an answer, before
//! the next request arrives, so that its arrival schedules a delayed ACK
//! and the read that takes it sends none. It costs one `setsockopt` per
//! write and saves one segment per message that would have had an ACK of
//! its own. Whether it pays depends on the load: with few connections,
//! answers come in time, the kernel stays in that mode anyway, and the call
//! is pure cost; see BENCHMARKS.md for what it did in the 10k-connection
//! echo benchmark.

use std::io;

use crate::net::TcpStream;

impl TcpStream {
    /// Lets each answer carry the ACK of the request it answers: after
    /// every write, the socket is put (back) in delayed-ACK mode, one
    /// `setsockopt(TCP_QUICKACK, 0)` per write, so that the next request's
    /// arrival schedules a delayed ACK and reading it sends none. For
    /// request/response protocols whose handler answers right after the
    /// read; off by default. Linux leaves that mode on its own whenever a
    /// delayed-ACK timer runs out (a request that waited longer than the
    /// timeout, 40 ms and up, before the server answered), hence once per
    /// write rather than once per connection.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use shardlet::net;
    /// # shardlet::Runtime::new(shardlet::Config::default().with_shards(1).with_pin(false)).unwrap().run(|| async {
    /// # let listener = net::listen(([127, 0, 0, 1], 0))?;
    /// # let _client = net::connect(listener.local_addr()?, Duration::from_secs(5)).await?;
    /// let stream = listener.accept().await?;
    /// stream.set_acks_with_answers(true);
    /// assert!(stream.acks_with_answers());
    /// # std::io::Result::Ok(())
    /// # }).unwrap().into_iter().collect::<std::io::Result<()>>().unwrap();
    /// ```
    pub fn set_acks_with_answers(&self, on: bool) {
        self.acks_with_answers.set(on);
    }

    /// Whether [`set_acks_with_answers`](TcpStream::set_acks_with_answers) is on.
    pub fn acks_with_answers(&self) -> bool {
        self.acks_with_answers.get()
    }
}

/// After a write on `io`: back to delayed-ACK mode when asked. A failure is
/// only a missed saving (reads and writes report a broken socket).
#[inline]
pub(crate) fn after_answer(on: bool, io: &std::net::TcpStream) {
    if on {
        let _: io::Result<()> = socket2::SockRef::from(io).set_quickack(false);
    }
}
