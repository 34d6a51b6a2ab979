//! The `echo` example, with flexi-socket's metrics recorded into an installed
//! Prometheus recorder that is scraped (rendered) every 15 s and once at
//! exit, as a server in production would be: the other side of the metrics' cost
//! (`bench/instructions.sh` with `METRICS=1`, BENCHMARKS.md "Metrics cost").
//! Built with the bench crate's `metrics` feature. The first argument is the
//! listen address; prints `listening on <addr>`.

use std::time::Duration;

use flexi_socket::{Connection, FlexiSocket, Message, on_message};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

#[on_message]
async fn echo(conn: Connection, msg: Message) -> flexi_socket::Result<()> {
    conn.send(msg).await
}

#[tokio::main]
async fn main() -> flexi_socket::Result<()> {
    let addr = flexi_socket_bench::server_args::listen_address(
        "echo_metrics",
        "The echo example with flexi-socket's metrics in a Prometheus recorder",
        "127.0.0.1:8081",
    );
    // As the echo example: errors and the routing table on stderr.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    // Installed before the server starts (its handles are resolved then),
    // with buckets for the handler durations as the README's example.
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("flexi_socket_handler_duration_seconds".into()),
            &[0.0001, 0.001, 0.01, 0.1, 1.0],
        )
        .expect("buckets")
        .install_recorder()
        .expect("the only recorder");
    let scraper = recorder.clone();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(15));
            std::hint::black_box(scraper.render());
        }
    });
    let server = FlexiSocket::server(addr).bind().await?;
    println!("listening on {}", server.local_addr());
    server.serve().await?;
    // A last scrape: every sample recorded is processed within the count.
    std::hint::black_box(recorder.render());
    Ok(())
}
