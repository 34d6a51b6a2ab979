//! The attribute macros end to end: handlers registered through `inventory`
//! in this test binary, a derived classifier, every message view, typed state
//! and the disconnect reason, over real loopback sockets.
//!
//! This file is its own binary and so its own registry: everything registered
//! here is one scenario.

mod support;

use bytes::Bytes;
use flexi_socket::{
    Classifier, Connection, DisconnectReason, Error, FlexiSocket, Message, Router, State,
    after_receive, before_send, on_connect, on_disconnect, on_error, on_message,
};
use support::{Events, LineClient, start};

#[derive(Classifier, Clone, Copy, Debug, PartialEq, Eq)]
enum Device {
    #[client_type = "001"]
    #[classify(prefix = "!!")]
    Alarm,
    #[client_type = "002"]
    #[classify(prefix = "##")]
    Sensor,
    #[classify(prefix = b"\x02")]
    Binary,
    #[classify(exact = "text", suffix = "?")]
    Text,
    #[classify(default)]
    Other,
}

#[on_connect]
async fn connected(conn: Connection, State(events): State<Events>) {
    events.push(format!("connect {}", conn.id()));
}

#[after_receive(client_type = Device::Alarm)]
async fn unwrap_alarm(msg: Message) -> Option<Message> {
    // Drop heartbeats; strip the marker from everything else.
    if &msg[..] == b"!!HB" {
        return None;
    }
    Some(msg.strip_prefix("!!").unwrap_or(msg))
}

#[on_message(client_type = Device::Alarm)]
async fn alarm(conn: Connection, msg: String) -> flexi_socket::Result<()> {
    conn.send(format!("ACK {msg}")).await
}

#[on_message(client_type = "002")]
async fn sensor(conn: Connection, reading: &str) -> flexi_socket::Result<()> {
    let value: f64 = reading.trim_start_matches("##").parse().unwrap_or(f64::NAN);
    conn.send(format!("{value:.1}")).await
}

#[on_message(client_type = "Binary")]
async fn binary(conn: Connection, bytes: &[u8]) -> flexi_socket::Result<()> {
    conn.send(format!("{} bytes, first {:#04x}", bytes.len(), bytes[0]))
        .await
}

#[on_message(client_type = Device::Text)]
async fn text(conn: Connection, msg: Bytes, raw: Vec<u8>) -> Result<(), String> {
    if msg.as_ref() != raw.as_slice() {
        return Err("views disagree".into());
    }
    if raw == b"fail?" {
        return Err("asked to fail".into());
    }
    conn.send(msg).await.map_err(|e| e.to_string())
}

#[on_message]
async fn other(conn: Connection, msg: Message) -> flexi_socket::Result<()> {
    let count = conn.with_state(|n: &mut u32| {
        *n += 1;
        *n
    });
    let count = count.unwrap_or_else(|| {
        conn.set_state(1_u32);
        1
    });
    conn.send(format!("other #{count}: {}", msg.len())).await
}

#[before_send(client_type = "002")]
async fn frame_sensor_reply(msg: Message) -> Message {
    Message::from(format!("[{}]", String::from_utf8_lossy(&msg)))
}

#[on_error]
async fn errors(conn: Connection, error: Error, State(events): State<Events>) {
    events.push(format!("error {} {error}", conn.id()));
}

#[on_disconnect]
async fn disconnected(conn: Connection, reason: DisconnectReason, State(events): State<Events>) {
    events.push(format!("disconnect {} {reason}", conn.id()));
}

async fn server(events: Events) -> support::Running {
    start(
        FlexiSocket::server("127.0.0.1:0")
            .classifier::<Device>()
            .state(events),
    )
    .await
}

#[tokio::test]
async fn attribute_handlers_route_by_derived_client_type() {
    let (events, mut log) = Events::new();
    let running = server(events).await;

    let mut alarm = LineClient::connect(running.addr).await;
    alarm.send_line("!!HB").await; // dropped by after_receive
    assert_eq!(alarm.ask("!!FIRE").await, "ACK FIRE");

    let mut sensor = LineClient::connect(running.addr).await;
    assert_eq!(sensor.ask("##21.46").await, "[21.5]");

    let mut binary = LineClient::connect(running.addr).await;
    binary.send_raw(b"\x02\xff\x00\n").await;
    assert_eq!(binary.recv_line().await, "3 bytes, first 0x02");

    let mut text = LineClient::connect(running.addr).await;
    assert_eq!(text.ask("text").await, "text");
    assert_eq!(text.ask("anything").await, "anything");
    text.send_line("fail?").await;
    let failure = log.next_starting("error").await;
    assert!(
        failure.contains("attributes::text` failed: asked to fail"),
        "{failure}"
    );

    let mut other = LineClient::connect(running.addr).await;
    assert_eq!(other.ask("hello").await, "other #1: 5");
    assert_eq!(other.ask("again!").await, "other #2: 6");
    running.stop().await;
    let mut disconnects = 0;
    while let Ok(event) = log.0.try_recv() {
        if event.starts_with("disconnect") {
            assert!(event.ends_with("server shutdown"), "{event}");
            disconnects += 1;
        }
    }
    assert_eq!(disconnects, 5);
}

#[tokio::test]
async fn peer_close_is_the_disconnect_reason() {
    let (events, mut log) = Events::new();
    let running = server(events).await;
    let mut client = LineClient::connect(running.addr).await;
    assert_eq!(client.ask("!!x").await, "ACK x");
    drop(client);
    let event = log.next_starting("disconnect").await;
    assert!(event.ends_with("peer closed the connection"), "{event}");
    running.stop().await;
}

#[test]
fn registered_router_holds_every_attribute_handler() {
    let router = Router::registered();
    let table = format!("{router:?}");
    assert_eq!(router.len(), 10, "{table}");
    assert!(
        table.contains("on_message 001 -> attributes::alarm"),
        "{table}"
    );
    assert!(
        table.contains("before_send 002 -> attributes::frame_sensor_reply"),
        "{table}"
    );
    assert!(
        table.contains("on_connect (default) -> attributes::connected"),
        "{table}"
    );
}

#[test]
fn derived_classifier_keys() {
    assert_eq!(Device::classify(b"!!1").client_type(), "001");
    assert_eq!(Device::classify(b"what?").client_type(), "Text");
    assert_eq!(Device::classify(b"\x02").client_type(), "Binary");
    assert_eq!(Device::classify(b"").client_type(), "Other");
}
