//! With the `tracing` feature, what a server does and suffers is logged: accepts, refusals,
//! bad input, closes with their reasons, the wind-down. A subscriber that captures the
//! formatted events checks them, on an async driver and on mio.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use asynchat_core::{Bytes, Config, Context, Frame, Protocol, Terminator};
use tracing_subscriber::fmt::MakeWriter;

/// Everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Self;
    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

fn subscriber(captured: &Captured) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_max_level(tracing::Level::DEBUG)
        .finish()
}

use asynchat_core::testing::LineEcho as Echo;

struct Invalid;

impl Protocol for Invalid {
    fn first_terminator(&self) -> Terminator {
        Terminator::Delimiter(Bytes::new())
    }
    fn found_terminator(&mut self, _: &mut Context<'_>, _: Frame<'_>) {}
}

/// Sends `line` on a fresh connection to `addr` and reads until the server closes it.
fn visit(addr: std::net::SocketAddr, line: &[u8]) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(line).unwrap();
    let mut sink = Vec::new();
    let _ = c.read_to_end(&mut sink);
}

fn assert_logged(text: &str, wanted: &[&str]) {
    for want in wanted {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
}

#[test]
fn an_async_server_logs_accepts_refusals_bad_input_and_closes() {
    let captured = Captured::default();
    tracing::subscriber::with_default(subscriber(&captured), || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let config = Config::default().max_frame(8);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let echo = asynchat_tokio::serve(listener, config.clone(), |_| Echo).unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let refusing = asynchat_tokio::serve(listener, config, |_| Invalid).unwrap();
            let (a, b) = (echo.addr(), refusing.addr());
            tokio::task::spawn_blocking(move || {
                visit(a, b"far too long for the limit\n");
                visit(b, b"x\n");
            })
            .await
            .unwrap();
            echo.shutdown(Duration::from_secs(1));
            refusing.shutdown(Duration::from_secs(1));
            echo.wait().await;
            refusing.wait().await;
        });
    });
    assert_logged(
        &captured.text(),
        &[
            "accepted",
            "conn{id=#0 peer=127.0.0.1:",
            "bad input",
            "frame longer than the limit of 8 bytes",
            "closed",
            "connection refused: the factory's protocol cannot start",
            "stopped accepting",
        ],
    );
}

#[test]
fn the_mio_loop_logs_accepts_refusals_and_closes() {
    let captured = Captured::default();
    tracing::subscriber::with_default(subscriber(&captured), || {
        let mut event_loop =
            asynchat_mio::EventLoop::with_config(Config::default().max_frame(8)).unwrap();
        let echo = event_loop
            .listen("127.0.0.1:0".parse().unwrap(), |_| Echo)
            .unwrap();
        let refusing = event_loop
            .listen("127.0.0.1:0".parse().unwrap(), |_| Invalid)
            .unwrap();
        let (a, b) = (echo.addr, refusing.addr);
        let clients = std::thread::spawn(move || {
            visit(a, b"far too long for the limit\n");
            visit(b, b"x\n");
        });
        let start = Instant::now();
        while !clients.is_finished() {
            assert!(start.elapsed() < Duration::from_secs(10), "clients done");
            event_loop
                .run_once(Some(Duration::from_millis(10)))
                .unwrap();
        }
        clients.join().unwrap();
        for _ in 0..20 {
            event_loop.run_once(Some(Duration::from_millis(5))).unwrap();
        }
    });
    assert_logged(
        &captured.text(),
        &[
            "accepted",
            "bad input",
            "closed",
            "connection refused: the factory's protocol cannot start",
        ],
    );
}
