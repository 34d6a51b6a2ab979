use flexi_socket::{Connection, on_message};

#[on_message]
async unsafe fn echo(conn: Connection) {
    drop(conn);
}

fn main() {}
