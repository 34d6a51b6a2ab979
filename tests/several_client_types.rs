//! One attribute for several client types: `client_type = "002" | "003"`
//! (or classifier variants joined the same way) registers the one handler
//! for each, in place of the default handler for those types only.
//!
//! This file is its own binary and so its own registry: everything registered
//! here is one scenario.

mod support;

use flexi_socket::{Classifier, Connection, FlexiSocket, Message, after_receive, on_message};
use support::{LineClient, start, within};

#[derive(Classifier, Clone, Copy, Debug, PartialEq, Eq)]
enum Device {
    #[client_type = "001"]
    #[classify(prefix = "A")]
    Alarm,
    #[client_type = "002"]
    #[classify(prefix = "T")]
    Thermometer,
    #[client_type = "003"]
    #[classify(prefix = "H")]
    Hygrometer,
    #[classify(default)]
    Other,
}

#[on_message(client_type = "002" | "003")]
async fn sensor(conn: Connection, msg: String) -> flexi_socket::Result<()> {
    let client_type = conn.client_type().expect("classified").clone();
    conn.send(format!("sensor {client_type} {msg}")).await
}

#[on_message(client_type = Device::Alarm)]
async fn alarm(conn: Connection, msg: String) -> flexi_socket::Result<()> {
    conn.send(format!("alarm {msg}")).await
}

#[on_message]
async fn anything_else(conn: Connection, msg: String) -> flexi_socket::Result<()> {
    conn.send(format!("other {msg}")).await
}

/// The variant spelling, on another attribute: both sensors' readings are
/// lower-cased before on_message, nobody else's.
#[after_receive(client_type = Device::Thermometer | Device::Hygrometer)]
async fn lower_case(msg: &str) -> Message {
    Message::from(msg.to_lowercase())
}

#[tokio::test]
async fn one_handler_serves_both_listed_client_types() {
    let running = start(FlexiSocket::server("127.0.0.1:0").classifier::<Device>()).await;
    let mut replies = Vec::new();
    for first in ["T21C", "H40%", "A1", "X?"] {
        let mut client = LineClient::connect(running.addr).await;
        replies.push(within("a reply", client.ask(first)).await);
    }
    assert_eq!(
        replies,
        ["sensor 002 t21c", "sensor 003 h40%", "alarm A1", "other X?"]
    );
    running.stop().await;
}
