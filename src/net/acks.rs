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
//! With the option on, the stream puts the socket back in delayed-ACK mode
//! (`TCP_QUICKACK` set to 0) before each read. It costs one `setsockopt`
//! per read and saves one segment per message that would have had its own
//! ACK. In the 10k-connection echo benchmark it took the segments per round
//! trip from about 3.2 to 2.8 and the server's CPU per message down by
//! about a tenth (see BENCHMARKS.md); with few connections, answers come in
//! time, the kernel stays in that mode anyway, and the call is pure cost.

use std::io;

use crate::net::TcpStream;

impl TcpStream {
    /// Lets each answer carry the ACK of the request it answers: before
    /// every read, the socket is put (back) in delayed-ACK mode (see the
    /// module docs of `acks.rs`: one `setsockopt(TCP_QUICKACK, 0)` per
    /// read). For request/response protocols whose handler writes its
    /// answer right after the read; off by default.
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

/// Before a read on `io`: back to delayed-ACK mode when asked. A failure is
/// only a missed saving (the read itself reports a broken socket).
#[inline]
pub(crate) fn before_read(on: bool, io: &std::net::TcpStream) {
    if on {
        let _: io::Result<()> = socket2::SockRef::from(io).set_quickack(false);
    }
}
