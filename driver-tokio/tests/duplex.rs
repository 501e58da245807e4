//! `run` over `tokio::io::duplex`: a stream with no socket under it, and a buffer so small (64
//! bytes) that every write of the driver is partial.

use std::time::Duration;

use asynchat_core::driver::LINGER;
use asynchat_core::{CloseReason, Config, Context, Frame, Protocol, Terminator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Echoes lines; `bye` answers with `BULK` bytes and closes when they are written.
struct Lines {
    closed: tokio::sync::mpsc::UnboundedSender<CloseReason>,
}

const BULK: usize = 100_000;

fn bulk() -> Vec<u8> {
    (0..BULK).map(|i| (i % 251) as u8).collect()
}

impl Protocol for Lines {
    fn first_terminator(&self) -> Terminator {
        "\r\n".into()
    }

    fn found_terminator(&mut self, ctx: &mut Context<'_>, line: Frame<'_>) {
        if &line[..] == b"bye" {
            ctx.push(bulk());
            ctx.close_when_done();
        } else {
            ctx.push(line);
            ctx.push("\n");
        }
    }

    fn closed(&mut self, reason: &CloseReason) {
        let _ = self.closed.send(reason.clone());
    }
}

// On the multi-thread runtime: `run` owns its config, so the connection it returns is
// `Send + 'static` and spawns as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_over_a_duplex_echoes_and_flushes_everything_before_the_end() {
    let (mut client, server) = tokio::io::duplex(64);
    let (tx, mut closed) = tokio::sync::mpsc::unbounded_channel();
    let connection =
        asynchat_tokio::run(Lines { closed: tx }, server, Config::default()).expect("valid");
    let task = tokio::spawn(connection);
    client.write_all(b"one\r\ntwo\r\nbye\r\n").await.unwrap();

    // The driver shuts its side down once the reply is written: the client reads to the end
    // well before the lingering read would run out and drop the stream anyway.
    let mut got = Vec::new();
    tokio::time::timeout(LINGER / 2, client.read_to_end(&mut got))
        .await
        .expect("the end of the stream, shut down by the driver")
        .unwrap();
    let mut want = b"one\ntwo\n".to_vec();
    want.extend(bulk());
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the reply arrived altered");
    assert_eq!(closed.recv().await, Some(CloseReason::Done));

    // Its lingering read ends when the client goes away.
    drop(client);
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("run returns once the peer is gone")
        .map(|reason| assert_eq!(reason, CloseReason::Done, "and says why it ended"))
        .unwrap();
}
