use flexi_socket::{Connection, Error, on_connect, on_error};

#[on_connect]
async fn hello(conn: Connection, msg: String) {
    drop((conn, msg));
}

#[on_error]
async fn failed(error: Error, frame: &[u8]) {
    drop((error, frame));
}

fn main() {}
