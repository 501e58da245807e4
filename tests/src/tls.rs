//! The TLS scenarios, for every [`TlsDriver`]: a rustls client and `openssl s_client` against
//! a TLS echo server, and peers that are not TLS or never finish a handshake, each closed alone
//! with a typed reason.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use asynchat_core::testing::LineEcho;
use asynchat_core::tls::rustls::pki_types::ServerName;
use asynchat_core::tls::{client_config, server_config_from_pem};
use asynchat_core::{
    Bytes, CloseReason, Config, Context, Frame, PeerError, Protocol, Terminator, TlsError,
};

use crate::driver::{Server, TlsDriver};
use crate::peer::{connect, IO_TIMEOUT};

/// A certificate for `localhost` and `127.0.0.1`, as PEM, also written to a file for openssl.
#[derive(Debug)]
pub struct Certificate {
    /// The certificate, PEM.
    pub cert: String,
    /// Its private key, PEM.
    pub key: String,
    /// Where the certificate is written.
    pub path: std::path::PathBuf,
}

impl Certificate {
    /// A fresh self-signed certificate.
    #[must_use]
    pub fn new() -> Self {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let made = rcgen::generate_simple_self_signed(names).expect("a certificate");
        let (cert, key) = (made.cert.pem(), made.signing_key.serialize_pem());
        let path = std::env::temp_dir().join(format!(
            "asynchat-tls-{}-{:x}.pem",
            std::process::id(),
            fnv(cert.as_bytes())
        ));
        std::fs::write(&path, &cert).expect("write the certificate");
        Self { cert, key, path }
    }
}

impl Default for Certificate {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Certificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    crate::peer::fnv1a(bytes.iter().copied())
}

/// A TLS line-echo server with the ALPN protocol `echo`.
fn echo_server<D: TlsDriver>(cert: &Certificate, config: Config) -> Server {
    let tls = server_config_from_pem(cert.cert.as_bytes(), cert.key.as_bytes(), &[b"echo"])
        .expect("server config");
    D::serve_tls(Arc::new(tls), config, |_| LineEcho)
}

/// Sends `ping` once connected, keeps the reply line, closes.
struct Ping(Arc<Mutex<Vec<Bytes>>>);

impl Protocol for Ping {
    fn first_terminator(&self) -> Terminator {
        "\n".into()
    }
    fn connected(&mut self, ctx: &mut Context<'_>) {
        ctx.push("ping\n");
    }
    fn found_terminator(&mut self, ctx: &mut Context<'_>, line: Frame<'_>) {
        self.0.lock().unwrap().push(line.into_bytes());
        ctx.close_when_done();
    }
}

/// Runs [`Ping`] as the driver's TLS client of `addr` (the server `name`, trusted as `tls`
/// says) until it closes: the lines it got back.
fn ping_over_tls<D: TlsDriver>(
    addr: std::net::SocketAddr,
    name: &str,
    tls: Arc<asynchat_core::tls::rustls::ClientConfig>,
) -> Vec<Bytes> {
    let lines: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let name = ServerName::try_from(name).expect("a name").to_owned();
    let (_, thread) = D::run_tls_client(addr, name, tls, Ping(Arc::clone(&lines)));
    thread.join().expect("the client");
    let got = lines.lock().unwrap().clone();
    got
}

/// The driver's own TLS client against its TLS server, by name and by address.
pub fn a_tls_client_and_server_echo<D: TlsDriver>() {
    let cert = Certificate::new();
    let server = echo_server::<D>(&cert, Config::default());
    let tls = Arc::new(client_config(cert.cert.as_bytes(), &[b"echo"]).expect("client config"));
    for name in ["localhost", "127.0.0.1"] {
        let got = ping_over_tls::<D>(server.addr, name, tls.clone());
        assert_eq!(got, [Bytes::from("ping")]);
    }
    drop(server);
}

/// `Duration::MAX` as the handshake timeout means no limit: a server and a client with it
/// still talk (no deadline overflows the clock).
pub fn a_handshake_timeout_of_duration_max_means_no_limit<D: TlsDriver>() {
    let cert = Certificate::new();
    let server = echo_server::<D>(&cert, Config::default().handshake_timeout(Duration::MAX));
    let tls = Arc::new(client_config(cert.cert.as_bytes(), &[b"echo"]).expect("client config"));
    assert_eq!(
        ping_over_tls::<D>(server.addr, "localhost", tls),
        [Bytes::from("ping")]
    );
    drop(server);
}

/// `openssl s_client`, verifying the certificate and asking for ALPN `echo`, gets its line back.
pub fn openssl_s_client_echoes<D: TlsDriver>() {
    let cert = Certificate::new();
    let server = echo_server::<D>(&cert, Config::default());
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-no_ign_eof", "-alpn", "echo"])
        .args(["-servername", "localhost", "-verify_hostname", "localhost"])
        .arg("-verify_return_error")
        .arg("-connect")
        .arg(server.addr.to_string())
        .arg("-CAfile")
        .arg(&cert.path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl (the openssl package)");
    // Kept open until the reply is in: at the end of its input s_client would quit.
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"hello over tls\n").expect("write");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut got = Vec::new();
    let mut buf = [0; 64];
    let deadline = Instant::now() + IO_TIMEOUT;
    while !got.ends_with(b"\n") && Instant::now() < deadline {
        match stdout.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    drop(stdin);
    let _ = child.kill();
    let mut said = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut said);
    let _ = child.wait();
    assert_eq!(got, b"hello over tls\n", "openssl said: {said}");
    drop(server);
}

/// Waits until `server` has counted `n` peer errors, for at most 5 s; how long it took.
fn peer_errors(server: &Server, n: u64) -> Duration {
    closes_counted(server, |closed| closed.peer_errors, n)
}

/// Waits until `server` has counted `n` closes of the kind `what` picks, for at most 5 s; how
/// long it took.
fn closes_counted(
    server: &Server,
    what: fn(&asynchat_core::driver::ClosedStats) -> u64,
    n: u64,
) -> Duration {
    let start = Instant::now();
    while what(&server.handle().stats().closed) < n {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            server.handle().stats()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

/// A line echo that reports how it heard of its end.
struct Logged(Arc<Mutex<Vec<CloseReason>>>);

impl Protocol for Logged {
    fn first_terminator(&self) -> Terminator {
        "\n".into()
    }
    fn found_terminator(&mut self, ctx: &mut Context<'_>, line: Frame<'_>) {
        ctx.push(line);
        ctx.push("\n");
    }
    fn closed(&mut self, reason: &CloseReason) {
        self.0.lock().unwrap().push(reason.clone());
    }
}

/// A TLS echo server of [`Logged`] protocols: the server, and the reasons they heard.
fn logged_server<D: TlsDriver>(
    cert: &Certificate,
    config: Config,
) -> (Server, Arc<Mutex<Vec<CloseReason>>>) {
    let reasons: Arc<Mutex<Vec<CloseReason>>> = Arc::default();
    let heard = reasons.clone();
    let tls = server_config_from_pem(cert.cert.as_bytes(), cert.key.as_bytes(), &[])
        .expect("server config");
    let server = D::serve_tls(Arc::new(tls), config, move |_| Logged(heard.clone()));
    (server, reasons)
}

/// A TLS client is still served by `server`.
fn still_served<D: TlsDriver>(server: &Server, cert: &Certificate) {
    let client = Arc::new(client_config(cert.cert.as_bytes(), &[]).expect("client config"));
    let got = ping_over_tls::<D>(server.addr, "localhost", client);
    assert_eq!(got, [Bytes::from("ping")]);
}

/// A rustls client over a blocking TCP connection.
type RawClient = asynchat_core::tls::rustls::StreamOwned<
    asynchat_core::tls::rustls::ClientConnection,
    std::net::TcpStream,
>;

/// A rustls client of `server` (trusting `cert`, to `localhost`) whose first line has been
/// echoed: the handshake is over.
fn echoed_once(server: &Server, cert: &Certificate) -> RawClient {
    let mut tls = RawClient::new(client_session(cert), connect(server.addr));
    tls.write_all(b"first\n").expect("write");
    let mut echoed = [0; 6];
    tls.read_exact(&mut echoed).expect("the echo");
    assert_eq!(&echoed, b"first\n");
    tls
}

/// A rustls client session to `localhost` trusting `cert`, not connected yet.
fn client_session(cert: &Certificate) -> asynchat_core::tls::rustls::ClientConnection {
    let client = Arc::new(client_config(cert.cert.as_bytes(), &[]).expect("client config"));
    let name = ServerName::try_from("localhost").expect("a name");
    asynchat_core::tls::rustls::ClientConnection::new(client, name).expect("client")
}

/// Plaintext instead of a ClientHello closes that connection only: its protocol hears
/// `PeerError::Tls(NotTls)`, the peer gets an alert at most, never plaintext, and the server
/// goes on serving.
pub fn plaintext_instead_of_a_client_hello_closes_that_connection_only<D: TlsDriver>() {
    let cert = Certificate::new();
    let (server, reasons) = logged_server::<D>(&cert, Config::default());
    let mut plain = connect(server.addr);
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(answer.is_empty() || answer[0] == 21, "{answer:?}");
    peer_errors(&server, 1);
    assert_eq!(
        *reasons.lock().unwrap(),
        [CloseReason::Error(PeerError::Tls(TlsError::NotTls).into())]
    );
    still_served::<D>(&server, &cert);
    drop(server);
}

/// A ClientHello cut short by the peer's end closes that connection only, with
/// `PeerError::Tls(TruncatedHandshake)`.
pub fn a_truncated_handshake_closes_that_connection_only<D: TlsDriver>() {
    let cert = Certificate::new();
    let (server, reasons) = logged_server::<D>(&cert, Config::default());
    let mut hello = Vec::new();
    client_session(&cert)
        .write_tls(&mut hello)
        .expect("a ClientHello");
    let mut tcp = connect(server.addr);
    tcp.write_all(&hello[..hello.len() / 2]).expect("write");
    tcp.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let _ = tcp.read_to_end(&mut Vec::new());
    peer_errors(&server, 1);
    assert_eq!(
        *reasons.lock().unwrap(),
        [CloseReason::Error(
            PeerError::Tls(TlsError::TruncatedHandshake).into()
        )]
    );
    still_served::<D>(&server, &cert);
    drop(server);
}

/// A peer that resets its connection in the middle of a TLS record, after a line was echoed:
/// that connection closes with the reset as its typed reason, the others go on.
pub fn a_reset_mid_record_closes_that_connection_only<D: TlsDriver>() {
    let cert = Certificate::new();
    let (server, reasons) = logged_server::<D>(&cert, Config::default());
    let tls = echoed_once(&server, &cert);
    // An application-data record header announcing 100 bytes, and 10 of them.
    let mut tcp = tls.sock;
    tcp.write_all(&[23, 3, 3, 0, 100]).expect("write");
    tcp.write_all(&[0x55; 10]).expect("write");
    socket2::SockRef::from(&tcp)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
    drop(tcp);
    closes_counted(&server, |closed| closed.io, 1);
    let heard = reasons.lock().unwrap().clone();
    assert!(
        matches!(&heard[..], [CloseReason::Io(e)] if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{heard:?}"
    );
    still_served::<D>(&server, &cert);
    drop(server);
}

/// A client whose last line and `close_notify` arrive in one flight, with no FIN behind them
/// (the client waits for the server's `close_notify`): the line is echoed, and the session
/// ends as the peer's close, not at some timeout.
pub fn a_close_notify_right_behind_the_data_ends_the_session<D: TlsDriver>() {
    let cert = Certificate::new();
    let (server, reasons) = logged_server::<D>(&cert, Config::default());
    let mut tls = echoed_once(&server, &cert);
    // Both records are encrypted before either is written: one flight.
    tls.conn.writer().write_all(b"last\n").expect("write");
    tls.conn.send_close_notify();
    tls.flush().expect("flush");
    let sent = Instant::now();
    let mut rest = Vec::new();
    tls.read_to_end(&mut rest)
        .expect("the server's close_notify");
    assert_eq!(rest, b"last\n");
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "the session ended after {:?}",
        sent.elapsed()
    );
    closes_counted(&server, |closed| closed.peer_closed, 1);
    assert_eq!(*reasons.lock().unwrap(), [CloseReason::PeerClosed]);
    drop(server);
}

/// A client that connects and never sends a ClientHello is closed at the handshake timeout,
/// as a peer error, while another client is served.
pub fn a_client_that_never_finishes_the_handshake_is_closed_at_the_timeout<D: TlsDriver>() {
    let cert = Certificate::new();
    let timeout = Duration::from_millis(300);
    let server = echo_server::<D>(&cert, Config::default().handshake_timeout(timeout));
    let silent = connect(server.addr);
    let waited = peer_errors(&server, 1);
    assert!(
        waited < timeout + Duration::from_millis(500),
        "closed after {waited:?}"
    );
    let client = Arc::new(client_config(cert.cert.as_bytes(), &[]).expect("client config"));
    let got = ping_over_tls::<D>(server.addr, "localhost", client);
    assert_eq!(got, [Bytes::from("ping")]);
    drop(silent);
    drop(server);
}

/// SMTP's STARTTLS in miniature: logs each command; `STARTTLS` answers and switches.
struct Smtpish(Arc<Mutex<Vec<String>>>);

impl Protocol for Smtpish {
    fn first_terminator(&self) -> Terminator {
        "\r\n".into()
    }
    fn connected(&mut self, ctx: &mut Context<'_>) {
        ctx.push("220 ready\r\n");
    }
    fn found_terminator(&mut self, ctx: &mut Context<'_>, line: Frame<'_>) {
        let line = String::from_utf8_lossy(&line).into_owned();
        if line == "STARTTLS" {
            ctx.push("220 go ahead\r\n");
            ctx.start_tls();
        } else {
            ctx.push(format!("250 {line}\r\n"));
        }
        self.0.lock().unwrap().push(line);
    }
    fn tls_started(&mut self, _: &mut Context<'_>) {
        self.0.lock().unwrap().push("tls".into());
    }
}

/// STARTTLS with `RSET` pipelined behind it in the same plaintext write (CVE-2011-0411's
/// injection): the command never runs, inside TLS or out; the session then works inside TLS.
pub fn starttls_ignores_plaintext_pipelined_after_the_command<D: TlsDriver>() {
    let cert = Certificate::new();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let heard = log.clone();
    let tls = server_config_from_pem(cert.cert.as_bytes(), cert.key.as_bytes(), &[])
        .expect("server config");
    let server = D::serve_starttls(Arc::new(tls), Config::default(), move |_| {
        Smtpish(heard.clone())
    });
    let mut tcp = connect(server.addr);
    assert_eq!(crate::peer::read_n(&mut tcp, 11), b"220 ready\r\n");
    tcp.write_all(b"STARTTLS\r\nRSET\r\n").expect("write");
    assert_eq!(crate::peer::read_n(&mut tcp, 14), b"220 go ahead\r\n");
    let client = Arc::new(client_config(cert.cert.as_bytes(), &[]).expect("client config"));
    let name = ServerName::try_from("localhost").expect("a name");
    let session = asynchat_core::tls::rustls::ClientConnection::new(client, name).expect("client");
    let mut tls = asynchat_core::tls::rustls::StreamOwned::new(session, tcp);
    tls.write_all(b"NOOP\r\n").expect("write inside TLS");
    let mut reply = [0; 10];
    tls.read_exact(&mut reply).expect("the reply inside TLS");
    assert_eq!(&reply, b"250 NOOP\r\n");
    assert_eq!(
        *log.lock().unwrap(),
        ["STARTTLS", "tls", "NOOP"],
        "RSET never ran"
    );
    drop(tls);
    drop(server);
}

/// A client that sends STARTTLS and then no ClientHello is closed at the handshake timeout, as
/// a peer error, while another connection is served.
pub fn a_starttls_handshake_never_finished_is_closed_at_the_timeout<D: TlsDriver>() {
    let cert = Certificate::new();
    let timeout = Duration::from_millis(300);
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let heard = log.clone();
    let tls = server_config_from_pem(cert.cert.as_bytes(), cert.key.as_bytes(), &[])
        .expect("server config");
    let config = Config::default().handshake_timeout(timeout);
    let server = D::serve_starttls(Arc::new(tls), config, move |_| Smtpish(heard.clone()));
    let mut silent = connect(server.addr);
    assert_eq!(crate::peer::read_n(&mut silent, 11), b"220 ready\r\n");
    silent.write_all(b"STARTTLS\r\n").expect("write");
    assert_eq!(crate::peer::read_n(&mut silent, 14), b"220 go ahead\r\n");
    let waited = peer_errors(&server, 1);
    assert!(
        waited < timeout + Duration::from_millis(500),
        "closed after {waited:?}"
    );
    assert!(
        crate::peer::closed_within(&mut silent, Duration::from_secs(1)),
        "the connection is closed"
    );
    let mut other = connect(server.addr);
    assert_eq!(crate::peer::read_n(&mut other, 11), b"220 ready\r\n");
    other.write_all(b"NOOP\r\n").expect("write");
    assert_eq!(crate::peer::read_n(&mut other, 10), b"250 NOOP\r\n");
    assert_eq!(*log.lock().unwrap(), ["STARTTLS", "tls", "NOOP"]);
    drop(server);
}

/// The driver's TLS client against `openssl s_server -rev` (which answers each line reversed),
/// the certificate verified against the name it was made for.
pub fn a_tls_client_against_openssl_s_server<D: TlsDriver>() {
    use std::io::BufRead;
    let cert = Certificate::new();
    let key = cert.path.with_extension("key");
    std::fs::write(&key, &cert.key).expect("write the key");
    let port = std::net::TcpListener::bind(crate::LOCALHOST)
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut server = Command::new("openssl")
        .args(["s_server", "-rev", "-naccept", "1"])
        .arg("-accept")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&cert.path)
        .arg("-key")
        .arg(&key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl (the openssl package)");
    let mut out = std::io::BufReader::new(server.stdout.take().expect("stdout"));
    let mut line = String::new();
    while out.read_line(&mut line).expect("s_server's output") > 0 && !line.contains("ACCEPT") {
        line.clear();
    }
    let tls = Arc::new(client_config(cert.cert.as_bytes(), &[]).expect("client config"));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let got = ping_over_tls::<D>(addr, "localhost", tls);
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_file(&key);
    assert_eq!(got, [Bytes::from("gnip")]);
}

/// Instantiates every TLS scenario as a `#[test]` for a [`TlsDriver`].
#[macro_export]
macro_rules! tls_suite {
    ($driver:ty) => {
        $crate::tls_suite!(@tests $driver;
            a_tls_client_and_server_echo,
            a_handshake_timeout_of_duration_max_means_no_limit,
            openssl_s_client_echoes,
            plaintext_instead_of_a_client_hello_closes_that_connection_only,
            a_truncated_handshake_closes_that_connection_only,
            a_reset_mid_record_closes_that_connection_only,
            a_close_notify_right_behind_the_data_ends_the_session,
            a_client_that_never_finishes_the_handshake_is_closed_at_the_timeout,
            starttls_ignores_plaintext_pipelined_after_the_command,
            a_starttls_handshake_never_finished_is_closed_at_the_timeout,
            a_tls_client_against_openssl_s_server,
        );
    };
    (@tests $driver:ty; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::tls::$name::<$driver>();
            }
        )*
    };
}
