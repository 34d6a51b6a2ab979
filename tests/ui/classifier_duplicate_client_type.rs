use flexi_socket::Classifier;

#[derive(Classifier)]
enum Panel {
    #[client_type = "001"]
    #[classify(prefix = "!!")]
    Alarm,
    #[client_type = "001"]
    #[classify(prefix = "##")]
    Sensor,
    #[client_type = "Other"]
    #[classify(prefix = "??")]
    Unknown,
    #[classify(default)]
    Other,
}

fn main() {}
