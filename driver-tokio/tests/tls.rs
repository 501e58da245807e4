//! TLS on tokio: a rustls client and `openssl s_client` against `serve_tls`, and peers that are
//! not TLS, or never finish a handshake, closed alone with a typed reason.
#![cfg(feature = "tls")]

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use asynchat_core::tls::rustls::pki_types::ServerName;
use asynchat_core::{
    Bytes, CloseReason, Config, Context, PeerError, Protocol, Terminator, TlsError,
};
use asynchat_tokio::tls::{client_config, server_config_from_pem};
use tokio::net::TcpListener;

use asynchat_core::testing::LineEcho as Echo;

/// Sends `ping` once connected, keeps the reply line, closes.
struct Ping(Arc<Mutex<Vec<Bytes>>>);

impl Protocol for Ping {
    fn first_terminator(&self) -> Terminator {
        "\n".into()
    }
    fn connected(&mut self, ctx: &mut Context<'_>) {
        ctx.push("ping\n");
    }
    fn found_terminator(&mut self, ctx: &mut Context<'_>, line: Bytes) {
        self.0.lock().unwrap().push(line);
        ctx.close_when_done();
    }
}

/// A certificate for `localhost` and `127.0.0.1`, as PEM, written where openssl can read it.
struct Cert {
    cert: String,
    key: String,
    path: std::path::PathBuf,
}

fn cert() -> Cert {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let made = rcgen::generate_simple_self_signed(names).unwrap();
    let (cert, key) = (made.cert.pem(), made.signing_key.serialize_pem());
    let path = std::env::temp_dir().join(format!("asynchat-tokio-tls-{}.pem", std::process::id()));
    std::fs::write(&path, &cert).unwrap();
    Cert { cert, key, path }
}

async fn tls_echo(cert: &Cert, config: Config) -> asynchat_tokio::Server {
    let tls =
        server_config_from_pem(cert.cert.as_bytes(), cert.key.as_bytes(), &[b"echo"]).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    asynchat_tokio::serve_tls(listener, Arc::new(tls), config, |_| Echo).unwrap()
}

#[tokio::test]
async fn a_rustls_client_and_server_echo_through_the_core_layer() {
    let cert = cert();
    let server = tls_echo(&cert, Config::default()).await;
    let client = Arc::new(client_config(cert.cert.as_bytes(), &[b"echo"]).unwrap());
    let lines = Arc::default();
    let name = ServerName::try_from("localhost").unwrap();
    let connection = asynchat_tokio::connect_tls(
        server.addr(),
        name,
        client,
        Ping(Arc::clone(&lines)),
        Config::default(),
    )
    .unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(10), tokio::spawn(connection))
        .await
        .expect("the client finished")
        .unwrap();
    assert_eq!(reason, CloseReason::Done);
    assert_eq!(*lines.lock().unwrap(), [Bytes::from("ping")]);
}

#[tokio::test]
async fn openssl_s_client_echoes_with_alpn() {
    let cert = cert();
    let server = tls_echo(&cert, Config::default()).await;
    let addr = server.addr();
    let path = cert.path.clone();
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("openssl")
            .args([
                "s_client",
                "-quiet",
                "-no_ign_eof",
                "-alpn",
                "echo",
                "-servername",
                "localhost",
            ])
            .arg("-connect")
            .arg(addr.to_string())
            .arg("-CAfile")
            .arg(&path)
            .args(["-verify_return_error", "-verify_hostname", "localhost"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("openssl");
        // Kept open until the reply is in: at the end of its input s_client would quit.
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hello over tls\n").unwrap();
        let mut got = Vec::new();
        let mut stdout = child.stdout.take().unwrap();
        let mut buf = [0; 64];
        let deadline = Instant::now() + Duration::from_secs(10);
        while !got.ends_with(b"\n") && Instant::now() < deadline {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        drop(stdin);
        let _ = child.kill();
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        let _ = child.wait();
        (got, err)
    })
    .await
    .unwrap();
    assert_eq!(out.0, b"hello over tls\n", "openssl said: {}", out.1);
}

/// Waits until the server has counted `n` peer errors, for at most 5 s.
async fn peer_errors(server: &asynchat_tokio::Server, n: u64) -> Duration {
    let start = Instant::now();
    while server.handle().stats().closed.peer_errors < n {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            server.handle().stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

#[tokio::test]
async fn plaintext_instead_of_a_client_hello_closes_that_connection_only() {
    let cert = cert();
    let reasons: Arc<Mutex<Vec<CloseReason>>> = Arc::default();
    let heard = reasons.clone();
    let tls = server_config_from_pem(cert.cert.as_bytes(), cert.key.as_bytes(), &[]).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    struct Logged(Arc<Mutex<Vec<CloseReason>>>);
    impl Protocol for Logged {
        fn first_terminator(&self) -> Terminator {
            "\n".into()
        }
        fn found_terminator(&mut self, _: &mut Context<'_>, _: Bytes) {}
        fn closed(&mut self, reason: &CloseReason) {
            self.0.lock().unwrap().push(reason.clone());
        }
    }
    let server = asynchat_tokio::serve_tls(listener, Arc::new(tls), Config::default(), move |_| {
        Logged(heard.clone())
    })
    .unwrap();
    let addr = server.addr();
    let answer = tokio::task::spawn_blocking(move || {
        let mut plain = std::net::TcpStream::connect(addr).unwrap();
        plain
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        plain
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        let _ = plain.read_to_end(&mut answer);
        answer
    })
    .await
    .unwrap();
    // An alert record at most, never plaintext.
    assert!(answer.is_empty() || answer[0] == 21, "{answer:?}");
    peer_errors(&server, 1).await;
    assert_eq!(
        *reasons.lock().unwrap(),
        [CloseReason::Error(PeerError::Tls(TlsError::NotTls).into())]
    );
    assert_eq!(server.handle().stats().active, 0);
}

#[tokio::test]
async fn a_client_that_never_finishes_the_handshake_is_closed_at_the_timeout() {
    let cert = cert();
    let timeout = Duration::from_millis(300);
    let server = tls_echo(&cert, Config::default().handshake_timeout(timeout)).await;
    let addr = server.addr();
    let silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let waited = peer_errors(&server, 1).await;
    assert!(
        waited < timeout + Duration::from_millis(500),
        "closed after {waited:?}"
    );
    // Another client is served meanwhile and after.
    let client = Arc::new(client_config(cert.cert.as_bytes(), &[]).unwrap());
    let lines = Arc::default();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let reason = asynchat_tokio::connect_tls(
        addr,
        name,
        client,
        Ping(Arc::clone(&lines)),
        Config::default(),
    )
    .unwrap()
    .await;
    assert_eq!(reason, CloseReason::Done);
    assert_eq!(*lines.lock().unwrap(), [Bytes::from("ping")]);
    drop(silent);
}
