// UDP session settings belong to a UDP server's builder only.
use flexi_socket::FlexiSocket;

fn main() {
    let _ = FlexiSocket::server("127.0.0.1:0").udp_session_idle(std::time::Duration::from_secs(1));
}
