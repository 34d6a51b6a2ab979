use flexi_socket::Classifier;

#[derive(Classifier)]
struct Panel {
    kind: u8,
}

fn main() {}
