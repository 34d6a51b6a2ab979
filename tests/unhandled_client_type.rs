//! A client type the classifier can produce, with no on_message handler of
//! its own and no default one, is a start-up error naming it (its every
//! message would go unrouted), unless declared intended with
//! `allow_unhandled`. Servers of both transports and clients check alike.

mod support;

use flexi_socket::{Classifier, Connection, Error, FlexiSocket, Router};
use support::log::Captured;
use support::within;

#[derive(Classifier)]
enum Panel {
    #[client_type = "001"]
    #[classify(prefix = "!!")]
    Alarm,
    #[client_type = "002"]
    #[classify(prefix = "##")]
    Sensor,
    #[classify(default)]
    Other,
}

/// Handles 001 and `Other`, not 002.
fn without_sensor_handler() -> Router {
    Router::new()
        .on_message_for("001", |conn: Connection, msg: String| async move {
            conn.send(msg).await
        })
        .on_message_for("Other", |_conn: Connection, _msg: String| async {})
}

fn unhandled_type(result: Result<impl std::fmt::Debug, Error>) -> (String, String) {
    match result {
        Err(error @ Error::UnhandledClientType { .. }) => {
            let text = error.to_string();
            let Error::UnhandledClientType { client_type, .. } = error else {
                unreachable!()
            };
            (client_type.to_string(), text)
        }
        other => panic!("expected UnhandledClientType, got {other:?}"),
    }
}

#[tokio::test]
async fn a_server_refuses_to_start_with_a_client_type_nobody_handles() {
    let binding = FlexiSocket::server("127.0.0.1:0")
        .classifier::<Panel>()
        .router(without_sensor_handler())
        .bind();
    let result = within("bind", binding)
        .await
        .map(|server| server.local_addr());
    let (client_type, text) = unhandled_type(result);
    assert_eq!(client_type, "002");
    assert!(
        text.contains("#[on_message(client_type = \"002\")]")
            && text.contains(".allow_unhandled(\"002\")")
            && text.contains("produces: 001, 002, Other"),
        "{text}"
    );

    let binding = FlexiSocket::udp("127.0.0.1:0")
        .classifier::<Panel>()
        .router(without_sensor_handler())
        .bind();
    let result = within("bind", binding)
        .await
        .map(|server| server.local_addr());
    assert_eq!(unhandled_type(result).0, "002");
}

#[tokio::test]
async fn a_client_refuses_to_start_with_a_client_type_nobody_handles() {
    let spawned = FlexiSocket::client("127.0.0.1:9")
        .classifier::<Panel>()
        .router(without_sensor_handler())
        .spawn();
    assert_eq!(unhandled_type(spawned).0, "002");
}

#[tokio::test]
async fn a_default_handler_or_allow_unhandled_lets_it_start() {
    let with_default =
        without_sensor_handler().on_message(|_conn: Connection, _msg: String| async {});
    let server = within(
        "bind",
        FlexiSocket::server("127.0.0.1:0")
            .classifier::<Panel>()
            .router(with_default)
            .bind(),
    )
    .await;
    assert!(
        server.is_ok(),
        "{:?}",
        server.map(|server| server.local_addr())
    );

    let server = within(
        "bind",
        FlexiSocket::server("127.0.0.1:0")
            .classifier::<Panel>()
            .router(without_sensor_handler())
            .allow_unhandled("002")
            .bind(),
    )
    .await;
    assert!(
        server.is_ok(),
        "{:?}",
        server.map(|server| server.local_addr())
    );

    // Declaring another type does not excuse this one.
    let binding = FlexiSocket::server("127.0.0.1:0")
        .classifier::<Panel>()
        .router(without_sensor_handler())
        .allow_unhandled("003")
        .bind();
    let result = within("bind", binding)
        .await
        .map(|server| server.local_addr());
    assert_eq!(unhandled_type(result).0, "002");
}

#[tokio::test]
async fn the_start_up_table_shows_the_type_allowed_unhandled() {
    let captured = Captured::default();
    // A current-thread runtime: the start-up check logs on this thread.
    let _logging = captured.install();
    let server = within(
        "bind",
        FlexiSocket::server("127.0.0.1:0")
            .classifier::<Panel>()
            .router(without_sensor_handler())
            .allow_unhandled("002")
            .bind(),
    )
    .await
    .expect("allowed");
    let log = captured.text();
    assert!(
        log.lines().any(
            |line| line.contains("client_type=002") && line.contains("(none: allow_unhandled)")
        ),
        "{log}"
    );
    drop(server);
}
