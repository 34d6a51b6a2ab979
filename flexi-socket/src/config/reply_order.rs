//! How a client's requests find their replies.

/// Which of the server's messages answer which of the client's: it decides
/// what [`Client::request`](crate::Client::request) and
/// [`UdpClient::request`](crate::UdpClient::request) return.
///
/// Set with `ClientBuilder::reply_order` / `UdpClientBuilder::reply_order`.
/// [`request_matching`](crate::Client::request_matching) is for protocols
/// whose replies name what they answer (a sequence number): its predicate
/// decides under either order.
///
/// # Examples
///
/// ```no_run
/// use flexi_socket::{FlexiSocket, ReplyOrder};
///
/// // A server that pushes events and answers only commands.
/// let client = FlexiSocket::client("127.0.0.1:9000").reply_order(ReplyOrder::RequestsOnly);
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplyOrder {
    /// The server answers every message the client sends with one message,
    /// in order, and sends nothing unasked: the handshake, each `send`, each
    /// request, and what the client's own handlers send each get one reply
    /// (DC-09, SIA, most line protocols).
    ///
    /// A request's reply is the message in its place: replies still owed to
    /// earlier messages go to `on_message`, not to a later request. Only
    /// messages actually queued are counted (one the framing or a full
    /// queue refused owes nothing), per connection; a request whose
    /// connection drops before its reply ends with
    /// [`Error::ConnectionClosed`](crate::Error::ConnectionClosed). When a
    /// request times out, the count starts afresh (the server evidently does
    /// not answer as counted, or a datagram was lost), and requests sent
    /// before it that still wait end with a timeout too. A server that also
    /// sends messages of its own (heartbeats, pushed events) breaks the count:
    /// use [`RequestsOnly`](Self::RequestsOnly), or `request_matching` with
    /// a rule that recognises the reply.
    #[default]
    EveryMessage,
    /// The server answers requests only; anything else it sends is its own.
    /// A request's reply is the first message that arrives after the request
    /// was sent, whatever it answers.
    RequestsOnly,
}
