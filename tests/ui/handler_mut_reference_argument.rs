use flexi_socket::on_message;

#[on_message]
async fn echo(msg: &mut String) {
    msg.push('!');
}

fn main() {}
