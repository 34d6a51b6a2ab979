use flexi_socket::{Connection, on_message};

struct Echo;

impl Echo {
    #[on_message]
    async fn echo(&self, conn: Connection, msg: String) {
        drop((conn, msg));
    }
}

fn main() {}
