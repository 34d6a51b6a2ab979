use flexi_socket::Classifier;

#[derive(Classifier)]
enum Panel {
    #[classify(prefix = "!!")]
    Alarm(u32),
    #[classify(default)]
    Other { name: String },
}

fn main() {}
