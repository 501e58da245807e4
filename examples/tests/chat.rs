//! The chat binary on every driver, with three raw-socket clients.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Served, DRIVERS};

struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(served: &Served) -> Self {
        Self::welcomed(TcpStream::connect(served.addr).expect("connect"))
    }

    /// A client with a 4 KiB receive buffer: the kernel holds little for it when it does not
    /// read, so what it leaves unread piles up in the server.
    fn connect_small(served: &Served) -> Self {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        socket.connect(&served.addr.into()).expect("connect");
        Self::welcomed(socket.into())
    }

    fn welcomed(stream: TcpStream) -> Self {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut client = Self {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        assert!(client.line().starts_with("* welcome"));
        client
    }

    fn send(&mut self, line: &str) {
        self.writer.write_all(line.as_bytes()).expect("send");
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("a line in time");
        line
    }
}

#[test]
fn three_clients_talk_on_every_driver() {
    for driver in DRIVERS {
        let mut served = Served::start(env!("CARGO_BIN_EXE_chat"), driver, &[]);
        let mut ada = Client::connect(&served);
        let mut bob = Client::connect(&served);
        let mut eve = Client::connect(&served);

        ada.send("/nick ada\r\n");
        assert_eq!(ada.line(), "* you are ada\n", "{driver}");
        bob.send("/nick bob\n");
        assert_eq!(bob.line(), "* you are bob\n");
        assert_eq!(ada.line(), "* bob joined\n");
        eve.send("/nick eve\n");
        assert_eq!(eve.line(), "* you are eve\n");
        assert_eq!(ada.line(), "* eve joined\n");
        assert_eq!(bob.line(), "* eve joined\n");

        // Two lines in one write, and a line split across writes.
        bob.send("hello\r\nhow are");
        std::thread::sleep(Duration::from_millis(20));
        bob.send(" you?\n");
        for other in [&mut ada, &mut eve] {
            assert_eq!(other.line(), "[bob] hello\n", "{driver}");
            assert_eq!(other.line(), "[bob] how are you?\n");
        }

        eve.send("/who\n");
        assert_eq!(eve.line(), "* online: ada, bob, eve\n");

        bob.send("/quit\n");
        assert_eq!(bob.line(), "* bye\n");
        assert_eq!(bob.line(), "", "the server closes after /quit");
        assert_eq!(ada.line(), "* bob left\n");
        assert_eq!(eve.line(), "* bob left\n");

        // A client that just disconnects is announced too.
        drop(eve);
        assert_eq!(ada.line(), "* eve left\n", "{driver}");

        assert!(served.interrupt(), "{driver}: exits cleanly on Ctrl-C");
        assert_eq!(
            ada.line(),
            "",
            "{driver}: shutdown closes the open connections"
        );
    }
}

/// Fan-out flow control: 500 members, one of which never reads while another talks. The room
/// evicts the silent reader once its output is above its high water mark, with a typed reason
/// (`Error::OutboxFull`, logged by `-v`); nobody else is dropped, and the server's peak memory
/// grows by less than 16 MiB (measured: +2 MiB on each driver; without flow control it grew by 51-312 MiB).
#[test]
fn a_member_that_never_reads_is_evicted_and_memory_stays_bounded() {
    use std::io::Read;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    const MEMBERS: usize = 500;
    for driver in DRIVERS {
        let log = std::env::temp_dir().join(format!(
            "asynchat-chat-fanout-{driver}-{}.log",
            std::process::id()
        ));
        let file = std::fs::File::create(&log).unwrap();
        let mut served =
            Served::start_with_stderr(env!("CARGO_BIN_EXE_chat"), driver, &["-v"], file.into());
        let base_rss = served.peak_rss();
        let mut members: Vec<Client> = (0..MEMBERS)
            .map(|i| {
                if i == 1 {
                    Client::connect_small(&served)
                } else {
                    Client::connect(&served)
                }
            })
            .collect();
        for (i, m) in members.iter_mut().enumerate() {
            m.send(&format!("/nick m{i}\n"));
            assert_eq!(m.line(), format!("* you are m{i}\n"));
        }
        let silent_port = members[1].writer.local_addr().unwrap().port();
        // Everyone but the silent member (1) and the talker (0, whose own lines do not come
        // back to it) reads all the time, on a few threads.
        let stop = Arc::new(AtomicBool::new(false));
        let streams: Vec<TcpStream> = members
            .iter()
            .enumerate()
            .filter(|(i, _)| *i > 1)
            .map(|(_, m)| {
                let s = m.writer.try_clone().unwrap();
                s.set_nonblocking(true).unwrap();
                s
            })
            .collect();
        let mut readers = Vec::new();
        for share in streams.chunks(MEMBERS / 4 + 1) {
            let mut share: Vec<TcpStream> = share.iter().map(|s| s.try_clone().unwrap()).collect();
            let stop = stop.clone();
            readers.push(std::thread::spawn(move || {
                let mut buf = vec![0; 64 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    for s in &mut share {
                        while let Ok(n) = s.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }));
        }
        let line = format!("{}\n", "x".repeat(3999));
        let evicted = |log: &std::path::Path| {
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("closed: output queue"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        // 0.8 MB/s to each member in lines of 4000 B, a pace the readers keep up with: what
        // costs the server is the number of pushes (one per line per member), not their size.
        let mut sent = 0;
        while evicted(&log).is_empty() && sent < 5_000 {
            for _ in 0..2 {
                members[0].send(&line);
            }
            sent += 2;
            std::thread::sleep(Duration::from_millis(10));
        }
        let peak = served.peak_rss() - base_rss;
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
        let dropped = evicted(&log);
        assert_eq!(
            dropped.len(),
            1,
            "{driver}: exactly the silent member is evicted, after {sent} lines: {dropped:?}"
        );
        assert!(
            dropped[0].contains(&format!(":{silent_port}]")),
            "{driver}: the silent member (port {silent_port}) is the one: {dropped:?}"
        );
        assert!(
            peak < 16 << 20,
            "{driver}: peak RSS grew by {} MiB",
            peak >> 20
        );
        eprintln!(
            "{driver}: evicted after {sent} lines of 4000 B; peak RSS +{} MiB",
            peak >> 20
        );
        drop(members);
        assert!(served.interrupt(), "{driver}: clean shutdown");
        let _ = std::fs::remove_file(&log);
    }
}
