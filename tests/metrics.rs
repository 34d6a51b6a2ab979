//! Metrics (feature `metrics`): known traffic through real servers on
//! loopback, then the Prometheus exporter's text checked for every name,
//! label and count. One scenario in one test: the recorder is global to
//! this binary, and its counters add up over every server in it.

mod support;

use std::time::Duration;

use flexi_socket::{
    Classifier, Connection, FlexiSocket, Framing, ProxyProtocol, Router, on_message,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use support::{LineClient, read_to_end, start, within};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;

#[derive(Classifier)]
enum Device {
    #[client_type = "alarm"]
    #[classify(prefix = "!!")]
    Alarm,
    #[client_type = "sensor"]
    #[classify(prefix = "##")]
    Sensor,
    #[classify(default)]
    Other,
}

#[on_message(client_type = "alarm")]
async fn alarm(conn: Connection, msg: String) -> flexi_socket::Result<()> {
    conn.send(format!("ACK {msg}")).await
}

#[on_message]
async fn echo(conn: Connection, msg: String) -> flexi_socket::Result<()> {
    conn.send(msg).await
}

/// The value of the one sample of `series` (name and labels, exactly as
/// rendered) in the exporter's `text`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
        .parse()
        .unwrap_or_else(|_| panic!("{series} has no number in:\n{text}"))
}

fn recorder() -> PrometheusHandle {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("flexi_socket_handler_duration_seconds".into()),
            &[0.001, 0.01, 0.1, 1.0],
        )
        .expect("buckets")
        .install_recorder()
        .expect("the only recorder of this binary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_traffic_is_rendered_with_exact_names_labels_and_counts() {
    let metrics = recorder();
    let server = start(
        FlexiSocket::server("127.0.0.1:0")
            .framing(Framing::lines().max_length(64))
            .classifier::<Device>(),
    )
    .await;

    // Two alarm panels, three lines each (payloads 3 + 4 + 5 bytes; replies
    // "ACK <line>\n", 8 + 9 + 10 bytes).
    let mut panels = Vec::new();
    for _ in 0..2 {
        let mut panel = LineClient::connect(server.addr).await;
        for line in ["!!1", "!!22", "!!333"] {
            assert_eq!(panel.ask(line).await, format!("ACK {line}"));
        }
        panels.push(panel);
    }
    // A sensor: two lines echoed (3 + 4 bytes, replies 4 + 5), an oversize
    // line (an error of kind frame_too_large, not a message), then one more
    // (3 bytes, reply 4), whose answer says the error was counted before it.
    let mut sensor = LineClient::connect(server.addr).await;
    assert_eq!(sensor.ask("##a").await, "##a");
    assert_eq!(sensor.ask("##bb").await, "##bb");
    sensor
        .send_raw(format!("##{}\n", "x".repeat(100)).as_bytes())
        .await;
    assert_eq!(sensor.ask("##c").await, "##c");

    let text = metrics.render();
    assert_eq!(sample(&text, "flexi_socket_connections_open"), 3.0);
    assert!(
        text.contains("# TYPE flexi_socket_connections_open gauge"),
        "{text}"
    );

    // A second server in the process, which takes PROXY headers from a
    // balancer's network only: a connection from elsewhere is closed
    // without events, and counted.
    let proxied = start(
        FlexiSocket::server("127.0.0.1:0")
            .classifier::<Device>()
            .proxy_protocol(ProxyProtocol::trusting(["10.0.0.0/8"]).unwrap()),
    )
    .await;
    let mut untrusted = proxied.connect().await;
    assert!(read_to_end(&mut untrusted).await.is_empty());

    drop((panels, sensor));
    server.stop().await;
    proxied.stop().await;
    let text = metrics.render();

    let counts = [
        ("flexi_socket_connections_open", 0.0),
        // The rejected connection never opened.
        ("flexi_socket_connections_total", 3.0),
        ("flexi_socket_proxy_rejected_total", 1.0),
        (
            r#"flexi_socket_messages_received_total{client_type="alarm"}"#,
            6.0,
        ),
        (
            r#"flexi_socket_messages_received_total{client_type="sensor"}"#,
            3.0,
        ),
        // Client types the classifier names are there from the start.
        (
            r#"flexi_socket_messages_received_total{client_type="Other"}"#,
            0.0,
        ),
        (
            r#"flexi_socket_messages_sent_total{client_type="alarm"}"#,
            6.0,
        ),
        (
            r#"flexi_socket_messages_sent_total{client_type="sensor"}"#,
            3.0,
        ),
        (
            "flexi_socket_bytes_received_total",
            (2 * (3 + 4 + 5) + 3 + 4 + 3) as f64,
        ),
        (
            "flexi_socket_bytes_sent_total",
            (2 * (8 + 9 + 10) + 4 + 5 + 4) as f64,
        ),
        (r#"flexi_socket_errors_total{kind="frame_too_large"}"#, 1.0),
        (r#"flexi_socket_errors_total{kind="invalid_utf8"}"#, 0.0),
        (
            r#"flexi_socket_handler_duration_seconds_count{handler="metrics::alarm"}"#,
            6.0,
        ),
        (
            r#"flexi_socket_handler_duration_seconds_count{handler="metrics::echo"}"#,
            3.0,
        ),
        (
            r#"flexi_socket_handler_duration_seconds_bucket{handler="metrics::echo",le="+Inf"}"#,
            3.0,
        ),
    ];
    for (series, expected) in counts {
        assert_eq!(sample(&text, series), expected, "{series} in:\n{text}");
    }
    assert!(
        text.contains("# TYPE flexi_socket_handler_duration_seconds histogram"),
        "{text}"
    );
    assert!(
        sample(
            &text,
            r#"flexi_socket_handler_duration_seconds_sum{handler="metrics::alarm"}"#
        ) > 0.0
    );

    // A client records nothing: its traffic would add into the servers' series.
    let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = FlexiSocket::client(peer.local_addr().unwrap().to_string())
        .router(Router::new())
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("client connects");
    let (accepted, _) = within("accept", peer.accept()).await.unwrap();
    for line in ["one", "two"] {
        client.send(line).await.unwrap();
    }
    let mut lines = BufReader::new(accepted).lines();
    for line in ["one", "two"] {
        let read = within("the client's line", lines.next_line())
            .await
            .unwrap();
        assert_eq!(read.as_deref(), Some(line));
    }
    // The peer closes first, so the client's close need not wait for it.
    drop(lines);
    client.close().await;
    assert_eq!(
        sorted_lines(&metrics.render()),
        sorted_lines(&text),
        "a client recorded metrics"
    );
}

/// The exporter renders its series in no fixed order.
fn sorted_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines
}
