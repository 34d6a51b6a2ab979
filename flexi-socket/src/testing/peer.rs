//! [`TestPeer`]: one peer of a [`TestServer`](super::TestServer), over an
//! in-memory pipe: it frames as the server frames, classifies itself by
//! its first message as the server will, and watches its connection close.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::oneshot;

use crate::classify::{ClientFraming, ErasedClassifier};
use crate::client_type::ClientType;
use crate::connection::{Connection, DisconnectReason};
use crate::error::Error;
use crate::framing::{Decoded, FrameDecoder, FrameEncoder, Framing};
use crate::message::Message;

/// How long a peer waits for a message or for the close by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a peer's connection is known yet.
#[derive(Debug)]
enum Opening {
    Waiting(oneshot::Receiver<Connection>),
    Opened(Connection),
    /// Refused (at the per-IP cap) or the server shut down first.
    Refused,
}

/// One peer of a [`TestServer`](super::TestServer): it sends and receives messages framed as
/// the server frames them, and can watch its connection close.
pub struct TestPeer {
    stream: DuplexStream,
    peer_addr: SocketAddr,
    connection: Opening,
    framing: Framing,
    /// The server's classifier and per-type framing, until the peer has
    /// classified itself by its first message.
    classification: Option<(ErasedClassifier, ClientFraming)>,
    /// The client type the peer's first message makes it.
    own_type: Option<(ClientType, Option<Framing>)>,
    /// The codec in use, and the client type it was made for (a client
    /// type's own framing replaces the server's once classified).
    codec: Option<Codec>,
    buffer: BytesMut,
    timeout: Duration,
    eof: bool,
}

impl fmt::Debug for TestPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestPeer")
            .field("peer_addr", &self.peer_addr)
            .field("connection", &self.connection)
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

/// What a [`TestPeer`] waited for and did not get.
#[derive(Debug)]
#[non_exhaustive]
pub enum PeerError {
    /// Nothing came within the timeout.
    TimedOut(Duration),
    /// The server closed the connection.
    Closed,
    /// A message came where the close was expected.
    Unexpected(Message),
    /// The server's bytes did not decode (or a custom codec failed).
    Framing(Error),
    /// The pipe failed.
    Io(io::Error),
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerError::TimedOut(after) => write!(f, "nothing arrived within {after:?}"),
            PeerError::Closed => f.write_str("the server closed the connection"),
            PeerError::Unexpected(message) => {
                write!(f, "expected the close, got the message {message:?}")
            }
            PeerError::Framing(error) => write!(f, "undecodable bytes from the server: {error}"),
            PeerError::Io(error) => write!(f, "the pipe failed: {error}"),
        }
    }
}

impl std::error::Error for PeerError {}

impl TestPeer {
    pub(super) fn new(
        stream: DuplexStream,
        peer_addr: SocketAddr,
        connection: oneshot::Receiver<Connection>,
        framing: Framing,
        classification: Option<(ErasedClassifier, ClientFraming)>,
    ) -> Self {
        Self {
            stream,
            peer_addr,
            connection: Opening::Waiting(connection),
            framing,
            classification,
            own_type: None,
            codec: None,
            buffer: BytesMut::new(),
            timeout: DEFAULT_TIMEOUT,
            eof: false,
        }
    }

    /// How long [`receive`](Self::receive) and
    /// [`expect_closed`](Self::expect_closed) wait (default 10 s; in paused
    /// time that costs nothing).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The address its connection reports as the peer's.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// Its connection on the server, once the server accepted it; `None`
    /// if the server refused it (per-IP cap) or shut down first. Waits while
    /// the server is at `max_connections`.
    pub async fn connection(&mut self) -> Option<Connection> {
        if let Opening::Waiting(opening) = &mut self.connection {
            self.connection = match opening.await {
                Ok(connection) => Opening::Opened(connection),
                Err(_) => Opening::Refused,
            };
        }
        match &self.connection {
            Opening::Opened(connection) => Some(connection.clone()),
            _ => None,
        }
    }

    /// Sends `message` framed as the server decodes it (a line with
    /// `Framing::lines`, with its length prefix, ...).
    ///
    /// With a classifier, the first message sent decides the peer's client
    /// type, as it will on the server; later messages, and what the peer
    /// reads from then on, use that type's own framing
    /// ([`framing_for`](crate::ServerBuilder::framing_for)). So read what
    /// the server sends before the first message (an `on_connect`
    /// greeting) before sending it. With
    /// [`classify_raw`](crate::ServerBuilder::classify_raw) the peer follows
    /// the server's classification instead, once it is known.
    ///
    /// # Errors
    ///
    /// The framing refuses the message, or the server's end is closed.
    pub async fn send(&mut self, message: impl AsRef<[u8]>) -> io::Result<()> {
        self.refresh_codec().map_err(io::Error::other)?;
        let codec = self.codec.as_ref().expect("refreshed");
        let mut frame = BytesMut::new();
        codec
            .encoder
            .encode(message.as_ref(), &mut frame)
            .map_err(io::Error::other)?;
        self.classify_by(message.as_ref());
        self.write(&frame).await
    }

    /// Writes raw bytes, unframed: half a frame, garbage, a raw first unit.
    ///
    /// # Errors
    ///
    /// The server's end is closed.
    pub async fn write(&mut self, bytes: impl AsRef<[u8]>) -> io::Result<()> {
        self.stream.write_all(bytes.as_ref()).await?;
        self.stream.flush().await
    }

    /// Reads exactly `len` raw bytes, unframed (bytes a `receive` decoded
    /// no message from yet come first).
    ///
    /// # Errors
    ///
    /// [`PeerError::TimedOut`], [`PeerError::Closed`] if the server closes
    /// before `len` bytes came.
    pub async fn read_exact(&mut self, len: usize) -> std::result::Result<Vec<u8>, PeerError> {
        self.read_raw(|peer| peer.buffer.len() >= len).await?;
        if self.buffer.len() < len {
            return Err(PeerError::Closed);
        }
        Ok(self.buffer.split_to(len).to_vec())
    }

    /// Reads raw bytes until the server closes the connection.
    ///
    /// # Errors
    ///
    /// [`PeerError::TimedOut`] if it stays open.
    pub async fn read_to_end(&mut self) -> std::result::Result<Vec<u8>, PeerError> {
        self.read_raw(|_| false).await?;
        Ok(std::mem::take(&mut self.buffer).to_vec())
    }

    /// Reads into the buffer until `enough` says so or the server closes,
    /// within the timeout.
    async fn read_raw(
        &mut self,
        enough: impl Fn(&Self) -> bool,
    ) -> std::result::Result<(), PeerError> {
        let timeout = self.timeout;
        let read = async {
            while !self.eof && !enough(self) {
                self.buffer.reserve(4096);
                let read = self.stream.read_buf(&mut self.buffer).await;
                if read.map_err(PeerError::Io)? == 0 {
                    self.eof = true;
                }
            }
            Ok(())
        };
        tokio::time::timeout(timeout, read)
            .await
            .unwrap_or(Err(PeerError::TimedOut(timeout)))
    }

    /// Closes the peer's sending side (FIN): the server sees EOF.
    pub async fn close(&mut self) {
        let _ = self.stream.shutdown().await;
    }

    /// The next message from the server.
    ///
    /// # Errors
    ///
    /// [`PeerError::TimedOut`], [`PeerError::Closed`] when the server
    /// closed first, [`PeerError::Framing`] for bytes that do not decode.
    pub async fn receive(&mut self) -> std::result::Result<Message, PeerError> {
        self.receive_within(self.timeout).await
    }

    /// [`receive`](Self::receive) with its own timeout (to check that
    /// nothing comes, say).
    ///
    /// # Errors
    ///
    /// As [`receive`](Self::receive).
    pub async fn receive_within(
        &mut self,
        timeout: Duration,
    ) -> std::result::Result<Message, PeerError> {
        tokio::time::timeout(timeout, self.next_message())
            .await
            .unwrap_or(Err(PeerError::TimedOut(timeout)))?
            .ok_or(PeerError::Closed)
    }

    /// The next message from the server, as text.
    ///
    /// # Errors
    ///
    /// As [`receive`](Self::receive); [`PeerError::Framing`] for invalid UTF-8.
    pub async fn receive_str(&mut self) -> std::result::Result<String, PeerError> {
        let message = self.receive().await?;
        String::from_utf8(message.as_bytes().to_vec()).map_err(|error| {
            PeerError::Framing(Error::InvalidUtf8 {
                valid_up_to: error.utf8_error().valid_up_to(),
            })
        })
    }

    /// Waits until the server closes the connection, and returns why it
    /// did (`None` if the server never accepted it).
    ///
    /// # Errors
    ///
    /// [`PeerError::Unexpected`] if a message arrives first,
    /// [`PeerError::TimedOut`] if the connection stays open.
    pub async fn expect_closed(
        &mut self,
    ) -> std::result::Result<Option<DisconnectReason>, PeerError> {
        self.expect_closed_within(self.timeout).await
    }

    /// [`expect_closed`](Self::expect_closed) with its own timeout (a
    /// deadline of minutes passes at once in paused time).
    ///
    /// # Errors
    ///
    /// As [`expect_closed`](Self::expect_closed).
    pub async fn expect_closed_within(
        &mut self,
        timeout: Duration,
    ) -> std::result::Result<Option<DisconnectReason>, PeerError> {
        let closed = async {
            match self.next_message().await? {
                Some(message) => Err(PeerError::Unexpected(message)),
                None => Ok(()),
            }
        };
        tokio::time::timeout(timeout, closed)
            .await
            .unwrap_or(Err(PeerError::TimedOut(timeout)))?;
        Ok(self
            .connection()
            .await
            .and_then(|connection| connection.close_reason()))
    }

    /// The next message, or `None` at EOF.
    async fn next_message(&mut self) -> std::result::Result<Option<Message>, PeerError> {
        let mut gap_passed = false;
        loop {
            self.refresh_codec().map_err(PeerError::Framing)?;
            let decoder = &mut self.codec.as_mut().expect("refreshed").decoder;
            let decoded = if self.eof {
                decoder.decode_eof(&mut self.buffer)
            } else if gap_passed {
                decoder.decode_idle(&mut self.buffer)
            } else {
                decoder.decode(&mut self.buffer)
            };
            match decoded.map_err(|error| PeerError::Framing(*error))? {
                Some(Decoded::Frame(frame)) => return Ok(Some(Message::from(frame))),
                Some(Decoded::Discarded(error)) => return Err(PeerError::Framing(*error)),
                None if self.eof => return Ok(None),
                None => {}
            }
            // With idle-gap framing, a gap of silence ends what was read.
            let gap = decoder
                .idle_gap()
                .filter(|_| decoder.wants_idle_timer(&self.buffer));
            self.buffer.reserve(4096);
            let read = self.stream.read_buf(&mut self.buffer);
            let read = match gap {
                None => read.await,
                Some(gap) => match tokio::time::timeout(gap, read).await {
                    Ok(read) => read,
                    Err(_silence) => {
                        gap_passed = true;
                        continue;
                    }
                },
            };
            gap_passed = false;
            if read.map_err(PeerError::Io)? == 0 {
                self.eof = true;
            }
        }
    }

    /// The first message decides the peer's client type, as the server's
    /// classifier will decide it; from the next message on, the peer frames
    /// (and reads) with that type's own framing, without waiting for the
    /// server to have classified it.
    fn classify_by(&mut self, first: &[u8]) {
        let Some((classifier, client_framing)) = self.classification.take() else {
            return;
        };
        // The classifier is user code; a panic is the server's to report.
        let Ok(client_type) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| classifier.classify(first)))
        else {
            return;
        };
        let framing = client_framing.for_type(&client_type).cloned();
        self.own_type = Some((client_type, framing));
    }

    /// Makes `codec` the one for the connection's framing now: the
    /// server's, or its client type's own once classified (by the peer's
    /// own first message, or else by the server).
    fn refresh_codec(&mut self) -> std::result::Result<(), Error> {
        if let Opening::Waiting(opening) = &mut self.connection {
            match opening.try_recv() {
                Ok(connection) => self.connection = Opening::Opened(connection),
                Err(oneshot::error::TryRecvError::Empty) => {}
                Err(oneshot::error::TryRecvError::Closed) => self.connection = Opening::Refused,
            }
        }
        let connection = match &self.connection {
            Opening::Opened(connection) => Some(connection),
            _ => None,
        };
        let client_type = match &self.own_type {
            Some((own, _)) => Some(own.clone()),
            None => connection.and_then(|c| c.client_type().cloned()),
        };
        if self
            .codec
            .as_ref()
            .is_some_and(|codec| codec.made_for == client_type)
        {
            return Ok(());
        }
        let framing = match &self.own_type {
            Some((_, own_framing)) => own_framing.as_ref().unwrap_or(&self.framing),
            None => connection.map_or(&self.framing, |connection| connection.framing()),
        }
        .mirrored();
        self.codec = Some(Codec {
            made_for: client_type,
            encoder: framing.try_encoder()?,
            decoder: framing.try_decoder()?,
        });
        Ok(())
    }
}

/// A peer's codec, and the client type it was made for.
struct Codec {
    made_for: Option<ClientType>,
    encoder: FrameEncoder,
    decoder: FrameDecoder,
}
