//! Receiving a server's datagrams several at a time: as many as the socket
//! holds, up to a batch, in one system call where the system has one for
//! it (`recvmmsg` on Linux, through `nix`), one call each elsewhere. A full
//! batch says the receive loop is behind: it then only hands datagrams on
//! (see `in_place`), so a flooding peer's excess is shed cheaply at its
//! session's queue instead of other peers' datagrams at the kernel's buffer.

#[cfg(target_os = "linux")]
use std::cell::RefCell;
use std::io;
#[cfg(target_os = "linux")]
use std::io::IoSliceMut;
use std::net::SocketAddr;
#[cfg(target_os = "linux")]
use std::os::fd::{AsRawFd, RawFd};

#[cfg(target_os = "linux")]
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use tokio::net::UdpSocket;

/// Datagrams received by one call, and the buffers they were received into.
#[derive(Debug)]
pub(crate) struct ReceiveBatch {
    /// Room for each datagram: a longer one is received cut, and known by
    /// its length (see [`datagrams`](Self::datagrams)).
    slot: usize,
    buffer: Vec<u8>,
    /// Each datagram received: its slot, its whole length and its sender.
    received: Vec<(usize, usize, SocketAddr)>,
    /// Slots the last receive filled (a datagram without an IP sender
    /// address fills one but is not in `received`).
    filled: usize,
}

/// Datagrams received at a time, at most.
const BATCH: usize = 32;

impl ReceiveBatch {
    /// Room for datagrams of up to `max_datagram` bytes (longer ones show
    /// their length).
    pub(crate) fn new(max_datagram: usize) -> Self {
        // Without `recvmmsg`'s lengths, a buffer longer than any datagram
        // tells an oversize one from one exactly at the limit.
        let slot = if cfg!(target_os = "linux") {
            max_datagram.min(super::LARGEST_DATAGRAM)
        } else {
            super::LARGEST_DATAGRAM + 1
        };
        Self {
            slot,
            buffer: vec![0; slot * BATCH],
            received: Vec::with_capacity(BATCH),
            filled: 0,
        }
    }

    /// Whether the last receive filled the batch: more datagrams were
    /// likely waiting, and the receive loop is behind.
    pub(crate) fn is_full(&self) -> bool {
        self.filled == BATCH
    }

    /// Receives what `socket` has (waiting for at least one datagram).
    pub(crate) async fn receive(&mut self, socket: &UdpSocket) -> io::Result<()> {
        self.received.clear();
        #[cfg(target_os = "linux")]
        {
            let interest = tokio::io::Interest::READABLE;
            socket.async_io(interest, || self.receive_now(socket)).await
        }
        #[cfg(not(target_os = "linux"))]
        {
            let slot = self.slot;
            let (length, peer) = socket.recv_from(&mut self.buffer[..slot]).await?;
            self.received.push((0, length, peer));
            self.filled = 1;
            // Then what else is there, without waiting; an error shows again
            // on the next call.
            while self.filled < BATCH {
                let room = &mut self.buffer[self.filled * slot..(self.filled + 1) * slot];
                let Ok((length, peer)) = socket.try_recv_from(room) else {
                    break;
                };
                self.received.push((self.filled, length, peer));
                self.filled += 1;
            }
            Ok(())
        }
    }

    /// One `recvmmsg` call, which does not wait.
    #[cfg(target_os = "linux")]
    fn receive_now(&mut self, socket: &UdpSocket) -> io::Result<()> {
        thread_local! {
            // The system call's headers: only used during the call, and (raw
            // pointers inside) not `Send`, so the thread's rather than the batch's.
            static HEADERS: RefCell<MultiHeaders<SockaddrStorage>> =
                RefCell::new(MultiHeaders::preallocate(BATCH, None));
        }
        HEADERS.with_borrow_mut(|headers| self.receive_with(socket.as_raw_fd(), headers))
    }

    #[cfg(target_os = "linux")]
    fn receive_with(
        &mut self,
        socket: RawFd,
        headers: &mut MultiHeaders<SockaddrStorage>,
    ) -> io::Result<()> {
        let mut chunks = self.buffer.chunks_exact_mut(self.slot);
        let mut slices: [[IoSliceMut<'_>; 1]; BATCH] = std::array::from_fn(|_| {
            [IoSliceMut::new(
                chunks.next().expect("the buffer holds a batch"),
            )]
        });
        // MSG_TRUNC: each datagram's length is its whole length, even when
        // it did not fit its slot.
        let results = recvmmsg(
            socket,
            headers,
            slices.iter_mut(),
            MsgFlags::MSG_TRUNC,
            None,
        )?;
        self.filled = 0;
        for (index, message) in results.enumerate() {
            self.filled += 1;
            let peer = message.address.and_then(|address| {
                if let Some(v4) = address.as_sockaddr_in() {
                    Some(SocketAddr::V4((*v4).into()))
                } else {
                    address
                        .as_sockaddr_in6()
                        .map(|v6| SocketAddr::V6((*v6).into()))
                }
            });
            // A datagram without an IP sender address cannot be answered.
            if let Some(peer) = peer {
                self.received.push((index, message.bytes, peer));
            }
        }
        Ok(())
    }

    /// The datagrams received, in order: what fitted of each, its whole
    /// length, and its sender.
    pub(crate) fn datagrams(&self) -> impl Iterator<Item = (&[u8], usize, SocketAddr)> {
        self.received.iter().map(|&(index, length, peer)| {
            let start = index * self.slot;
            (
                &self.buffer[start..start + length.min(self.slot)],
                length,
                peer,
            )
        })
    }
}
