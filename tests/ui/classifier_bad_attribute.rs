use flexi_socket::Classifier;

const MARKER: &str = "!!";

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
    #[classify(prefix = MARKER)]
    Marked,
    #[classify(default = true)]
    Other,
}

fn main() {}
