//! Datagram transport: a UDP peer served as a connection (its session), the
//! bounded inbox that feeds a session, and the socket's options and errors.
//! A server opens one session per peer address (`server/udp.rs`); a UDP
//! client has one with its server (`client/udp.rs`).

mod batch;
mod in_place;
mod inbox;
mod messages;
mod session;
mod socket;

pub(crate) use batch::ReceiveBatch;
pub(crate) use in_place::Unsent;
pub(crate) use inbox::{Inbox, InboxRefused};
pub(crate) use messages::MessageBuffer;
pub(crate) use session::{DatagramPeer, Inbound, open};
pub(crate) use socket::{LARGEST_DATAGRAM, ReceiveErrors, UdpOptions, is_refusal};
