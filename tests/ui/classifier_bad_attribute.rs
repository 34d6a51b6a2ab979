use flexi_socket::Classifier;

#[derive(Classifier)]
enum Panel {
    #[classify(starts_with = "!!")]
    Alarm,
    #[classify(default)]
    Other,
}

#[derive(Classifier)]
enum Device {
    #[client_type("001")]
    #[classify(prefix = "!!")]
    Alarm,
    #[classify(prefix = 2)]
    Sensor,
    #[classify(default)]
    Other,
}

fn main() {}
