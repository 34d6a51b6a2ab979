use flexi_socket::Classifier;

#[derive(Classifier)]
enum Panel {
    #[classify(prefix = "!!", suffix = "\n")]
    #[classify(prefix = b"!!")]
    Alarm,
    #[classify(default)]
    Other,
}

fn main() {}
