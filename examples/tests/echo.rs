//! The echo binary on every driver: over a socket with a custom terminator and `--verbose`, and
//! over stdin/stdout.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::DRIVERS;

#[test]
fn stdio_echo_on_every_driver() {
    for driver in DRIVERS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_echo"))
            .args(["--stdio", "--driver", driver, "--terminator", r"\r\n"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start echo");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"one\r\ntw").unwrap();
        stdin.write_all(b"o\r\nunterminated").unwrap();
        drop(stdin);
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert!(child.wait().unwrap().success(), "{driver}");
        assert_eq!(out, "one\r\ntwo\r\n", "{driver}");
    }
}

#[test]
fn socket_echo_logs_connection_events_and_stops_on_ctrl_c() {
    for driver in DRIVERS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_echo"))
            .args([
                "--driver",
                driver,
                "--listen",
                "127.0.0.1:0",
                "--terminator",
                "END",
                "-v",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start echo");
        let mut banner = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut banner)
            .unwrap();
        let addr = banner
            .split_whitespace()
            .nth(3)
            .expect("address in the banner");
        assert!(
            banner.starts_with("echo listening on 127.0.0.1:"),
            "{banner}"
        );
        assert!(banner.ends_with(&format!("({driver})\n")), "{banner}");

        let mut client = TcpStream::connect(addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        client.write_all(b"aENDbEN").unwrap();
        client.write_all(b"D").unwrap();
        let mut reply = [0; 8];
        client.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"aENDbEND");
        drop(client);
        std::thread::sleep(Duration::from_millis(200));

        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let status = child.wait().unwrap();
        let mut log = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut log)
            .unwrap();
        assert!(status.success(), "{driver}: {log}");
        let events: Vec<&str> = log
            .lines()
            .filter(|l| l.starts_with("[127.0.0.1:"))
            .collect();
        assert_eq!(events.len(), 3, "{driver}: one line per event: {log}");
        assert!(events[0].ends_with("] connected"), "{log}");
        assert!(events[1].contains("] peer closed its side"), "{log}");
        assert!(events[2].contains("] closed: "), "{log}");
    }
}

/// `openssl s_client` against `echo --tls-cert --tls-key` (a certificate made here, as an
/// operator's would be), on every driver: the line comes back inside TLS.
#[test]
fn openssl_s_client_against_the_tls_echo() {
    common::require("openssl", "apt-get install -y openssl");
    let base = std::env::temp_dir().join(format!("asynchat-echo-tls-{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    let (cert_pem, key_pem) = asynchat_examples::cli::self_signed(&["localhost"]).unwrap();
    let (cert, key) = (base.join("cert.pem"), base.join("key.pem"));
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    for driver in DRIVERS {
        let served = common::Served::start(
            env!("CARGO_BIN_EXE_echo"),
            driver,
            &[
                "--tls-cert",
                cert.to_str().unwrap(),
                "--tls-key",
                key.to_str().unwrap(),
            ],
        );
        let mut child = Command::new("openssl")
            .args(["s_client", "-quiet", "-no_ign_eof", "-verify_return_error"])
            .args(["-servername", "localhost", "-verify_hostname", "localhost"])
            .arg("-connect")
            .arg(served.addr.to_string())
            .arg("-CAfile")
            .arg(&cert)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run openssl");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hello, tls\n").unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        drop(stdin);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(line, "hello, tls\n", "{driver}");
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// A client connection, plaintext or TLS.
trait ReadWrite: Read + Write {}

impl<S: Read + Write> ReadWrite for S {}

/// The threads of process `pid` whose names start with `prefix` (Linux names them from
/// `/proc/PID/task/*/comm`, 15 bytes at most).
fn threads_named(pid: u32, prefix: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the server's threads")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

/// `--threads 2` serves on two threads of each driver's kind (two event loops sharing the port
/// on mio, two runtime workers on tokio, two executor threads on smol), in plaintext and over
/// TLS, and every one of a batch of connections is echoed; `--threads 0` is refused.
#[test]
fn two_threads_on_every_driver() {
    let base = std::env::temp_dir().join(format!("asynchat-echo-threads-{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    for driver in DRIVERS {
        let prefix = match driver {
            "mio" => "asynchat-mio-",
            "tokio" => "asynchat-tokio",
            _ => "asynchat-smol-",
        };
        let cert = base.join(format!("cert-{driver}.pem"));
        for tls in [false, true] {
            let mut args = vec!["--threads", "2"];
            if tls {
                args.extend(["--tls-self-signed", cert.to_str().unwrap()]);
            }
            let served = common::Served::start(env!("CARGO_BIN_EXE_echo"), driver, &args);
            // A runtime may start its threads after the listener is bound: given a second.
            let started = std::time::Instant::now();
            while threads_named(served.pid(), prefix) < 2 && started.elapsed().as_secs() < 1 {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(
                threads_named(served.pid(), prefix),
                2,
                "{driver}, tls {tls}"
            );
            let trust = tls.then(|| {
                let pem = std::fs::read(&cert).expect("the certificate");
                std::sync::Arc::new(asynchat_core::tls::client_config(&pem, &[]).unwrap())
            });
            let mut clients: Vec<Box<dyn ReadWrite>> = (0..16)
                .map(|_| {
                    let tcp = TcpStream::connect(served.addr).expect("connect");
                    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    match &trust {
                        None => Box::new(tcp) as Box<dyn ReadWrite>,
                        Some(trust) => {
                            use asynchat_core::tls::rustls;
                            let name = rustls::pki_types::ServerName::try_from("localhost");
                            let session =
                                rustls::ClientConnection::new(trust.clone(), name.unwrap());
                            Box::new(rustls::StreamOwned::new(session.unwrap(), tcp))
                        }
                    }
                })
                .collect();
            for (i, client) in clients.iter_mut().enumerate() {
                client.write_all(format!("line {i}\n").as_bytes()).unwrap();
            }
            for (i, client) in clients.iter_mut().enumerate() {
                let mut line = String::new();
                BufReader::new(client).read_line(&mut line).unwrap();
                assert_eq!(line, format!("line {i}\n"), "{driver}, tls {tls}");
            }
        }
    }
    let refused = Command::new(env!("CARGO_BIN_EXE_echo"))
        .args(["--threads", "0"])
        .output()
        .expect("run echo");
    assert!(!refused.status.success());
    let _ = std::fs::remove_dir_all(&base);
}
