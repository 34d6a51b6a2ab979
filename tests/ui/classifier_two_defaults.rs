use flexi_socket::Classifier;

#[derive(Classifier)]
enum Panel {
    #[classify(prefix = "!!")]
    Alarm,
    #[classify(default)]
    Other,
    #[classify(default)]
    Unknown,
}

fn main() {}
