use flexi_socket::{Connection, DisconnectReason, Error, Message, after_receive, on_error};

#[on_error]
async fn failed(conn: Connection, error: Error, reason: DisconnectReason) {
    drop((conn, error, reason));
}

#[after_receive]
async fn keep(msg: Message, _: flexi_socket::DisconnectReason) -> Message {
    msg
}

fn main() {}
