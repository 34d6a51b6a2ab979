//! A hand-written tokio-rustls line echo: the batching echo's way (every
//! line one read completes goes back in one write, lines as in
//! [`flexi_socket_bench::line_echo`]) over TLS, with rustls's ring provider
//! and a self-signed certificate, as the `tls_echo` example has. The first
//! argument is the listen address; prints `listening on <addr>` and, like
//! `tls_echo`, `connect with: ... -CAfile <certificate file>`.

use std::io;
use std::time::Duration;

use flexi_socket_bench::line_echo::LineEcho;
use flexi_socket_bench::tls::self_signed_server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio_rustls::TlsAcceptor;

/// A TLS record holds at most 16 KiB of plaintext: one read returns no more.
const READ_CHUNK: usize = 16 * 1024;
/// As flexi-socket's default `tls_handshake_timeout`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<(), String> {
    let addr = flexi_socket_bench::server_args::listen_address(
        "baseline_tls",
        "A hand-written tokio-rustls line echo with a self-signed certificate",
        "127.0.0.1:8443",
    );
    let (config, cert_file) = self_signed_server()?;
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("bind {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on {local}");
    println!(
        "connect with: openssl s_client -connect {local} -quiet -CAfile {}",
        cert_file.display()
    );
    let acceptor = TlsAcceptor::from(config);
    // bench/run.sh stops servers with SIGTERM: remove the certificate file then too.
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    tokio::select! {
        () = accept(listener, acceptor) => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    let _ = std::fs::remove_file(&cert_file);
    Ok(())
}

async fn accept(listener: TcpListener, acceptor: TlsAcceptor) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = echo(stream, acceptor).await;
                });
            }
            // Out of file descriptors and the like: wait instead of spinning.
            Err(error) => {
                eprintln!("accept: {error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn echo(stream: TcpStream, acceptor: TlsAcceptor) -> io::Result<()> {
    // The socket options flexi-socket sets, so only the code path differs.
    stream.set_nodelay(true)?;
    let mut stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    let mut lines = LineEcho::default();
    let mut input = vec![0; READ_CHUNK];
    let mut output = Vec::new();
    loop {
        let read = stream.read(&mut input).await?;
        if read == 0 {
            return Ok(());
        }
        output.clear();
        lines.complete_lines(&input[..read], &mut output);
        if !output.is_empty() {
            stream.write_all(&output).await?;
            stream.flush().await?;
        }
        lines.settle();
    }
}
