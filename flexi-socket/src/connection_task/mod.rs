//! The per-connection task: read → decode → classify once → after_receive →
//! route → handler, one event at a time; beside it, in the same task, a
//! writer fed by the bounded outbound queue that writes all ready frames in
//! one write. Closing is "stop reading, handle what was read, flush, FIN,
//! drain the peer's leftovers, close", so neither side loses what was accepted.
//!
//! Every wake-up of every connection runs through here, and every idle
//! connection holds this task's state, so both stay small: the waits are
//! hand-written polls (readiness, the close signal, the outbound queue)
//! with no timer (the server's deadline sweeper closes connections that
//! time out), and the state of an activity is boxed only while it runs.

mod driver;
mod reading;
mod writing;

use std::future::Future;

use crate::connection::Connection;
use crate::outbound::OutboundReceiver;
use crate::stream::{StreamReader, StreamWriter};

/// Serves one accepted connection until it ends; fires on_disconnect exactly
/// once, even when the shutdown deadline cuts the connection short. `held`
/// (a place under the connection limits, say) is dropped at the end.
pub(crate) fn run(
    reader: impl StreamReader,
    writer: impl StreamWriter,
    connection: Connection,
    outbound: OutboundReceiver,
    held: impl Send + Unpin,
) -> impl Future<Output = ()> + Send {
    driver::Driver::new(reader, writer, connection, outbound, held)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::client_framing::ClientFraming;
    use crate::framing::Framing;
    use crate::limits::Limits;
    use crate::outbound::{self, Transport};
    use crate::router::Router;
    use crate::server::ServerContext;

    /// Every idle connection holds this task's future, and nothing else of
    /// its own but the connection: it is much of what an idle connection
    /// costs (the target is at most 2 KiB per idle connection, RSS included;
    /// 1.76 KiB measured with this task at 328 bytes plus a server's 48-byte
    /// `Admission`, and the echo handler's future kept in the slot).
    #[tokio::test]
    async fn an_idle_connection_task_stays_small() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let routes = Router::new().resolve(None, false).unwrap();
        let limits = Limits::default();
        let context = ServerContext::new(
            routes,
            None,
            None,
            Framing::lines(),
            ClientFraming::default(),
            limits,
            None,
        );
        let (sender, receiver) = outbound::channel(&context.limits, Transport::Stream);
        let peer = client.local_addr().unwrap();
        let connection = Connection::new(1, peer, peer, Arc::clone(&context), sender).unwrap();
        let (reader, writer) = client.into_split();
        let task_size = std::mem::size_of_val(&run(reader, writer, connection, receiver, ()));
        eprintln!("connection task {task_size} bytes");
        assert!(
            task_size <= 336,
            "an idle connection's task grew to {task_size} bytes"
        );
    }
}
