use flexi_socket::{after_receive, on_message};

#[on_message]
async fn count(msg: String) -> usize {
    msg.len()
}

#[after_receive]
async fn trim(msg: String) -> String {
    msg.trim().to_owned()
}

fn main() {}
