// TLS runs over TCP only: a UDP server's builder has no `tls`.
use flexi_socket::{FlexiSocket, TlsServerConfig};

fn configure(tls: TlsServerConfig) {
    let _ = FlexiSocket::udp("127.0.0.1:0").tls(tls);
}

fn main() {}
