use flexi_socket::Classifier;

#[derive(Classifier)]
enum Panel {
    #[classify(prefix = "!!")]
    Alarm,
    #[classify(prefix = "##")]
    Sensor,
}

fn main() {}
