//! A datagram session: one UDP peer served as a [`Connection`]. Its datagrams
//! arrive through a bounded inbox and are handled in order, one at a time, by
//! the shared event pipeline; its replies leave through the connection's
//! bounded outbound queue, one datagram each. The server opens one session
//! per peer address; a client has one with its server.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

use super::in_place::InPlace;
use super::inbox::{Datagrams, Inbox, SendFailures, inbox};
use super::messages::MessageBuffer;
use crate::connection::outbound::{Frames, OutboundReceiver};
use crate::connection::report;
use crate::connection::{CloseStage, Connection, DisconnectReason};
use crate::error::Error;
use crate::events::{
    Suspended, classify_first_unit, on_connect, on_disconnect, on_frame, resume, until_aborted,
};
use crate::framing::{Decoded, Decoding, FrameDecoder};
use crate::handler::HandlerSlot;
use crate::transport::decoder::{ConnectionDecoder, Prepared};

/// One received datagram, as its session gets it.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A datagram within the limit: one message, or several with a framing.
    Datagram(Bytes),
    /// A datagram over the limit, of which only the length is kept.
    TooLarge { length: usize, max: usize },
    /// Receiving failed (on a client's connected socket, typically the ICMP
    /// refusal of an earlier datagram: nothing listens at the server's
    /// port), or sending a reply did.
    Failed(io::Error),
    /// A datagram whose handling the receiving side started in place and
    /// could not finish at once (see `in_place`): the session goes on with it.
    Resumed(Box<Resumption>),
    /// A datagram handled in place ended the session, for this reason.
    Ended(DisconnectReason),
}

/// What a delivery started in place leaves to its session.
pub(crate) struct Resumption {
    pub(super) suspended: Suspended,
    /// The slot the handler's future lives in.
    pub(super) slot: HandlerSlot,
}

impl std::fmt::Debug for Resumption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resumption").finish_non_exhaustive()
    }
}

impl Inbound {
    /// What arrived: `datagram`, `length` bytes long (its bytes may have been
    /// cut to the room there was; then it is over `max`), copied into
    /// `messages`.
    pub(crate) fn received(
        datagram: &[u8],
        length: usize,
        max: usize,
        messages: &mut MessageBuffer,
    ) -> Self {
        if length > max {
            Inbound::TooLarge { length, max }
        } else {
            Inbound::Datagram(messages.copy(datagram))
        }
    }

    /// Whether this came from the peer, which keeps its session alive.
    pub(super) fn is_from_peer(&self) -> bool {
        !matches!(self, Inbound::Failed(_))
    }
}

/// Where a session's datagrams go.
#[derive(Debug, Clone)]
pub(crate) enum DatagramPeer {
    /// A server's peer: its address, through a socket shared with other sessions.
    Addressed {
        socket: Arc<UdpSocket>,
        addr: SocketAddr,
    },
    /// A client's server: the socket is connected to it, so only its
    /// datagrams arrive and ICMP refusals are reported on the socket.
    Connected(Arc<UdpSocket>),
}

impl DatagramPeer {
    pub(crate) fn new(socket: Arc<UdpSocket>, addr: SocketAddr) -> Self {
        DatagramPeer::Addressed { socket, addr }
    }

    pub(crate) fn connected(socket: Arc<UdpSocket>) -> Self {
        DatagramPeer::Connected(socket)
    }

    async fn send(&self, datagram: &[u8]) -> io::Result<()> {
        // UDP sends a datagram whole or not at all.
        match self {
            DatagramPeer::Addressed { socket, addr } => socket.send_to(datagram, addr).await,
            DatagramPeer::Connected(socket) => socket.send(datagram).await,
        }
        .map(drop)
    }

    /// Sends `datagram` if the socket takes it now.
    pub(super) fn try_send(&self, datagram: &[u8]) -> io::Result<()> {
        match self {
            DatagramPeer::Addressed { socket, addr } => socket.try_send_to(datagram, *addr),
            DatagramPeer::Connected(socket) => socket.try_send(datagram),
        }
        .map(drop)
    }
}

/// How a session behaves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionConfig {
    /// How many datagrams may wait for the session's handlers.
    pub(crate) inbox: usize,
    /// Whether the framing splits each datagram; otherwise a datagram is one message.
    pub(crate) framed: bool,
    /// Whether the receiving side may handle a datagram in place (see
    /// `in_place`): a server's receive loop does, a client's does not.
    pub(crate) in_place: bool,
}

/// Opens the session of `connection`: the inbox that feeds it, and the
/// future that serves it until it ends (spawn it). The session ends when
/// the connection is closed (by `close()`, a panic, the endpoint's shutdown)
/// or goes idle; it fires on_disconnect once and flushes its replies.
pub(crate) fn open(
    connection: Connection,
    outbound: OutboundReceiver,
    peer: DatagramPeer,
    config: SessionConfig,
) -> (Inbox, impl Future<Output = ()> + Send + 'static) {
    let in_place = config.in_place.then(|| InPlace {
        connection: connection.clone(),
        flusher: outbound.flusher(),
        peer: peer.clone(),
        framed: config.framed,
    });
    let (inbox, datagrams) = inbox(connection.id(), config.inbox, in_place);
    let session = Session {
        connection,
        slot: HandlerSlot::default(),
        datagrams,
        config,
    };
    (inbox, run(session, outbound, peer))
}

struct Session {
    connection: Connection,
    /// The on_message handler's future, reused from one datagram to the next.
    slot: HandlerSlot,
    datagrams: Datagrams,
    config: SessionConfig,
}

async fn run(mut session: Session, outbound: OutboundReceiver, peer: DatagramPeer) {
    let connection = session.connection.clone();
    let disconnected = AtomicBool::new(false);
    let serve = serve(&mut session, outbound, peer, &disconnected);
    until_aborted(&connection, &disconnected, Box::pin(serve)).await;
}

async fn serve(
    session: &mut Session,
    outbound: OutboundReceiver,
    peer: DatagramPeer,
    disconnected: &AtomicBool,
) {
    let (finish, finish_signal) = oneshot::channel();
    let writing = write_loop(
        session.connection.clone(),
        peer,
        outbound,
        finish_signal,
        session.datagrams.send_failures(),
    );
    let handling = async {
        let connection = session.connection.clone();
        // This task is the session's own from on_connect on: a request from
        // one of its handlers could never be answered, and fails at once.
        connection.close_signal().driven_here().await;
        let reason = match on_connect(&connection).await {
            ControlFlow::Continue(()) => session.handle_until_closed().await,
            ControlFlow::Break(reason) => reason,
        };
        // From here on the connection reports itself closing and the peer's
        // next datagram opens a new session; sends from on_disconnect still work.
        connection.close_because(reason.clone());
        // A session that ends as it closes has handled every datagram; one
        // that a datagram's handling (or on_connect) ends leaves the rest.
        let unhandled = session.datagrams.close_dropping_waiting(&connection);
        if unhandled > 0 {
            connection
                .endpoint()
                .counters
                .datagrams_dropped
                .add(unhandled);
            tracing::debug!(unhandled, %reason, "datagrams dropped: their session ended first");
        }
        session.report_dropped().await;
        tracing::debug!(%reason, "session ends");
        // Before, not after: a cut in the middle of it does not run it again.
        disconnected.store(true, Ordering::Relaxed);
        on_disconnect(&connection, reason.clone()).await;
        let flush = reason != DisconnectReason::SlowConsumer;
        let _ = finish.send(flush);
    };
    // Biased: the writer is polled right after every poll of the handlers,
    // so their sends need not wake this task (see `outbound::Queue`).
    tokio::join!(biased; handling, writing);
}

impl Session {
    /// Handles datagrams until the connection closes or idles out, then the
    /// datagrams already received: nothing accepted into the inbox is lost,
    /// unless a datagram's handling ends the session first (the rest are
    /// then counted as dropped, see `serve`).
    async fn handle_until_closed(&mut self) -> DisconnectReason {
        let connection = self.connection.clone();
        // Made once, not per datagram. The session's task is the connection's own.
        let closed = connection
            .close_signal()
            .reached_by_driver(CloseStage::Closing);
        tokio::pin!(closed);
        // The endpoint's deadline sweeper closes the session once it idles out,
        // as it does a stream connection: no timer here, none per datagram.
        let (activity, deadlines) = (connection.activity(), &connection.endpoint().deadlines);
        activity.track(deadlines);
        loop {
            tokio::select! {
                biased;
                () = &mut closed => break,
                inbound = self.datagrams.recv() => {
                    // No sender left: whoever received for this session stopped.
                    let Some(inbound) = inbound else { break };
                    // Only the peer's datagrams keep the session alive (a
                    // failed send of ours does not), and the time their
                    // handlers take does not count: idle restarts when they end.
                    let from_peer = inbound.is_from_peer();
                    if from_peer {
                        activity.handlers_started();
                    }
                    let flow = self.handle(inbound).await;
                    if from_peer {
                        activity.handlers_done(deadlines);
                    }
                    if let ControlFlow::Break(reason) = flow {
                        return reason;
                    }
                }
            }
        }
        self.datagrams.close();
        while let Some(inbound) = self.datagrams.recv().await {
            if let ControlFlow::Break(reason) = self.handle(inbound).await {
                return reason;
            }
        }
        connection
            .close_reason()
            .unwrap_or(DisconnectReason::Closed)
    }

    async fn handle(&mut self, inbound: Inbound) -> ControlFlow<DisconnectReason> {
        self.report_dropped().await;
        match inbound {
            Inbound::Datagram(datagram) => {
                // With `classify_raw`, the datagram's first unit classifies
                // before any framing. Here rather than in `deframe`'s decoder
                // (which would do the same): whether the datagram needs
                // deframing at all depends on the client type it makes.
                if !self.connection.classification_over()
                    && let Some(ControlFlow::Break(reason)) =
                        classify_first_unit(&self.connection, &datagram, true).await
                {
                    return ControlFlow::Break(reason);
                }
                if self.config.framed || self.connection.own_framing().is_some() {
                    deframe(&self.connection, datagram).await
                } else {
                    on_frame(&self.connection, datagram, &mut self.slot).await
                }
            }
            Inbound::TooLarge { length, max } => {
                report(&self.connection, Error::DatagramTooLarge { length, max }).await;
                ControlFlow::Continue(())
            }
            Inbound::Failed(error) => {
                report(&self.connection, Error::Io(error)).await;
                ControlFlow::Continue(())
            }
            Inbound::Resumed(resumption) => {
                let Resumption {
                    suspended,
                    mut slot,
                } = *resumption;
                resume(&self.connection, suspended, &mut slot).await
            }
            Inbound::Ended(reason) => ControlFlow::Break(reason),
        }
    }

    /// Tells on_error about datagrams dropped at the full inbox since the last time.
    async fn report_dropped(&mut self) {
        let count = self.datagrams.take_dropped();
        if count > 0 {
            let capacity = self.config.inbox;
            report(
                &self.connection,
                Error::DatagramsDropped { count, capacity },
            )
            .await;
        }
    }
}

/// Decodes one datagram with a fresh decoder (the stream's decoding path:
/// raw first unit, then the client type's framing once classified), so a
/// frame never spans datagrams and a framing error costs this datagram
/// only. A frame left unfinished at the datagram's end is reported, never
/// delivered.
async fn deframe(connection: &Connection, datagram: Bytes) -> ControlFlow<DisconnectReason> {
    // A custom codec's factory and decoder are user code: a panic costs this datagram.
    let mut decoder = match ConnectionDecoder::new(connection) {
        Ok(decoder) => decoder,
        Err(error) => {
            report(connection, error).await;
            return ControlFlow::Continue(());
        }
    };
    let mut buffer = BytesMut::from(datagram);
    let mut at_end = false;
    let mut slot = HandlerSlot::default();
    loop {
        if !decoder.is_settled() {
            // A datagram is whole: its first unit cannot grow.
            match decoder.prepare(connection, &buffer, true).await {
                ControlFlow::Continue(Prepared::Ready) => {}
                ControlFlow::Continue(Prepared::NeedsBytes) => return ControlFlow::Continue(()),
                // Reported already; over UDP it costs the rest of this datagram.
                ControlFlow::Break(DisconnectReason::FramingFailed) => {
                    return ControlFlow::Continue(());
                }
                ControlFlow::Break(reason) => return ControlFlow::Break(reason),
            }
        }
        let flow = match decode(decoder.current(), &mut buffer, at_end) {
            Ok(Some(Decoded::Frame(frame))) => on_frame(connection, frame, &mut slot).await,
            Ok(Some(Decoded::Discarded(error))) => {
                let error = match *error {
                    Error::FrameTruncated { bytes } => Error::DatagramTruncated { bytes },
                    other => other,
                };
                report(connection, error).await;
                ControlFlow::Continue(())
            }
            Ok(None) if !at_end => {
                // An unfinished frame may already settle the type; if so the
                // datagram is decoded again (the type may bring its framing).
                match decoder.classify_early(connection, &buffer).await {
                    ControlFlow::Continue(true) => {}
                    ControlFlow::Continue(false) => at_end = true,
                    ControlFlow::Break(reason) => return ControlFlow::Break(reason),
                }
                ControlFlow::Continue(())
            }
            Ok(None) => return ControlFlow::Continue(()),
            Err(error) => {
                report(connection, *error).await;
                return ControlFlow::Continue(());
            }
        };
        if flow.is_break() {
            return flow;
        }
    }
}

fn decode(decoder: &mut FrameDecoder, buffer: &mut BytesMut, at_end: bool) -> Decoding {
    if at_end {
        decoder.decode_eof(buffer)
    } else {
        decoder.decode(buffer)
    }
}

/// Sends queued replies, one datagram each, until told to finish; then
/// sends the rest (bounded by the shutdown timeout) unless told to abandon
/// them. A failed send goes to the handling side (the inbox) for on_error,
/// and the session goes on: one refused datagram is no reason to end it.
async fn write_loop(
    connection: Connection,
    peer: DatagramPeer,
    mut outbound: OutboundReceiver,
    mut finish: oneshot::Receiver<bool>,
    failures: SendFailures,
) {
    let mut frames = Frames::default();
    let flush = loop {
        tokio::select! {
            biased;
            more = outbound.take(&mut frames) => {
                if !more {
                    break true;
                }
                send(&connection, &peer, &outbound, &mut frames, &failures).await;
            }
            flush = &mut finish => break flush.unwrap_or(true),
        }
    };
    // No more sends are accepted from here on; what was accepted is sent.
    outbound.close();
    if !flush {
        return;
    }
    let flush_timeout = connection.endpoint().limits.shutdown_timeout;
    let sending = async {
        while outbound.take(&mut frames).await {
            send(&connection, &peer, &outbound, &mut frames, &failures).await;
        }
    };
    if tokio::time::timeout(flush_timeout, sending).await.is_err() {
        tracing::warn!(timeout = ?flush_timeout, "sending the queued datagrams timed out");
    }
}

/// Sends each of `frames` as a datagram of its own.
async fn send(
    connection: &Connection,
    peer: &DatagramPeer,
    outbound: &OutboundReceiver,
    frames: &mut Frames,
    failures: &SendFailures,
) {
    send_datagrams(connection, peer, frames, 0, failures).await;
    outbound.written(frames);
}

/// Sends each of `frames` but the first `sent` as a datagram of its own; a
/// failure goes to `failures`.
pub(super) async fn send_datagrams(
    connection: &Connection,
    peer: &DatagramPeer,
    frames: &Frames,
    sent: usize,
    failures: &SendFailures,
) {
    for frame in frames.datagrams().skip(sent) {
        let mut sent = peer.send(frame).await;
        if let Err(error) = sent {
            sent = if super::is_refusal(&error) {
                // A refusal here is the ICMP answer to an earlier datagram, left
                // on the socket; this one was not sent, so it gets one more try.
                failures.offer(connection, error);
                peer.send(frame).await
            } else {
                Err(error)
            };
        }
        if let Err(error) = sent {
            failures.offer(connection, error);
        }
    }
}
