use flexi_socket::{Connection, on_connect, on_message};

#[on_message(clienttype = "001")]
async fn alarm(conn: Connection) {
    drop(conn);
}

#[on_connect(timeout = 5)]
async fn hello(conn: Connection) {
    drop(conn);
}

fn main() {}
