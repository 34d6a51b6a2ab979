use flexi_socket::Classifier;

#[derive(Classifier)]
enum Command {
    #[classify(prefix = "f")]
    File,
    #[classify(prefix = "fr")]
    Frame,
    // `exact = "x"` keeps this variant reachable, so its shadowed prefix is not reported.
    #[classify(prefix = "fx", exact = "x")]
    Mixed,
    #[classify(default)]
    Other,
}

fn main() {}
