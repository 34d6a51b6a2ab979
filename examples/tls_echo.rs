//! Line echo over TLS. At start it generates a self-signed certificate (for
//! `localhost`, 127.0.0.1, ::1 and the listen address), writes the
//! certificate (not the key) to a temporary file so clients can trust it, and
//! prints how to connect:
//!
//! ```text
//! cargo run --example tls_echo -- 127.0.0.1:8443
//! openssl s_client -connect 127.0.0.1:8443 -quiet -CAfile /tmp/flexi-socket-tls-echo-<pid>.pem
//! ```

use std::net::SocketAddr;

use clap::Parser;
use flexi_socket::{Connection, FlexiSocket, Message, TlsServerConfig, on_message};

#[on_message]
async fn echo(conn: Connection, msg: Message) -> flexi_socket::Result<()> {
    conn.send(msg).await
}

/// A line echo over TLS, with a self-signed certificate made at start.
#[derive(Parser)]
struct Args {
    /// The address to listen on (port 0: any free port).
    #[arg(default_value = "127.0.0.1:8443")]
    addr: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Failed handshakes, errors and the routing table, on stderr.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let Args { addr } = Args::parse();

    let mut names = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
    let listen_ip = addr.parse::<SocketAddr>().ok().map(|listen| listen.ip());
    if let Some(ip) = listen_ip.filter(|ip| !ip.is_unspecified() && !ip.is_loopback()) {
        names.push(ip.to_string());
    }
    let certified = rcgen::generate_simple_self_signed(names)?;
    let cert_pem = certified.cert.pem();
    let cert_file =
        std::env::temp_dir().join(format!("flexi-socket-tls-echo-{}.pem", std::process::id()));
    std::fs::write(&cert_file, &cert_pem)?;
    let tls = TlsServerConfig::from_pem(cert_pem, certified.signing_key.serialize_pem())?;

    let server = FlexiSocket::server(addr).tls(tls).bind().await?;
    let local = server.local_addr();
    println!("listening on {local}");
    println!(
        "connect with: openssl s_client -connect {local} -quiet -CAfile {}",
        cert_file.display()
    );
    let served = server.serve().await;
    let _ = std::fs::remove_file(&cert_file);
    served?;
    Ok(())
}
