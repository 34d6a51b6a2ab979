//! A UDP client for the tests: one socket on 127.0.0.1, connected to the
//! server, every wait under a timeout.

use std::net::SocketAddr;

use tokio::net::UdpSocket;

use super::within;

/// One UDP peer, talking to one server.
pub struct UdpClient {
    pub socket: UdpSocket,
}

impl UdpClient {
    pub async fn connect(server: SocketAddr) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        socket.connect(server).await.expect("connect");
        Self { socket }
    }

    /// The address the server sees.
    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("local address")
    }

    pub async fn send(&self, datagram: impl AsRef<[u8]>) {
        let datagram = datagram.as_ref();
        let sent = within("send", self.socket.send(datagram))
            .await
            .expect("send");
        assert_eq!(sent, datagram.len(), "datagram cut on send");
    }

    /// The next datagram from the server.
    pub async fn recv(&self) -> Vec<u8> {
        let mut buffer = vec![0; 65_536];
        let length = within("a datagram", self.socket.recv(&mut buffer))
            .await
            .expect("recv");
        buffer.truncate(length);
        buffer
    }

    /// The next datagram from the server, as text.
    pub async fn recv_text(&self) -> String {
        String::from_utf8(self.recv().await).expect("a UTF-8 datagram")
    }

    /// Sends `text` and returns the reply.
    pub async fn ask(&self, text: &str) -> String {
        self.send(text).await;
        self.recv_text().await
    }
}
