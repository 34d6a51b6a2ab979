use flexi_socket::Classifier;

#[derive(Classifier)]
enum Panel {
    #[classify(prefix = "!!")]
    Alarm,
    #[classify(suffix = "\n", prefix = b"!!")]
    Sensor,
    #[classify(default)]
    Other,
}

fn main() {}
