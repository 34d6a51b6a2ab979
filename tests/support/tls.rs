//! TLS for the tests: certificates generated at test time (rcgen; nothing
//! secret is committed), a tokio-rustls line client, and `openssl s_client`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use super::{WAIT, within};

/// A certificate and its private key, as PEM.
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The server's self-signed certificate, valid for localhost and 127.0.0.1.
pub fn server_identity() -> Identity {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    Identity {
        cert_pem: certified.cert.pem(),
        key_pem: certified.signing_key.serialize_pem(),
    }
}

/// A CA that issues client certificates.
pub struct ClientCa {
    pub cert_pem: String,
    pub issuer: Issuer<'static, KeyPair>,
}

impl ClientCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    pub fn issue_client(&self) -> Identity {
        let mut params = CertificateParams::new(vec!["client.test".to_owned()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A client that trusts `server_cert_pem` and presents `identity` if given.
pub fn client_config(server_cert_pem: &str, identity: Option<&Identity>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(server_cert_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    Arc::new(config)
}

/// A line client over TLS.
pub struct TlsLineClient {
    pub reader: BufReader<ReadHalf<TlsStream<TcpStream>>>,
    pub writer: WriteHalf<TlsStream<TcpStream>>,
}

impl TlsLineClient {
    /// Connects and completes the handshake (from the client's side).
    pub async fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> std::io::Result<Self> {
        let tcp = within("connect", TcpStream::connect(addr)).await?;
        let name = ServerName::try_from("localhost").unwrap();
        let stream = within(
            "TLS handshake",
            TlsConnector::from(config).connect(name, tcp),
        )
        .await?;
        let (reader, writer) = tokio::io::split(stream);
        Ok(Self {
            reader: BufReader::new(reader),
            writer,
        })
    }

    /// Sends a line; the reply line, or the error / EOF that came instead.
    pub async fn try_ask(&mut self, line: &str) -> std::io::Result<Option<String>> {
        within(
            "write",
            self.writer.write_all(format!("{line}\n").as_bytes()),
        )
        .await?;
        within("flush", self.writer.flush()).await?;
        let mut reply = String::new();
        if within("a line", self.reader.read_line(&mut reply)).await? == 0 {
            return Ok(None);
        }
        Ok(Some(reply.trim_end_matches('\n').to_owned()))
    }

    pub async fn ask(&mut self, line: &str) -> String {
        self.try_ask(line)
            .await
            .expect("TLS read/write")
            .expect("server closed the connection")
    }
}

/// A directory under the system's temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "flexi-socket-tls-test-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Pipes a line through `openssl s_client` (verifying the server against
/// `ca_file`) and returns the first line that comes back, or `None` when
/// openssl is not installed. The child is killed by its PID.
pub async fn through_openssl(addr: SocketAddr, ca_file: &Path, line: &str) -> Option<String> {
    let spawned = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-quiet",
            "-verify_return_error",
        ])
        .arg("-CAfile")
        .arg(ca_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let Ok(mut openssl) = spawned else {
        super::missing_tool("openssl", ".ci/run installs openssl");
        return None;
    };
    let mut stdin = openssl.stdin.take().unwrap();
    let mut stdout = BufReader::new(openssl.stdout.take().unwrap());
    let mut stderr = openssl.stderr.take().unwrap();
    let exchange = async {
        stdin.write_all(format!("{line}\n").as_bytes()).await?;
        stdin.flush().await?;
        let mut reply = String::new();
        stdout.read_line(&mut reply).await.map(|_| reply)
    };
    let reply = tokio::time::timeout(WAIT, exchange).await;
    openssl.start_kill().expect("kill openssl by PID");
    within("openssl exit", openssl.wait()).await.unwrap();
    let mut diagnostics = String::new();
    let _ = within("openssl stderr", stderr.read_to_string(&mut diagnostics)).await;
    match reply {
        Ok(Ok(reply)) if !reply.is_empty() => Some(reply.trim_end().to_owned()),
        other => panic!("openssl s_client got no echo ({other:?}); it said:\n{diagnostics}"),
    }
}
