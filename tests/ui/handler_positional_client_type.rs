use flexi_socket::{Connection, on_connect, on_error, on_message};

// The Python library's spelling.
#[on_message("001")]
async fn alarm(conn: Connection) {
    drop(conn);
}

#[on_error("002", "003")]
async fn sensors(conn: Connection) {
    drop(conn);
}

#[on_connect("001")]
async fn hello(conn: Connection) {
    drop(conn);
}

#[on_message(client_type = "006" | "007" | "006")]
async fn listed_twice(conn: Connection) {
    drop(conn);
}

fn main() {}
