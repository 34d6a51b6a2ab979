use flexi_socket::Classifier;

#[derive(Classifier)]
enum Panel {
    #[client_type = "001"]
    Alarm,
    #[classify(default)]
    Other,
}

fn main() {}
