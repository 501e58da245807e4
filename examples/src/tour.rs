//! The tour: every example on every driver, in plaintext and over TLS, each checked by a
//! built-in client and then measured.
//!
//! For each example × layer × driver the server is started in this process on an ephemeral
//! port, a client checks a scripted exchange byte for byte, then [`CLIENTS`] connections each
//! keep [`DEPTH`] requests in flight for the measuring time and the completed requests per
//! second are reported. Over TLS the server has a certificate for `localhost` made at start,
//! and the clients verify it. `cargo run --release -p asynchat-examples --bin tour` prints the
//! table.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use asynchat_core::tls::rustls::pki_types::ServerName;
use asynchat_core::tls::rustls::{ClientConfig, ClientConnection, ServerConfig, StreamOwned};

use crate::chat::{self, Member, Room};
use crate::echo::Echo;
use crate::httpd::{self, Httpd};
use crate::resp::{self, Resp, Store};
use crate::run::{self, DriverKind, Options};
use crate::smtpd::{self, Mailbox, Message, Smtp};

/// Connections per measurement.
pub const CLIENTS: usize = 4;

/// Requests each connection keeps in flight.
pub const DEPTH: usize = 16;

/// The examples, in the order of the table.
pub const EXAMPLES: [&str; 5] = ["echo", "chat", "smtpd", "httpd", "resp"];

/// A certificate for `localhost`, as the servers present it and the clients trust it.
#[derive(Debug, Clone)]
pub struct Tls {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl Tls {
    /// A fresh self-signed certificate (rcgen).
    ///
    /// # Errors
    ///
    /// The certificate or a configuration cannot be made.
    pub fn new() -> io::Result<Self> {
        let (cert, key) = crate::cli::self_signed(&["localhost"])?;
        let server =
            asynchat_core::tls::server_config_from_pem(cert.as_bytes(), key.as_bytes(), &[])
                .map_err(io::Error::other)?;
        let client =
            asynchat_core::tls::client_config(cert.as_bytes(), &[]).map_err(io::Error::other)?;
        Ok(Self {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

/// One cell of the table.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The example.
    pub example: &'static str,
    /// Whether it ran over TLS.
    pub tls: bool,
    /// The driver.
    pub driver: DriverKind,
    /// Completed requests per second, or what went wrong.
    pub result: Result<f64, String>,
}

/// Runs every example on every driver, in plaintext and over TLS with `tls`, measuring each
/// for `measure`; `site` is a scratch directory for the HTTP server's files.
#[must_use]
pub fn run(measure: Duration, site: &Path, tls: &Tls) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for example in EXAMPLES {
        for layer in [None, Some(tls)] {
            for driver in DriverKind::ALL {
                let result = cell(example, driver, layer, measure, site).map_err(|e| e.to_string());
                outcomes.push(Outcome {
                    example,
                    tls: layer.is_some(),
                    driver,
                    result,
                });
            }
        }
    }
    outcomes
}

impl Outcome {
    /// The row it belongs to: the example, and how it ran.
    fn row(&self) -> String {
        if self.tls {
            format!("{} tls", self.example)
        } else {
            self.example.to_owned()
        }
    }
}

/// Formats outcomes as a table, one row per example.
#[must_use]
pub fn table(outcomes: &[Outcome]) -> String {
    let mut out = format!("{:<10}", "example");
    for driver in DriverKind::ALL {
        out.push_str(&format!(" {:>18}", driver.name()));
    }
    let mut row = String::new();
    for o in outcomes {
        if o.row() != row {
            row = o.row();
            out.push_str(&format!("\n{row:<10}"));
        }
        let cell = match &o.result {
            Ok(rate) => format!("ok {:>9.0} req/s", rate),
            Err(_) => "FAILED".to_owned(),
        };
        out.push_str(&format!(" {cell:>18}"));
    }
    out.push('\n');
    for o in outcomes {
        if let Err(e) = &o.result {
            out.push_str(&format!("{} on {}: {e}\n", o.row(), o.driver));
        }
    }
    out
}

/// A request and the exact reply it must get, and the exchange that checks the example first.
struct Script {
    /// Sent once, then `check_reply` expected, on a fresh connection.
    check: Vec<u8>,
    check_reply: Vec<u8>,
    /// Sent on each measuring connection before the first request, and its reply.
    opening: Vec<u8>,
    opening_reply: Vec<u8>,
    /// The request measured, and its reply.
    request: Vec<u8>,
    reply: Vec<u8>,
}

/// Answers every message with the same id, so replies are predictable.
struct Discard;

impl Mailbox for Discard {
    fn deliver(&self, _message: Message) -> io::Result<String> {
        Ok("tour".to_owned())
    }
}

fn cell(
    example: &str,
    driver: DriverKind,
    tls: Option<&Tls>,
    measure: Duration,
    site: &Path,
) -> io::Result<f64> {
    let options = |config| Options {
        config,
        tls: tls.map(|tls| tls.server.clone()),
        ..Options::new(driver)
    };
    let (server, script) = match example {
        "echo" => (
            {
                let echo = Echo::new("\r\n");
                run::start(&options(Default::default()), move |_| echo.clone())?
            },
            Script {
                check: b"hello\r\n\r\nworld\r\n".to_vec(),
                check_reply: b"hello\r\n\r\nworld\r\n".to_vec(),
                opening: Vec::new(),
                opening_reply: Vec::new(),
                request: vec![b'x'; 62].into_iter().chain(*b"\r\n").collect(),
                reply: vec![b'x'; 62].into_iter().chain(*b"\r\n").collect(),
            },
        ),
        "chat" => return chat_cell(driver, tls, measure),
        "smtpd" => {
            let mailbox: Arc<dyn Mailbox> = Arc::new(Discard);
            let transaction =
                b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nSubject: t\r\n\r\n..hi\r\n.\r\n";
            let banner = b"220 localhost asynchat-rs smtpd ready\r\n250-localhost\r\n250-SIZE 10485760\r\n250-8BITMIME\r\n250 HELP\r\n";
            let replies = b"250 OK\r\n250 OK\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 OK: queued as tour\r\n";
            (
                run::start(&options(smtpd::config()), move |_| {
                    Smtp::shared(mailbox.clone())
                })?,
                Script {
                    check: [&b"EHLO tour\r\n"[..], transaction, b"QUIT\r\n"].concat(),
                    check_reply: [&banner[..], replies, b"221 Bye\r\n"].concat(),
                    opening: b"EHLO tour\r\n".to_vec(),
                    opening_reply: banner.to_vec(),
                    request: transaction.to_vec(),
                    reply: replies.to_vec(),
                },
            )
        }
        "httpd" => {
            let root = site.join("httpd-root");
            std::fs::create_dir_all(&root)?;
            std::fs::write(root.join("index.html"), "<h1>tour</h1>\n")?;
            let files = httpd::Files::new(&root)?;
            let reply = b"HTTP/1.1 200 OK\r\nServer: asynchat-rs\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 14\r\n\r\n<h1>tour</h1>\n";
            (
                run::start(&options(httpd::config()), move |_| {
                    Httpd::shared(files.clone())
                })?,
                Script {
                    check: b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
                    check_reply: [
                        &b"HTTP/1.1 404 Not Found\r\nServer: asynchat-rs\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 14\r\n\r\n404 Not Found\n"[..],
                        reply,
                    ]
                    .concat(),
                    opening: Vec::new(),
                    opening_reply: Vec::new(),
                    request: b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
                    reply: reply.to_vec(),
                },
            )
        }
        "resp" => {
            let store = Store::new();
            (
                run::start(&options(resp::config()), move |_| Resp::new(store.clone()))?,
                Script {
                    check:
                        b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\nGET key\r\nINCR key\r\n"
                            .to_vec(),
                    check_reply:
                        b"+OK\r\n$5\r\nvalue\r\n-ERR value is not an integer or out of range\r\n"
                            .to_vec(),
                    opening: Vec::new(),
                    opening_reply: Vec::new(),
                    request: b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n".to_vec(),
                    reply: b"$5\r\nvalue\r\n".to_vec(),
                },
            )
        }
        other => return Err(io::Error::other(format!("no example {other}"))),
    };
    let client = Client {
        addr: server.addr(),
        tls: tls.map(|tls| tls.client.clone()),
    };
    let outcome = exchange(&client, &script.check, &script.check_reply)
        .and_then(|()| measure_rate(&client, &script, measure));
    server.shutdown()?;
    outcome
}

/// A connection of the tour's clients: plaintext, or TLS over it.
trait Stream: Read + Write + Send {}

impl<S: Read + Write + Send> Stream for S {}

/// Where the tour's clients connect, and how.
struct Client {
    addr: SocketAddr,
    /// Over TLS, trusting this configuration's certificate for `localhost`.
    tls: Option<Arc<ClientConfig>>,
}

impl Client {
    fn connect(&self) -> io::Result<Box<dyn Stream>> {
        let stream = TcpStream::connect(self.addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_nodelay(true)?;
        let Some(tls) = &self.tls else {
            return Ok(Box::new(stream));
        };
        let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
        let session = ClientConnection::new(tls.clone(), name).map_err(io::Error::other)?;
        Ok(Box::new(StreamOwned::new(session, stream)))
    }
}

/// Sends `request` on a new connection and checks the reply, byte for byte.
fn exchange(client: &Client, request: &[u8], expected: &[u8]) -> io::Result<()> {
    let mut stream = client.connect()?;
    stream.write_all(request)?;
    expect(&mut *stream, expected)
}

/// The field whose value the server's clock decides: its value is not compared, its length is.
const DATE: &[u8] = b"\r\nDate: ";
const DATE_VALUE_LEN: usize = "Thu, 01 Jan 1970 00:00:00 GMT".len();

fn expect(stream: &mut dyn Stream, expected: &[u8]) -> io::Result<()> {
    let mut got = vec![0; expected.len()];
    stream.read_exact(&mut got)?;
    if got == expected {
        return Ok(());
    }
    // Only replies that differ pay for masking the dates (the measuring loop calls this).
    let mut expected = expected.to_vec();
    for at in memchr::memmem::find_iter(&got, DATE) {
        let value = at + DATE.len()..at + DATE.len() + DATE_VALUE_LEN;
        if expected.get(at..at + DATE.len()) == Some(DATE) && value.end <= got.len() {
            expected[value.clone()].copy_from_slice(&got[value]);
        }
    }
    let expected = &expected[..];
    if got == expected {
        Ok(())
    } else {
        // The first difference and a little context is what helps; not kilobytes of replies.
        let at = got.iter().zip(expected).take_while(|(g, e)| g == e).count();
        let from = at.saturating_sub(20);
        let show = |b: &[u8]| String::from_utf8_lossy(&b[from..b.len().min(at + 40)]).into_owned();
        Err(io::Error::other(format!(
            "at byte {at}: expected {:?}, got {:?}",
            show(expected),
            show(&got)
        )))
    }
}

/// [`CLIENTS`] connections each send [`DEPTH`] requests, read the replies, and again, until
/// `measure` has passed. Returns requests per second.
fn measure_rate(client: &Client, script: &Script, measure: Duration) -> io::Result<f64> {
    let batch = script.request.repeat(DEPTH);
    let replies = script.reply.repeat(DEPTH);
    let start = Instant::now();
    let counts = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|_| {
                scope.spawn(|| -> io::Result<u64> {
                    let mut stream = client.connect()?;
                    stream.write_all(&script.opening)?;
                    expect(&mut *stream, &script.opening_reply)?;
                    let mut done = 0;
                    while start.elapsed() < measure {
                        stream.write_all(&batch)?;
                        expect(&mut *stream, &replies)?;
                        done += DEPTH as u64;
                    }
                    Ok(done)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(io::Error::other("client panicked")))
            })
            .collect::<io::Result<Vec<u64>>>()
    })?;
    Ok(counts.iter().sum::<u64>() as f64 / start.elapsed().as_secs_f64())
}

/// The chat room: three members join, then one talks and the two others must hear every line.
fn chat_cell(driver: DriverKind, tls: Option<&Tls>, measure: Duration) -> io::Result<f64> {
    let room = Arc::new(Room::default());
    let options = Options {
        config: chat::config(),
        tls: tls.map(|tls| tls.server.clone()),
        ..Options::new(driver)
    };
    let server = run::start(&options, move |link| Member::join(&room, link.into_conn()))?;
    let client = Client {
        addr: server.addr(),
        tls: tls.map(|tls| tls.client.clone()),
    };
    let outcome = (|| {
        let welcome = b"* welcome: /nick NAME to join, /who to list, /quit to leave\n";
        let mut members: Vec<(&str, Box<dyn Stream>)> = Vec::new();
        for name in ["ada", "bob", "eve"] {
            let mut stream = client.connect()?;
            expect(&mut *stream, welcome)?;
            stream.write_all(format!("/nick {name}\n").as_bytes())?;
            expect(&mut *stream, format!("* you are {name}\n").as_bytes())?;
            for (_, earlier) in &mut members {
                expect(&mut **earlier, format!("* {name} joined\n").as_bytes())?;
            }
            members.push((name, stream));
        }
        let said = b"hello\n".repeat(DEPTH);
        let heard = b"[ada] hello\n".repeat(DEPTH);
        let start = Instant::now();
        let mut lines = 0u64;
        while start.elapsed() < measure {
            members[0].1.write_all(&said)?;
            for (_, other) in &mut members[1..] {
                expect(&mut **other, &heard)?;
            }
            lines += 2 * DEPTH as u64;
        }
        Ok(lines as f64 / start.elapsed().as_secs_f64())
    })();
    server.shutdown()?;
    outcome
}

/// A scratch directory for the tour, removed on drop.
#[derive(Debug)]
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A fresh directory under the system's temporary directory.
    ///
    /// # Errors
    ///
    /// It cannot be created.
    pub fn new() -> io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("asynchat-tour-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_passes_its_check_on_every_driver() {
        let scratch = Scratch::new().unwrap();
        let outcomes = run(Duration::from_millis(50), &scratch.0, &Tls::new().unwrap());
        assert_eq!(outcomes.len(), EXAMPLES.len() * 2 * DriverKind::ALL.len());
        assert_eq!(
            outcomes.iter().filter(|o| o.tls).count(),
            outcomes.len() / 2
        );
        let table = table(&outcomes);
        for o in &outcomes {
            assert!(
                o.result.as_ref().is_ok_and(|rate| *rate > 0.0),
                "{} on {}: {:?}\n{table}",
                o.row(),
                o.driver,
                o.result
            );
        }
    }

    #[test]
    fn a_wrong_reply_is_reported_not_hidden() {
        let server = run::start(&Options::new(DriverKind::Mio), |_| Echo::new("\n")).unwrap();
        let client = Client {
            addr: server.addr(),
            tls: None,
        };
        let err = exchange(&client, b"abc\n", b"abd\n").unwrap_err();
        assert!(err
            .to_string()
            .contains("expected \"abd\\n\", got \"abc\\n\""));
        server.shutdown().unwrap();
    }
}
