use std::rc::Rc;

use flexi_socket::{Connection, on_message};

#[on_message]
async fn echo(conn: Connection, msg: String) -> flexi_socket::Result<()> {
    let shared = Rc::new(msg);
    conn.send(shared.as_str().to_owned()).await?;
    drop(shared);
    Ok(())
}

fn main() {}
