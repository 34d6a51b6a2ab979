//! TLS over loopback: certificates generated at test time (rcgen; nothing
//! secret is committed), a tokio-rustls client, misbehaving peers (silent,
//! plaintext, no client certificate), `openssl s_client` when installed, and
//! flexi-socket's own TLS client (untrusted or misnamed servers, mutual TLS,
//! reconnecting).

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flexi_socket::{
    ClientBuilder, Connection, DisconnectReason, Error, FlexiSocket, Framing, Message, Router,
    ServerBuilder, TlsClientConfig, TlsServerConfig,
};
use support::client::{client_router, quick_retries, server_router};
use support::example::ExampleServer;
use support::tls::{
    ClientCa, Identity, TempDir, TlsLineClient, client_config, server_identity, through_openssl,
};
use support::{Events, LineClient, Running, WAIT, eventually, start, within};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// An echo server that counts its on_connect events.
fn counted_echo(opened: &Arc<AtomicUsize>) -> Router {
    let opened = Arc::clone(opened);
    Router::new()
        .on_connect(move |_conn: Connection| {
            let opened = Arc::clone(&opened);
            async move {
                opened.fetch_add(1, Ordering::SeqCst);
            }
        })
        .on_message(|conn: Connection, msg: Message| async move { conn.send(msg).await })
}

fn tls_server(identity: &Identity, opened: &Arc<AtomicUsize>) -> ServerBuilder {
    let tls = TlsServerConfig::from_pem(&identity.cert_pem, &identity.key_pem).unwrap();
    FlexiSocket::server("127.0.0.1:0")
        .router(counted_echo(opened))
        .tls(tls)
}

async fn failed_handshakes(running: &Running, expected: u64) {
    let handle = running.handle.clone();
    eventually("the failed handshake to be counted", || {
        handle.stats().tls_handshakes_failed == expected
    })
    .await;
}

/// Reads until the server closes (EOF, or a reset / TLS alert as an error).
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let _ = within(
        "the server to close the connection",
        stream.read_to_end(&mut received),
    )
    .await;
    received
}

#[tokio::test]
async fn echo_round_trip_over_tls() {
    let identity = server_identity();
    let opened = Arc::new(AtomicUsize::new(0));
    let running = start(tls_server(&identity, &opened)).await;

    let mut client = TlsLineClient::connect(running.addr, client_config(&identity.cert_pem, None))
        .await
        .expect("handshake");
    assert_eq!(client.ask("hello over TLS").await, "hello over TLS");
    assert_eq!(client.ask("second").await, "second");
    assert_eq!(opened.load(Ordering::SeqCst), 1);
    assert_eq!(running.connections.len(), 1);
    assert_eq!(running.handle.stats().tls_handshakes_failed, 0);

    drop(client);
    let report = running.stop().await;
    assert_eq!(report.connections_aborted, 0);
}

#[tokio::test]
async fn silent_client_is_closed_at_the_handshake_timeout_while_others_are_served() {
    let identity = server_identity();
    let opened = Arc::new(AtomicUsize::new(0));
    // Long enough for the other client's handshake and echo (a debug build
    // of rustls, on a busy CI machine) to finish well before it.
    let timeout = Duration::from_secs(1);
    let running = start(tls_server(&identity, &opened).tls_handshake_timeout(timeout)).await;

    let started = Instant::now();
    let mut silent = TcpStream::connect(running.addr).await.unwrap();
    let silent_closed = tokio::spawn(async move {
        let received = until_closed(&mut silent).await;
        (started.elapsed(), received)
    });

    // The silent peer's handshake waits in its own task, not in the accept loop.
    let mut client = TlsLineClient::connect(running.addr, client_config(&identity.cert_pem, None))
        .await
        .expect("handshake");
    assert_eq!(client.ask("meanwhile").await, "meanwhile");
    assert!(
        !silent_closed.is_finished(),
        "the silent client was closed before the handshake timeout"
    );

    let (after, received) = within("the silent client's close", silent_closed)
        .await
        .unwrap();
    assert!(
        after >= timeout,
        "closed after {after:?}, before the {timeout:?} timeout"
    );
    assert!(received.is_empty(), "a silent client got {received:?}");
    failed_handshakes(&running, 1).await;
    assert_eq!(
        opened.load(Ordering::SeqCst),
        1,
        "on_connect ran for a failed handshake"
    );
    assert_eq!(running.connections.len(), 1);

    assert_eq!(client.ask("still here").await, "still here");
    drop(client);
    running.stop().await;
}

#[tokio::test]
async fn plaintext_client_is_refused_and_the_server_keeps_serving() {
    let identity = server_identity();
    let opened = Arc::new(AtomicUsize::new(0));
    let running = start(tls_server(&identity, &opened)).await;

    let mut plaintext = LineClient::connect(running.addr).await;
    plaintext.send_line("hello in plaintext").await;
    let mut received = Vec::new();
    let _ = within(
        "the server to close the plaintext connection",
        plaintext.reader.read_to_end(&mut received),
    )
    .await;
    // At most a TLS alert comes back, never the echo.
    assert!(
        !String::from_utf8_lossy(&received).contains("hello"),
        "plaintext was echoed: {received:?}"
    );
    failed_handshakes(&running, 1).await;
    assert_eq!(
        opened.load(Ordering::SeqCst),
        0,
        "on_connect ran for a plaintext client"
    );
    assert!(running.connections.is_empty());

    let mut client = TlsLineClient::connect(running.addr, client_config(&identity.cert_pem, None))
        .await
        .expect("handshake");
    assert_eq!(client.ask("after plaintext").await, "after plaintext");
    assert_eq!(opened.load(Ordering::SeqCst), 1);
    drop(client);
    running.stop().await;
}

/// Connects, sends `bytes`, then closes TCP without TLS's close_notify.
async fn send_and_close_without_notify(addr: SocketAddr, config: Arc<ClientConfig>, bytes: &[u8]) {
    let mut stream = tls_connect(addr, config).await;
    within("write", stream.write_all(bytes)).await.unwrap();
    within("flush", stream.flush()).await.unwrap();
    within("FIN", stream.get_mut().0.shutdown()).await.unwrap();
    let mut rest = Vec::new();
    let _ = within("the server's close", stream.read_to_end(&mut rest)).await;
}

#[tokio::test]
async fn close_without_close_notify_is_an_eof_unless_the_framing_delivers_at_eof() {
    let identity = server_identity();
    let config = client_config(&identity.cert_pem, None);
    for (framing, delivered_at_eof) in [(Framing::lines(), false), (Framing::eof(), true)] {
        let (events, mut log) = Events::new();
        let (messages, errors, disconnects) = (events.clone(), events.clone(), events.clone());
        let router = Router::new()
            .on_message(move |_conn: Connection, msg: String| {
                let events = messages.clone();
                async move { events.push(format!("message {msg}")) }
            })
            .on_error(move |_conn: Connection, error: Error| {
                let events = errors.clone();
                async move { events.push(format!("error {error}")) }
            })
            .on_disconnect(move |_conn: Connection, reason: DisconnectReason| {
                let events = disconnects.clone();
                async move { events.push(format!("disconnect {reason:?}")) }
            });
        let tls = TlsServerConfig::from_pem(&identity.cert_pem, &identity.key_pem).unwrap();
        let server = FlexiSocket::server("127.0.0.1:0")
            .framing(framing)
            .router(router)
            .tls(tls);
        let running = start(server).await;

        send_and_close_without_notify(running.addr, Arc::clone(&config), b"whole\ncut").await;
        if delivered_at_eof {
            // The stream may have been truncated: nothing is delivered, the error is reported.
            let error = log.next().await;
            assert!(error.starts_with("error I/O error"), "{error}");
            assert!(error.contains("close_notify"), "{error}");
            assert!(log.next().await.starts_with("disconnect Reset"));
        } else {
            // Lines frame themselves: the cut line is reported, the close is a plain EOF.
            assert_eq!(log.next().await, "message whole");
            assert!(
                log.next()
                    .await
                    .starts_with("error discarded an incomplete frame")
            );
            assert_eq!(log.next().await, "disconnect PeerClosed");
        }
        running.stop().await;
    }
}

/// Links end lines with DC4; everyone else sends text lines.
struct LinkOrLine(bool);

impl flexi_socket::Classifier for LinkOrLine {
    fn classify(first_unit: &[u8]) -> Self {
        LinkOrLine(first_unit.ends_with(b"\x14"))
    }
    fn client_type(&self) -> flexi_socket::ClientType {
        if self.0 { "link" } else { "line" }.into()
    }
}

/// Connects over TLS and returns the decrypted stream.
async fn tls_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = within("connect", TcpStream::connect(addr)).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    within(
        "TLS handshake",
        TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn per_client_type_framing_sees_the_decrypted_first_unit() {
    let identity = server_identity();
    let tls = TlsServerConfig::from_pem(&identity.cert_pem, &identity.key_pem).unwrap();
    let router = Router::new()
        .on_message_for("link", |conn: Connection, _line: Message| async move {
            conn.send(&b"\x06"[..]).await
        })
        .on_message(|conn: Connection, msg: Message| async move { conn.send(msg).await });
    let running = start(
        FlexiSocket::server("127.0.0.1:0")
            .classifier::<LinkOrLine>()
            .classify_raw(flexi_socket::FirstUnit::until_any(b"\n\x14"))
            .framing_for("link", Framing::separator("\x14").outbound(Framing::raw()))
            .router(router)
            .tls(tls),
    )
    .await;
    let config = client_config(&identity.cert_pem, None);

    let mut link = tls_connect(running.addr, Arc::clone(&config)).await;
    // Two TLS records: the server may or may not read them apart, and the
    // unit must come out the same either way.
    within("write", link.write_all(b"1011")).await.unwrap();
    within("flush", link.flush()).await.unwrap();
    within("write", link.write_all(b" @ \x145 18\x14"))
        .await
        .unwrap();
    within("flush", link.flush()).await.unwrap();
    let mut acks = [0; 2];
    within("two ACK bytes", link.read_exact(&mut acks))
        .await
        .unwrap();
    assert_eq!(acks, *b"\x06\x06");

    let mut line = tls_connect(running.addr, config).await;
    within("write", line.write_all(b"hello\n")).await.unwrap();
    within("flush", line.flush()).await.unwrap();
    let mut echo = [0; 6];
    within("the echo", line.read_exact(&mut echo))
        .await
        .unwrap();
    assert_eq!(echo, *b"hello\n");
    running.stop().await;
}

/// The client's view of a refused client certificate: in TLS 1.3 its own
/// handshake may complete before the server's verdict, so the refusal can
/// arrive on the first read.
async fn refused(addr: SocketAddr, config: Arc<ClientConfig>) {
    let Ok(mut client) = TlsLineClient::connect(addr, config).await else {
        return;
    };
    // An error (the server's alert) or EOF; never a reply.
    if let Ok(Some(reply)) = client.try_ask("let me in").await {
        panic!("a client without an accepted certificate got {reply:?}");
    }
}

/// The counted echo over TLS, requiring client certificates issued by `ca`.
fn mutual_tls_server(
    identity: &Identity,
    ca: &ClientCa,
    opened: &Arc<AtomicUsize>,
) -> ServerBuilder {
    let tls = TlsServerConfig::from_pem(&identity.cert_pem, &identity.key_pem)
        .unwrap()
        .require_client_certs(&ca.cert_pem)
        .unwrap();
    FlexiSocket::server("127.0.0.1:0")
        .router(counted_echo(opened))
        .tls(tls)
}

#[tokio::test]
async fn client_certificates_required_and_missing_fail() {
    let identity = server_identity();
    let ca = ClientCa::new("trusted clients");
    let opened = Arc::new(AtomicUsize::new(0));
    let running = start(mutual_tls_server(&identity, &ca, &opened)).await;

    refused(running.addr, client_config(&identity.cert_pem, None)).await;
    failed_handshakes(&running, 1).await;
    // A certificate from another CA is refused as well.
    let stranger = ClientCa::new("someone else").issue_client();
    refused(
        running.addr,
        client_config(&identity.cert_pem, Some(&stranger)),
    )
    .await;
    failed_handshakes(&running, 2).await;
    assert_eq!(opened.load(Ordering::SeqCst), 0);
    assert!(running.connections.is_empty());
    running.stop().await;
}

#[tokio::test]
async fn client_certificates_required_and_present_work() {
    let identity = server_identity();
    let ca = ClientCa::new("trusted clients");
    let opened = Arc::new(AtomicUsize::new(0));
    let running = start(mutual_tls_server(&identity, &ca, &opened)).await;

    let client_identity = ca.issue_client();
    let config = client_config(&identity.cert_pem, Some(&client_identity));
    let mut client = TlsLineClient::connect(running.addr, config)
        .await
        .expect("handshake");
    assert_eq!(client.ask("mutual").await, "mutual");
    assert_eq!(opened.load(Ordering::SeqCst), 1);
    assert_eq!(running.handle.stats().tls_handshakes_failed, 0);
    drop(client);
    running.stop().await;
}

#[test]
fn unusable_certificates_and_keys_are_clear_errors() {
    let identity = server_identity();
    let other = server_identity();
    let reason = |result: flexi_socket::Result<TlsServerConfig>| match result {
        Err(Error::Tls { reason }) => reason,
        other => panic!("expected Error::Tls, got {other:?}"),
    };

    let missing = reason(TlsServerConfig::from_pem_files(
        "/nonexistent/server.crt",
        "/nonexistent/server.key",
    ));
    assert!(missing.contains("/nonexistent/server.crt"), "{missing}");

    let swapped = reason(TlsServerConfig::from_pem(
        &identity.key_pem,
        &identity.cert_pem,
    ));
    assert!(swapped.contains("swapped"), "{swapped}");

    let mismatched = reason(TlsServerConfig::from_pem(
        &identity.cert_pem,
        &other.key_pem,
    ));
    assert!(mismatched.contains("does not fit"), "{mismatched}");

    let no_roots = reason(
        TlsServerConfig::from_pem(&identity.cert_pem, &identity.key_pem)
            .unwrap()
            .require_client_certs("not a PEM file"),
    );
    assert!(no_roots.contains("no certificate"), "{no_roots}");

    let rustls_config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap(),
        PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    let from_rustls = reason(
        TlsServerConfig::from_rustls(Arc::new(rustls_config))
            .require_client_certs(&identity.cert_pem),
    );
    assert!(
        from_rustls.contains("with_client_cert_verifier"),
        "{from_rustls}"
    );

    // The same checks through files, and the happy path.
    let dir = TempDir::new("files");
    let cert = dir.write("server.crt", &identity.cert_pem);
    let key = dir.write("server.key", &identity.key_pem);
    TlsServerConfig::from_pem_files(&cert, &key).expect("valid files");
    let swapped = reason(TlsServerConfig::from_pem_files(&key, &cert));
    assert!(
        swapped.contains("swapped") && swapped.contains("server.key"),
        "{swapped}"
    );
}

#[tokio::test]
async fn openssl_s_client_interoperates() {
    let identity = server_identity();
    let opened = Arc::new(AtomicUsize::new(0));
    let running = start(tls_server(&identity, &opened)).await;
    let dir = TempDir::new("openssl");
    let ca_file = dir.write("server.crt", &identity.cert_pem);
    if let Some(reply) = through_openssl(running.addr, &ca_file, "hello from openssl").await {
        assert_eq!(reply, "hello from openssl");
        assert_eq!(opened.load(Ordering::SeqCst), 1);
    }
    running.stop().await;
}

#[tokio::test]
async fn tls_echo_example_prints_a_working_openssl_command() {
    let mut server = ExampleServer::start("tls_echo").await;
    let mut hint = String::new();
    within("the connect hint", server.stdout.read_line(&mut hint))
        .await
        .unwrap();
    let expected = format!("openssl s_client -connect {} -quiet -CAfile ", server.addr);
    let ca_file = PathBuf::from(
        hint.trim()
            .split_once(&expected)
            .unwrap_or_else(|| panic!("the hint {hint:?} lacks {expected:?}"))
            .1,
    );
    let cert_pem = std::fs::read_to_string(&ca_file).expect("the example wrote its certificate");

    let mut client = TlsLineClient::connect(server.addr, client_config(&cert_pem, None))
        .await
        .expect("handshake with the example");
    assert_eq!(client.ask("hello example").await, "hello example");
    drop(client);
    if let Some(reply) = through_openssl(server.addr, &ca_file, "via openssl").await {
        assert_eq!(reply, "via openssl");
    }
    server.stop().await;
    // Killed by PID, the example cannot clean up after itself.
    let _ = std::fs::remove_file(&ca_file);
}

/// A TLS server at `addr` that greets and answers (see `server_router`).
fn greeting_tls_server(addr: impl ToString, identity: &Identity, events: &Events) -> ServerBuilder {
    let tls = TlsServerConfig::from_pem(&identity.cert_pem, &identity.key_pem).unwrap();
    FlexiSocket::server(addr)
        .router(server_router(events))
        .tls(tls)
}

/// Trusts the self-signed `identity` under the name it is issued for.
fn trusting(identity: &Identity) -> TlsClientConfig {
    TlsClientConfig::with_root_pem(&identity.cert_pem)
        .unwrap()
        .server_name("localhost")
        .unwrap()
}

fn tls_client(addr: SocketAddr, tls: TlsClientConfig, events: &Events) -> ClientBuilder {
    FlexiSocket::client(addr)
        .router(client_router(events))
        .tls(tls)
}

#[tokio::test]
async fn tls_client_runs_the_same_handlers_and_request_reply() {
    let identity = server_identity();
    let (server_events, mut server_log) = Events::new();
    let running = start(greeting_tls_server(
        "127.0.0.1:0",
        &identity,
        &server_events,
    ))
    .await;

    let (events, mut log) = Events::new();
    let client = within(
        "the TLS client to connect",
        tls_client(running.addr, trusting(&identity), &events).connect(),
    )
    .await
    .unwrap();
    assert_eq!(log.next().await, "client got welcome");

    client.send("plain").await.unwrap();
    assert_eq!(server_log.next().await, "server got plain");
    assert_eq!(log.next().await, "client got re:plain");
    let reply = client.request("question", WAIT).await.unwrap();
    assert_eq!(reply, Message::from("re:question"));
    assert_eq!(running.handle.stats().tls_handshakes_failed, 0);

    client.close().await;
    assert!(log.next().await.starts_with("client disconnected"));
    running.stop().await;
}

/// Connects with `tls` under at most two attempts and returns why it gave up.
async fn gives_up(addr: SocketAddr, tls: TlsClientConfig, events: &Events) -> String {
    let result = within(
        "the TLS client to give up",
        tls_client(addr, tls, events)
            .reconnect(quick_retries().max_attempts(2))
            .connect(),
    )
    .await;
    let error = result.expect_err("the handshake should fail");
    assert!(matches!(error, Error::GaveUp { .. }), "{error}");
    let text = error.to_string();
    assert!(
        text.contains("TLS handshake") && text.contains("after 2 attempts"),
        "{text}"
    );
    text
}

#[tokio::test]
async fn tls_client_gives_up_on_a_misnamed_or_untrusted_server_naming_the_problem() {
    let identity = server_identity();
    let (server_events, _server_log) = Events::new();
    let running = start(greeting_tls_server(
        "127.0.0.1:0",
        &identity,
        &server_events,
    ))
    .await;
    let (events, mut log) = Events::new();

    let misnamed = TlsClientConfig::with_root_pem(&identity.cert_pem)
        .unwrap()
        .server_name("wrong.example")
        .unwrap();
    let text = gives_up(running.addr, misnamed, &events).await;
    assert!(
        text.contains("not valid for name \"wrong.example\"") && text.contains("server_name("),
        "{text}"
    );

    // The roots hold another CA, then another self-signed certificate with
    // the same issuer name as the server's (rustls: UnknownIssuer, BadSignature).
    let other_ca = TlsClientConfig::with_root_pem(ClientCa::new("another CA").cert_pem)
        .unwrap()
        .server_name("localhost")
        .unwrap();
    let same_name = trusting(&server_identity());
    for untrusted in [other_ca, same_name] {
        let text = gives_up(running.addr, untrusted, &events).await;
        assert!(
            text.contains("not issued by a CA in the root store") && text.contains("with_root_pem"),
            "{text}"
        );
    }

    // Each refused attempt failed on the server too, and nothing opened.
    failed_handshakes(&running, 6).await;
    assert!(running.connections.is_empty());
    assert!(log.0.try_recv().is_err(), "a handler ran without TLS");
    running.stop().await;
}

#[tokio::test]
async fn tls_client_presents_its_certificate_to_a_server_that_requires_one() {
    let identity = server_identity();
    let ca = ClientCa::new("trusted clients");
    let tls = TlsServerConfig::from_pem(&identity.cert_pem, &identity.key_pem)
        .unwrap()
        .require_client_certs(&ca.cert_pem)
        .unwrap();
    let (server_events, mut server_log) = Events::new();
    let running = start(
        FlexiSocket::server("127.0.0.1:0")
            .router(server_router(&server_events))
            .tls(tls),
    )
    .await;

    let client_identity = ca.issue_client();
    // No server_name: the host of the address, 127.0.0.1, which the
    // server's certificate also names.
    let tls = TlsClientConfig::with_root_pem(&identity.cert_pem)
        .unwrap()
        .client_cert_pem(&client_identity.cert_pem, &client_identity.key_pem)
        .unwrap();
    let (events, mut log) = Events::new();
    let client = within(
        "the mutual-TLS client to connect",
        tls_client(running.addr, tls, &events).connect(),
    )
    .await
    .unwrap();
    assert_eq!(log.next().await, "client got welcome");
    let reply = client.request("mutual", WAIT).await.unwrap();
    assert_eq!(reply, Message::from("re:mutual"));
    assert_eq!(server_log.next().await, "server got mutual");
    assert_eq!(running.handle.stats().tls_handshakes_failed, 0);

    client.close().await;
    running.stop().await;
}

#[tokio::test]
async fn tls_client_reconnects_with_handshake_then_outbox_after_the_server_restarts() {
    let identity = server_identity();
    let (server_events, mut server_log) = Events::new();
    let first = start(greeting_tls_server(
        "127.0.0.1:0",
        &identity,
        &server_events,
    ))
    .await;
    let addr = first.addr;

    let (events, mut log) = Events::new();
    let client = within(
        "the TLS client to connect",
        tls_client(addr, trusting(&identity), &events)
            .handshake("HELLO")
            .reconnect(quick_retries())
            .connect(),
    )
    .await
    .unwrap();
    assert_eq!(server_log.next().await, "server got HELLO");

    first.stop().await;
    log.next_starting("client disconnected").await;
    for i in 1..=3 {
        client.send(format!("queued {i}")).await.unwrap();
    }
    assert!(!client.is_connected());

    let second = start(greeting_tls_server(addr, &identity, &server_events)).await;
    within("the TLS client to reconnect", client.connected())
        .await
        .unwrap();
    for expected in [
        "server got HELLO",
        "server got queued 1",
        "server got queued 2",
        "server got queued 3",
    ] {
        assert_eq!(server_log.next().await, expected);
    }
    // "welcome" and the replies to the handshake and the outbox come first.
    let reply = client
        .request_matching("after", WAIT, |m| m.starts_with(b"re:after"))
        .await
        .unwrap();
    assert_eq!(reply, Message::from("re:after"));
    assert_eq!(second.handle.stats().tls_handshakes_failed, 0);
    client.close().await;
    second.stop().await;
}

#[test]
fn unusable_client_configurations_are_clear_errors() {
    let identity = server_identity();
    let reason = |result: flexi_socket::Result<TlsClientConfig>| match result {
        Err(Error::Tls { reason }) => reason,
        other => panic!("expected Error::Tls, got {other:?}"),
    };

    let no_roots = reason(TlsClientConfig::with_root_pem("not a PEM file"));
    assert!(no_roots.contains("no certificate"), "{no_roots}");
    let missing = reason(TlsClientConfig::from_root_pem_file("/nonexistent/ca.crt"));
    assert!(missing.contains("/nonexistent/ca.crt"), "{missing}");

    let bad_name = reason(trusting(&identity).server_name("not a name"));
    assert!(
        bad_name.contains("`not a name` is not a TLS server name"),
        "{bad_name}"
    );

    let swapped =
        reason(trusting(&identity).client_cert_pem(&identity.key_pem, &identity.cert_pem));
    assert!(swapped.contains("swapped"), "{swapped}");

    let rustls_config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(tokio_rustls::rustls::RootCertStore::empty())
        .with_no_client_auth();
    let from_rustls = reason(
        TlsClientConfig::from_rustls(Arc::new(rustls_config), "localhost")
            .and_then(|tls| tls.client_cert_pem(&identity.cert_pem, &identity.key_pem)),
    );
    assert!(
        from_rustls.contains("with_client_auth_cert"),
        "{from_rustls}"
    );

    // The root store from a file, and no server name to take from the address.
    let dir = TempDir::new("client-files");
    let ca_file = dir.write("ca.crt", &identity.cert_pem);
    let tls = TlsClientConfig::from_root_pem_file(&ca_file).expect("valid file");
    let unnamed = FlexiSocket::client("not_a_host!:8443")
        .router(Router::new())
        .tls(tls)
        .spawn()
        .expect_err("no server name");
    assert!(
        matches!(&unnamed, Error::Tls { reason } if reason.contains("server_name(")),
        "{unnamed}"
    );
}

/// One TLS stream now carries a connection's reads and writes (no halves):
/// a peer that streams lines while the echoes stream back gets every echo
/// in order, both directions busy at once, and a close the server starts
/// ends with TLS's close_notify (an orderly EOF for the peer, not a cut).
#[tokio::test]
async fn a_tls_stream_reads_and_writes_at_once_and_a_server_close_sends_close_notify() {
    let identity = server_identity();
    let router = Router::new().on_message(|conn: Connection, msg: String| async move {
        if msg == "bye" {
            conn.send("bye").await?;
            conn.close();
            return Ok(());
        }
        conn.send(msg).await
    });
    let tls = TlsServerConfig::from_pem(&identity.cert_pem, &identity.key_pem).unwrap();
    let running = start(FlexiSocket::server("127.0.0.1:0").router(router).tls(tls)).await;
    let stream = tls_connect(running.addr, client_config(&identity.cert_pem, None)).await;
    let (mut reader, mut writer) = tokio::io::split(stream);

    // Far more than the sockets buffer: the server's writes wait on this
    // client's reads while it still reads the lines that keep coming.
    const LINES: usize = 20_000;
    let line = |n: usize| format!("{n:06} {}\n", "x".repeat(90));
    let sending = tokio::spawn(async move {
        for n in 0..LINES {
            writer.write_all(line(n).as_bytes()).await.unwrap();
        }
        writer.write_all(b"bye\n").await.unwrap();
        writer.flush().await.unwrap();
        writer
    });
    let mut received = Vec::new();
    within("every echo, then the server's close_notify", async {
        reader.read_to_end(&mut received).await
    })
    .await
    .expect("an orderly TLS close: close_notify, not a cut");
    let expected: String = (0..LINES).map(line).chain(["bye\n".to_owned()]).collect();
    assert_eq!(received.len(), expected.len());
    assert!(received == expected.as_bytes(), "echoes out of order");
    drop(within("the sender", sending).await.unwrap());
    running.stop().await;
}
