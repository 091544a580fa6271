//! TCP sockets on the readiness driver: [`TcpStream`], [`TcpListener`],
//! [`listen`] (socket2 options, `bind.rs`), [`connect()`], the shard's read
//! buffer (`read_with.rs`), writes that keep only what the socket did not
//! take (`kept.rs`), delayed ACKs that ride on answers (`acks.rs`), and
//! hyper's I/O traits on the stream (`hyper_io.rs`).

pub(crate) mod acks;
pub(crate) mod bind;
mod connect;
pub(crate) mod fd;
mod hyper_io;
pub(crate) mod kept;
pub(crate) mod listener;
pub(crate) mod read_with;
pub(crate) mod stream;

pub use bind::{listen, listen_with, ListenOptions, DEFAULT_BACKLOG};
pub use connect::connect;
pub use listener::TcpListener;
pub use read_with::{ReadWith, SHARD_READ_BUFFER};
pub use stream::TcpStream;
