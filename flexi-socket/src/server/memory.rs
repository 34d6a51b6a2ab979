//! The in-memory listener of the test harness (feature `testing`): a
//! server whose "sockets" are pipes, accepted by the same accept loop as
//! TCP and run by the same stream driver. `flexi_socket::testing` wraps it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::io::DuplexStream;
use tokio::sync::{mpsc, oneshot};

use super::accept::{StreamListener, StreamSetup};
use super::builder::{ServerBuilder, Tcp};
use super::{Listener, Server};
use crate::connection::Connection;
use crate::error::Result;

/// The local address an in-memory server reports.
pub(crate) const SERVER_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// One peer's pipe, on its way to the accept loop.
#[derive(Debug)]
pub(crate) struct Pipe {
    /// The server's end.
    pub(crate) stream: DuplexStream,
    /// The address the connection reports as its peer's.
    pub(crate) peer_addr: SocketAddr,
    /// Told the connection once it is opened (not if it is refused).
    pub(crate) opened: oneshot::Sender<Connection>,
}

/// Hands pipes to an in-memory server's accept loop.
pub(crate) type Connector = mpsc::UnboundedSender<Pipe>;

impl Server {
    /// A server built by `builder` that accepts pipes from the returned
    /// connector instead of a socket (TLS settings do not apply).
    pub(crate) fn in_memory(builder: ServerBuilder<Tcp>) -> Result<(Server, Connector)> {
        let (endpoint, _addr, _tcp) = builder.into_endpoint(None)?;
        let (connector, pipes) = mpsc::unbounded_channel();
        let listener = Listener::Stream(StreamListener::Memory(pipes));
        let server = Server::new(listener, endpoint, StreamSetup::default())?;
        Ok((server, connector))
    }
}
