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
        let stream = TcpStream::connect(served.addr).expect("connect");
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
