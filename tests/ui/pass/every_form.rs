//! Every attribute form and the derive, compiled with warnings and clippy's
//! pedantic lints denied: generated code must not trouble the user's crate.
#![deny(warnings, clippy::pedantic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use flexi_socket::{
    Classifier, Connection, DisconnectReason, Error, Message, State, after_receive, before_send,
    on_connect, on_disconnect, on_error, on_message,
};

#[derive(Classifier, Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Panel {
    #[client_type = "001"]
    #[classify(prefix = "!!")]
    #[classify(suffix = b"\x03", contains = "ALARM")]
    Alarm,
    #[client_type = "002"]
    #[classify(exact = "PING", prefix = b"\x02##")]
    Sensor,
    #[classify(default)]
    Other,
}

#[on_connect]
async fn hello(conn: Connection) -> flexi_socket::Result<()> {
    conn.send("hello").await
}

#[on_message(client_type = "001")]
async fn alarm(conn: Connection, msg: String) -> flexi_socket::Result<()> {
    conn.send(format!("ACK {msg}")).await
}

#[on_message(client_type = self::Panel::Sensor)]
async fn sensor(msg: &str, conn: Connection) -> Result<(), String> {
    conn.send(msg.to_uppercase())
        .await
        .map_err(|e| e.to_string())
}

#[on_message]
async fn anything(conn: Connection, msg: &[u8], State(seen): State<Arc<AtomicUsize>>) {
    seen.fetch_add(msg.len(), Ordering::Relaxed);
    conn.close();
}

#[on_message(client_type = "other")]
async fn raw(_: Connection, msg: Vec<u8>, _unused: Bytes) {
    drop(msg);
}

#[after_receive(client_type = "001")]
async fn unwrap(msg: Message) -> Option<Message> {
    let bytes = msg.into_bytes();
    bytes
        .strip_prefix(b"!!")
        .map(|rest| Message::new(bytes.slice_ref(rest)))
}

#[after_receive]
async fn keep(msg: Bytes) -> Message {
    Message::new(msg)
}

#[before_send(client_type = Panel::Alarm)]
async fn frame(msg: Message) -> Result<Message, Error> {
    let mut framed = Vec::with_capacity(msg.len() + 1);
    framed.extend_from_slice(&msg);
    framed.push(b'\r');
    Ok(Message::from(framed))
}

#[before_send]
async fn pass_on(msg: Message) -> Result<Option<Message>, String> {
    Ok(Some(msg))
}

#[on_error(client_type = "002")]
async fn failed(conn: Connection, error: Error) {
    let _ = conn.send(format!("ERR {error}")).await;
}

#[on_error]
async fn failed_anywhere(_error: Error) {}

#[on_disconnect(client_type = "001" | Panel::Sensor)]
async fn bye(conn: Connection, reason: DisconnectReason) {
    let _ = (conn.peer_addr(), reason);
}

#[on_disconnect]
async fn gone() {}

fn main() {
    assert_eq!(Panel::classify(b"!!1").client_type(), "001");
}
