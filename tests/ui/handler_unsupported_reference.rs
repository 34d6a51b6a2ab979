use flexi_socket::{Connection, on_message};

#[on_message]
async fn echo(conn: &Connection, msg: &String) {
    drop((conn, msg));
}

fn main() {}
