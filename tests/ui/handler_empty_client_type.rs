use flexi_socket::{Connection, on_message};

#[on_message(client_type = "")]
async fn alarm(conn: Connection) {
    drop(conn);
}

fn main() {}
