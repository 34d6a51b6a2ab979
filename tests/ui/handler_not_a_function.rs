use flexi_socket::on_message;

#[on_message]
struct Echo;

fn main() {}
