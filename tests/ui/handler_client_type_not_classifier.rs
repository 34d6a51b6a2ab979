use flexi_socket::{Connection, on_message};

enum Panel {
    Alarm,
}

#[on_message(client_type = Panel::Alarm)]
async fn alarm(conn: Connection) {
    drop(conn);
}

fn main() {}
