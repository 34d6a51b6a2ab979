use flexi_socket::{Connection, Error, on_connect, on_disconnect, on_message};

#[on_message]
async fn echo(conn: Connection, msg: String, err: Error) {
    drop((conn, msg, err));
}

#[on_disconnect]
async fn bye(conn: Connection, error: flexi_socket::Error) {
    drop((conn, error));
}

#[on_connect]
async fn hello(_: &Error) {}

fn main() {}
