use flexi_socket::Classifier;

#[derive(Classifier)]
enum Panel {
    #[classify(prefix = "")]
    Alarm,
    #[classify(contains = b"")]
    Sensor,
    #[classify(default)]
    Other,
}

fn main() {}
