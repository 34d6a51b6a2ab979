use flexi_socket::on_message;

#[on_message]
async fn echo(msg: impl AsRef<str>) {
    drop(msg);
}

fn main() {}
