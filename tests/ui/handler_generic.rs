use flexi_socket::on_message;

#[on_message]
async fn echo<T: Send>(value: T) {
    drop(value);
}

fn main() {}
