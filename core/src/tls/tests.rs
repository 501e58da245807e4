//! The TLS layer over in-memory pipes: no socket, no runtime, every step polled by hand.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustls::pki_types::ServerName;

use super::{client_config, server_config_from_pem, TlsStream};
use crate::driver::tests::Frozen;
use crate::driver::{PollStream, PollTimer};
use crate::error::TlsError;

/// One direction of an in-memory connection.
#[derive(Default)]
struct Pipe {
    bytes: VecDeque<u8>,
    closed: bool,
}

/// One end of an in-memory connection: reads what the other end wrote.
struct End {
    read: Arc<Mutex<Pipe>>,
    write: Arc<Mutex<Pipe>>,
}

fn pair() -> (End, End) {
    let (a, b) = (Arc::<Mutex<Pipe>>::default(), Arc::<Mutex<Pipe>>::default());
    (
        End {
            read: a.clone(),
            write: b.clone(),
        },
        End { read: b, write: a },
    )
}

impl PollStream for End {
    fn poll_read_into(
        &mut self,
        _: &mut TaskContext<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        let mut pipe = self.read.lock().unwrap();
        if pipe.bytes.is_empty() {
            return if pipe.closed {
                Poll::Ready(Ok(0))
            } else {
                Poll::Pending
            };
        }
        let n = pipe.bytes.len().min(buf.capacity() - buf.len()).max(1);
        buf.extend(pipe.bytes.drain(..n));
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        &mut self,
        _: &mut TaskContext<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut pipe = self.write.lock().unwrap();
        let before = pipe.bytes.len();
        for b in bufs {
            pipe.bytes.extend(b.iter());
        }
        Poll::Ready(Ok(pipe.bytes.len() - before))
    }

    fn poll_shutdown(&mut self, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        self.write.lock().unwrap().closed = true;
        Poll::Ready(Ok(()))
    }
}

struct Nobody;
impl Wake for Nobody {
    fn wake(self: Arc<Self>) {}
}

fn cx() -> TaskContext<'static> {
    static WAKER: std::sync::OnceLock<Waker> = std::sync::OnceLock::new();
    TaskContext::from_waker(WAKER.get_or_init(|| Waker::from(Arc::new(Nobody))))
}

/// A certificate for `localhost`, as PEM: (certificate, key).
fn certificate() -> (String, String) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    (made.cert.pem(), made.signing_key.serialize_pem())
}

fn streams(alpn_server: &[&[u8]], alpn_client: &[&[u8]]) -> (TlsStream<End>, TlsStream<End>) {
    let (cert, key) = certificate();
    let server = server_config_from_pem(cert.as_bytes(), key.as_bytes(), alpn_server).unwrap();
    let client = client_config(cert.as_bytes(), alpn_client).unwrap();
    let (a, b) = pair();
    let server = TlsStream::server(a, Arc::new(server)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let client = TlsStream::client(b, Arc::new(client), name).unwrap();
    (server, client)
}

/// Polls both handshakes until both are over (or `limit` rounds pass).
fn handshake(server: &mut TlsStream<End>, client: &mut TlsStream<End>) -> io::Result<()> {
    let mut cx = cx();
    let (mut s_done, mut c_done) = (false, false);
    for _ in 0..20 {
        if !c_done {
            if let Poll::Ready(r) = client.poll_handshake(&mut cx) {
                r?;
                c_done = true;
            }
        }
        if !s_done {
            if let Poll::Ready(r) = server.poll_handshake(&mut cx) {
                r?;
                s_done = true;
            }
        }
        if s_done && c_done {
            return Ok(());
        }
    }
    Err(io::Error::other("the handshake did not finish"))
}

fn write_all(stream: &mut TlsStream<End>, data: &[u8]) {
    let mut cx = cx();
    let mut at = 0;
    while at < data.len() {
        match stream.poll_write_vectored(&mut cx, &[IoSlice::new(&data[at..])]) {
            Poll::Ready(Ok(n)) => at += n,
            other => panic!("write: {other:?}"),
        }
    }
    assert!(stream.poll_flush(&mut cx).is_ready());
}

fn read_some(stream: &mut TlsStream<End>) -> Poll<io::Result<Vec<u8>>> {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    stream
        .poll_read_into(&mut cx(), &mut buf)
        .map(|r| r.map(|_| buf.to_vec()))
}

fn tls_error_of(e: &io::Error) -> Option<TlsError> {
    e.get_ref()?.downcast_ref::<TlsError>().cloned()
}

/// What one read gives: the bytes, or the error.
fn read_now(stream: &mut TlsStream<End>) -> io::Result<Vec<u8>> {
    match read_some(stream) {
        Poll::Ready(r) => r,
        Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}

#[test]
fn plaintext_crosses_both_ways_with_alpn_and_sni() {
    let (mut server, mut client) = streams(&[b"h2", b"http/1.1"], &[b"http/1.1"]);
    handshake(&mut server, &mut client).unwrap();
    assert_eq!(server.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(client.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(server.server_name(), Some("localhost"));
    write_all(&mut client, b"PING\r\n");
    assert_eq!(read_now(&mut server).unwrap(), b"PING\r\n");
    write_all(&mut server, b"+PONG\r\n");
    assert_eq!(read_now(&mut client).unwrap(), b"+PONG\r\n");
    // Nothing more: the read waits, rather than ending.
    assert_eq!(
        read_now(&mut server).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
}

#[test]
fn a_megabyte_crosses_in_records_and_close_notify_ends_the_stream() {
    let (mut server, mut client) = streams(&[], &[]);
    handshake(&mut server, &mut client).unwrap();
    let body: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    write_all(&mut server, &body);
    let mut got = Vec::new();
    while got.len() < body.len() {
        got.extend(read_now(&mut client).unwrap());
    }
    assert_eq!(got, body);
    assert!(server.poll_shutdown(&mut cx()).is_ready());
    assert_eq!(
        read_now(&mut client).unwrap(),
        b"",
        "close_notify, then the end"
    );
}

#[test]
fn plaintext_instead_of_a_client_hello_is_not_tls() {
    let (cert, key) = certificate();
    let config = server_config_from_pem(cert.as_bytes(), key.as_bytes(), &[]).unwrap();
    let (a, mut peer) = pair();
    let mut server = TlsStream::server(a, Arc::new(config)).unwrap();
    let mut cx = cx();
    let _ = peer.poll_write_vectored(&mut cx, &[IoSlice::new(b"GET / HTTP/1.1\r\n\r\n")]);
    let Poll::Ready(Err(e)) = server.poll_handshake(&mut cx) else {
        panic!("garbage was taken for a handshake");
    };
    assert_eq!(tls_error_of(&e), Some(TlsError::NotTls), "{e}");
    // The server answered with an alert, not with plaintext.
    let mut buf = BytesMut::with_capacity(64);
    if let Poll::Ready(Ok(n)) = peer.poll_read_into(&mut cx, &mut buf) {
        assert!(n > 0 && buf[0] == 21, "a TLS alert record: {:?}", &buf[..]);
    }
}

#[test]
fn a_handshake_cut_short_is_truncated() {
    let (mut server, mut client) = streams(&[], &[]);
    let mut cx = cx();
    // The ClientHello goes out; then the client's side ends.
    assert!(client.poll_handshake(&mut cx).is_pending());
    let _ = client.get_mut().poll_shutdown(&mut cx);
    let Poll::Ready(Err(e)) = server.poll_handshake(&mut cx) else {
        panic!("the server waits for a handshake that cannot come");
    };
    assert_eq!(tls_error_of(&e), Some(TlsError::TruncatedHandshake), "{e}");
}

#[test]
fn a_client_refuses_a_certificate_it_does_not_trust() {
    let (cert, key) = certificate();
    let (other, _) = certificate();
    let server = server_config_from_pem(cert.as_bytes(), key.as_bytes(), &[]).unwrap();
    let client = client_config(other.as_bytes(), &[]).unwrap();
    let (a, b) = pair();
    let mut server = TlsStream::server(a, Arc::new(server)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = TlsStream::client(b, Arc::new(client), name).unwrap();
    let e = handshake(&mut server, &mut client).unwrap_err();
    assert!(
        matches!(
            tls_error_of(&e),
            Some(TlsError::BadCertificate(_) | TlsError::Alert(_))
        ),
        "{e}"
    );
}

/// A clock that has passed every deadline.
struct Late;
impl PollTimer for Late {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn poll_until(&mut self, _: &mut TaskContext<'_>, _: Instant) -> Poll<()> {
        Poll::Ready(())
    }
}

#[test]
fn a_peer_that_never_finishes_the_handshake_times_out() {
    let (cert, key) = certificate();
    let config = server_config_from_pem(cert.as_bytes(), key.as_bytes(), &[]).unwrap();
    let (a, _silent) = pair();
    let mut accepting = Box::pin(super::accept(
        a,
        Arc::new(config),
        Late,
        Duration::from_secs(10),
    ));
    let Poll::Ready(Err(e)) = accepting.as_mut().poll(&mut cx()) else {
        panic!("no timeout");
    };
    assert_eq!(tls_error_of(&e), Some(TlsError::HandshakeTimedOut), "{e}");
}

#[test]
fn a_chat_closes_on_a_tls_failure_with_the_peers_typed_reason() {
    use crate::{CloseReason, PeerError};
    struct Quiet;
    impl crate::Protocol for Quiet {
        fn first_terminator(&self) -> crate::Terminator {
            "\n".into()
        }
        fn found_terminator(&mut self, _: &mut crate::Context<'_>, _: crate::Frame<'_>) {}
    }
    let mut chat = crate::Chat::new(Quiet).unwrap();
    chat.handle_error(super::stream_error_for_tests(TlsError::NotTls));
    assert_eq!(
        chat.close_reason(),
        Some(&CloseReason::Error(PeerError::Tls(TlsError::NotTls).into()))
    );
}

/// SMTP's STARTTLS in miniature: logs each command; `STARTTLS` answers and switches.
struct Smtpish(Arc<Mutex<Vec<String>>>);

impl crate::Protocol for Smtpish {
    fn first_terminator(&self) -> crate::Terminator {
        "\r\n".into()
    }
    fn found_terminator(&mut self, ctx: &mut crate::Context<'_>, line: crate::Frame<'_>) {
        let line = String::from_utf8_lossy(&line).into_owned();
        match line.as_str() {
            "STARTTLS" => {
                ctx.push("220 go ahead\r\n");
                ctx.start_tls();
                // Pushed after the request: goes out inside TLS.
                ctx.push("250 inside\r\n");
            }
            _ => ctx.push(format!("250 {line}\r\n")),
        }
        self.0.lock().unwrap().push(line);
    }
    fn tls_started(&mut self, _: &mut crate::Context<'_>) {
        self.0.lock().unwrap().push("tls".into());
    }
}

/// Reads from a raw pipe end whatever is there.
fn drain_raw(end: &mut End) -> Vec<u8> {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    match end.poll_read_into(&mut cx(), &mut buf) {
        Poll::Ready(Ok(_)) => buf.to_vec(),
        _ => Vec::new(),
    }
}

#[test]
fn starttls_discards_pipelined_plaintext_and_switches_after_the_reply() {
    let (cert, key) = certificate();
    let server_tls = server_config_from_pem(cert.as_bytes(), key.as_bytes(), &[]).unwrap();
    let client_tls = client_config(cert.as_bytes(), &[]).unwrap();
    let (a, mut peer) = pair();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut chat = crate::Chat::new(Smtpish(Arc::clone(&log))).unwrap();
    let now = Instant::now();
    chat.handle_connected(now);
    let mut io = super::StartTls::server(a, Arc::new(server_tls));
    let mut timer = Frozen(now);
    let mut open = false;
    let mut run = |chat: &mut crate::Chat<Smtpish>, io: &mut super::StartTls<End>| {
        let _ = crate::driver::poll_chat(
            chat,
            io,
            &mut timer,
            &mut crate::driver::NoCommands,
            &mut open,
            &mut cx(),
        );
    };
    // The injection: a command pipelined in plaintext right behind STARTTLS.
    let mut cx0 = cx();
    let _ = peer.poll_write_vectored(&mut cx0, &[IoSlice::new(b"STARTTLS\r\nRSET\r\n")]);
    run(&mut chat, &mut io);
    assert_eq!(
        drain_raw(&mut peer),
        b"220 go ahead\r\n",
        "only the reply, in plaintext"
    );
    assert!(io.tls().is_some(), "switched once the reply was written");
    assert_eq!(
        io.deadline(),
        Some(now + super::DEFAULT_HANDSHAKE_TIMEOUT),
        "the handshake is timed from the switch"
    );
    assert_eq!(*log.lock().unwrap(), ["STARTTLS", "tls"], "RSET never ran");
    // The client's TLS over the same stream.
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = TlsStream::client(peer, Arc::new(client_tls), name).unwrap();
    for _ in 0..10 {
        let _ = client.poll_handshake(&mut cx0);
        run(&mut chat, &mut io);
    }
    assert!(!client.is_handshaking());
    assert_eq!(
        io.deadline(),
        None,
        "no deadline once the handshake is over"
    );
    write_all(&mut client, b"NOOP\r\n");
    run(&mut chat, &mut io);
    let mut got = Vec::new();
    for _ in 0..10 {
        if let Ok(bytes) = read_now(&mut client) {
            got.extend(bytes);
        }
        run(&mut chat, &mut io);
    }
    assert_eq!(
        String::from_utf8_lossy(&got),
        "250 inside\r\n250 NOOP\r\n",
        "output queued after the request, then the reply, both inside TLS"
    );
    assert_eq!(*log.lock().unwrap(), ["STARTTLS", "tls", "NOOP"]);
}

#[test]
fn starttls_on_a_stream_without_tls_closes_with_unsupported() {
    let (a, mut peer) = pair();
    let log = Arc::default();
    let mut chat = crate::Chat::new(Smtpish(log)).unwrap();
    let now = Instant::now();
    chat.handle_connected(now);
    let mut io = a;
    let _ = peer.poll_write_vectored(&mut cx(), &[IoSlice::new(b"STARTTLS\r\n")]);
    let _ = crate::driver::poll_chat(
        &mut chat,
        &mut io,
        &mut Frozen(now),
        &mut crate::driver::NoCommands,
        &mut false,
        &mut cx(),
    );
    match chat.close_reason() {
        Some(crate::CloseReason::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::Unsupported),
        other => panic!("closed as {other:?}"),
    }
    assert_eq!(drain_raw(&mut peer), b"220 go ahead\r\n");
}

#[test]
fn a_starttls_handshake_never_answered_closes_at_its_deadline() {
    let (cert, key) = certificate();
    let server_tls = server_config_from_pem(cert.as_bytes(), key.as_bytes(), &[]).unwrap();
    let (a, mut peer) = pair();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut chat = crate::Chat::new(Smtpish(Arc::clone(&log))).unwrap();
    let start = Instant::now();
    chat.handle_connected(start);
    let timeout = Duration::from_secs(3);
    let mut io = super::StartTls::server(a, Arc::new(server_tls)).with_handshake_timeout(timeout);
    let _ = peer.poll_write_vectored(&mut cx(), &[IoSlice::new(b"STARTTLS\r\n")]);
    let mut poll_at = |chat: &mut crate::Chat<Smtpish>, at: Instant| {
        let _ = crate::driver::poll_chat(
            chat,
            &mut io,
            &mut Frozen(at),
            &mut crate::driver::NoCommands,
            &mut false,
            &mut cx(),
        );
    };
    poll_at(&mut chat, start);
    assert_eq!(drain_raw(&mut peer), b"220 go ahead\r\n");
    assert_eq!(*log.lock().unwrap(), ["STARTTLS", "tls"]);
    assert_eq!(chat.poll_timeout(), None, "the chat itself has no deadline");
    poll_at(&mut chat, start + timeout - Duration::from_millis(1));
    assert!(!chat.is_closed(), "not before the deadline");
    poll_at(&mut chat, start + timeout);
    assert_eq!(
        chat.close_reason(),
        Some(&crate::CloseReason::Error(
            crate::PeerError::Tls(crate::TlsError::HandshakeTimedOut).into()
        ))
    );
}
