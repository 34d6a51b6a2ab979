use flexi_socket::{Connection, on_connect};

#[on_connect(client_type = "001")]
async fn hello(conn: Connection) {
    drop(conn);
}

fn main() {}
