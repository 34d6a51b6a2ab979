use flexi_socket::{Connection, on_message};

#[on_message]
async fn count(conn: Connection, count: u32) {
    drop((conn, count));
}

fn main() {}
