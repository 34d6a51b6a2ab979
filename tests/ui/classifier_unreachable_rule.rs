use flexi_socket::Classifier;

#[derive(Classifier)]
enum Panel {
    #[classify(prefix = "!!", suffix = "#END")]
    Alarm,
    #[classify(contains = "HB")]
    Heartbeat,
    #[classify(prefix = b"!!")]
    Again,
    #[classify(suffix = "21#END", exact = "!!PING")]
    Sensor,
    #[classify(exact = "HB", prefix = "xHB", suffix = b"HB\n")]
    Beat,
    #[classify(default)]
    Other,
}

fn main() {}
