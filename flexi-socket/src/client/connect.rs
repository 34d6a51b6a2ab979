//! The client's task: connect (and TLS), hand over the handshake and the
//! outbox, serve the connection, and reconnect with backoff.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::{Settings, Shared, Status};
use crate::config::{Reconnect, SlowConsumerPolicy};
use crate::connection::Connection;
use crate::connection::outbound::Transport;
use crate::message::Message;
use crate::peer_addr::PeerAddr;
use crate::transport::stream::{self, Stream};

/// How long a connection must live for its loss to start the backoff afresh.
const STABLE_CONNECTION: Duration = Duration::from_secs(1);

/// Connects, serves the connection until it ends, and reconnects as the
/// policy says, until closed or given up.
pub(super) async fn keep_connected(shared: Arc<Shared>, settings: Settings) {
    let shutdown = &shared.endpoint.shutdown;
    let mut failures = 0_u32;
    loop {
        let opened = tokio::select! {
            () = shutdown.begun() => break,
            opened = open(&shared, &settings) => opened,
        };
        let stream = match opened {
            Ok(stream) => stream,
            Err(why) => {
                if !backoff(&shared, &settings.reconnect, &mut failures, why).await {
                    break;
                }
                continue;
            }
        };
        let opened_at = tokio::time::Instant::now();
        serve(&shared, &settings, stream).await;
        if shutdown.has_begun() {
            break;
        }
        shared.status.send_replace(Status::Connecting);
        tracing::info!(addr = %shared.addr, "connection lost; reconnecting");
        // A connection that lived a while starts the backoff afresh; one that
        // died at once (a server that accepts and closes, a TLS server that
        // refuses us after the handshake) counts as one more failed attempt,
        // so the delays grow instead of reconnecting in a tight loop.
        if opened_at.elapsed() >= STABLE_CONNECTION {
            failures = 0;
        }
        let why = "the connection was lost".to_owned();
        if !backoff(&shared, &settings.reconnect, &mut failures, why).await {
            break;
        }
    }
    if !matches!(*shared.status.borrow(), Status::GaveUp(_)) {
        shared.status.send_replace(Status::Closed);
    }
    // Senders waiting for room learn that nothing will come.
    shared.outbox_room.notify_waiters();
}

/// Waits before the next attempt; `false` when the policy gives up (or the
/// client is closed meanwhile).
async fn backoff(shared: &Shared, reconnect: &Reconnect, failures: &mut u32, why: String) -> bool {
    *failures += 1;
    let Some(delay) = reconnect.delay_after(*failures) else {
        tracing::warn!(addr = %shared.addr, attempts = *failures, reason = %why, "giving up");
        shared.status.send_replace(Status::GaveUp(format!(
            "{why} (after {failures} attempt{})",
            if *failures == 1 { "" } else { "s" }
        )));
        return false;
    };
    tracing::debug!(reason = %why, ?delay, "retrying");
    tokio::select! {
        () = shared.endpoint.shutdown.begun() => false,
        () = tokio::time::sleep(delay) => true,
    }
}

/// A connection ready to serve: plain TCP, TLS once its handshake is done,
/// or a Unix socket.
enum Opened {
    Tcp(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

/// One attempt: connects under the connect timeout, then does the TLS
/// handshake if configured. The error is the sentence for the reconnect log
/// and [`Error::GaveUp`](crate::Error::GaveUp).
async fn open(shared: &Shared, settings: &Settings) -> std::result::Result<Opened, String> {
    let connecting = connect(&shared.addr);
    let opened = match tokio::time::timeout(settings.connect_timeout, connecting).await {
        Ok(Ok(opened)) => opened,
        Ok(Err(Failed::Resolve(error))) => {
            return Err(format!(
                "cannot resolve {}: {error} (is the host name right? retried, as DNS may answer later)",
                shared.addr
            ));
        }
        Ok(Err(Failed::Connect(error))) => {
            return Err(format!(
                "cannot connect to {}: {error} (is the server running and the address right?)",
                shared.addr
            ));
        }
        Err(_elapsed) => {
            return Err(format!(
                "connecting to {} took longer than {:?}",
                shared.addr, settings.connect_timeout
            ));
        }
    };
    opened.handshake(settings).await
}

/// Why one connect attempt failed: a name that does not resolve (yet) is
/// told apart from a server that does not answer.
enum Failed {
    Resolve(std::io::Error),
    Connect(std::io::Error),
}

/// Connects to `addr`: `host:port`, or `unix:PATH` for a Unix socket.
async fn connect(addr: &str) -> std::result::Result<Opened, Failed> {
    #[cfg(unix)]
    if let Some(path) = addr.strip_prefix(crate::peer_addr::UNIX_PREFIX) {
        return tokio::net::UnixStream::connect(path)
            .await
            .map(Opened::Unix)
            .map_err(Failed::Connect);
    }
    let resolved: Vec<_> = tokio::net::lookup_host(addr)
        .await
        .map_err(Failed::Resolve)?
        .collect();
    let stream = TcpStream::connect(&resolved[..])
        .await
        .map_err(Failed::Connect)?;
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
    Ok(Opened::Tcp(stream))
}

impl Opened {
    /// The TLS handshake, if the client speaks TLS.
    async fn handshake(self, settings: &Settings) -> std::result::Result<Opened, String> {
        match (self, settings) {
            #[cfg(feature = "tls")]
            (Opened::Tcp(stream), Settings { tls: Some(tls), .. }) => {
                let stream = tls.handshake(stream).await?;
                Ok(Opened::Tls(Box::new(stream)))
            }
            (opened, _) => Ok(opened),
        }
    }

    /// Where the connection runs between: (local, peer).
    fn addresses(&self) -> std::io::Result<(PeerAddr, PeerAddr)> {
        let tcp = match self {
            Opened::Tcp(stream) => stream,
            #[cfg(feature = "tls")]
            Opened::Tls(stream) => stream.get_ref().0,
            #[cfg(unix)]
            Opened::Unix(stream) => {
                let named = |addr: tokio::net::unix::SocketAddr| {
                    addr.as_pathname()
                        .map_or(PeerAddr::Unix(None), PeerAddr::unix)
                };
                return Ok((named(stream.local_addr()?), named(stream.peer_addr()?)));
            }
        };
        Ok((tcp.local_addr()?.into(), tcp.peer_addr()?.into()))
    }
}

/// Runs an open connection on the stream its task reads and writes.
async fn serve(shared: &Arc<Shared>, settings: &Settings, stream: Opened) {
    let Ok(addrs) = stream.addresses() else {
        return;
    };
    match stream {
        Opened::Tcp(stream) => {
            serve_stream(shared, settings, addrs, stream::shared_tcp(stream)).await;
        }
        #[cfg(feature = "tls")]
        Opened::Tls(stream) => {
            let stream = crate::transport::tls::driven(*stream, &shared.endpoint.framing);
            serve_stream(shared, settings, addrs, stream).await;
        }
        #[cfg(unix)]
        Opened::Unix(stream) => serve_stream(shared, settings, addrs, stream).await,
    }
}

/// Runs one connection: handshake and outbox first, then the usual
/// connection task until it ends.
async fn serve_stream(
    shared: &Arc<Shared>,
    settings: &Settings,
    (local_addr, peer_addr): (PeerAddr, PeerAddr),
    stream: impl Stream,
) {
    let endpoint = &shared.endpoint;
    let (connection, queue) = match endpoint.open(peer_addr, local_addr, Transport::Stream) {
        Ok(opened) => opened,
        Err(error) => {
            // Dropping the stream closes it; the reconnect policy decides what follows.
            tracing::error!(%error, "connection dropped");
            return;
        }
    };
    endpoint.register(&connection);
    let (flushed, flushed_signal) = oneshot::channel();
    let handover = async {
        let ready = hand_over(shared, &connection, settings.handshake.clone()).await;
        let _ = flushed.send(ready);
    };
    let running = stream::run(stream, connection.clone(), queue, ());
    // Biased, handover first: its sends are then always followed by a poll
    // of the connection's writer in the same turn (see outbound::Queue).
    tokio::join!(biased; handover, running);
    // Requests whose reply this connection owed end now, not at their timeout.
    shared.replies.connection_ended(connection.id());
    if let Ok(false) = flushed_signal.await {
        tracing::debug!("the connection ended before the outbox was flushed");
    }
    let mut state = shared.lock();
    if state
        .connection
        .as_ref()
        .is_some_and(|c| c.id() == connection.id())
    {
        state.connection = None;
    }
}

/// Sends the handshake and the outbox in order, then makes the connection
/// the client's current one (so later sends cannot overtake the outbox).
async fn hand_over(shared: &Shared, connection: &Connection, handshake: Option<Message>) -> bool {
    // The handshake and the outbox may be more than the outbound queue holds
    // at once: they wait for room whatever the policy for later sends says.
    let patience = SlowConsumerPolicy::Wait(shared.endpoint.limits.shutdown_timeout);
    if let Some(handshake) = handshake
        && connection
            .send_for(handshake, None, Some(patience))
            .await
            .is_err()
    {
        return false;
    }
    loop {
        let next = {
            let mut state = shared.lock();
            match state.outbox.pop_front() {
                Some(message) => message,
                None => {
                    state.connection = Some(connection.clone());
                    break;
                }
            }
        };
        shared.outbox_room.notify_waiters();
        let sent = connection.send_for(next.message.clone(), next.request, Some(patience));
        if sent.await.is_err() {
            // Not sent: it stays first in line for the next connection.
            shared.lock().outbox.push_front(next);
            return false;
        }
    }
    shared.outbox_room.notify_waiters();
    shared.status.send_replace(Status::Connected);
    tracing::info!(addr = %shared.addr, "connected");
    true
}
