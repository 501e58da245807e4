//! A `Server`'s lifetime, as its docs state it: dropping it shuts the server down gracefully;
//! `detach` lets it run until a handle stops it.

use std::time::Duration;

use asynchat_core::{Config, Context, Frame, Protocol, Terminator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use asynchat_core::testing::LineEcho as Echo;

async fn echo_once(c: &mut TcpStream) {
    c.write_all(b"hi\n").await.unwrap();
    let mut reply = [0; 3];
    c.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"hi\n");
}

#[tokio::test]
async fn dropping_a_server_shuts_it_down_gracefully() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = asynchat_tokio::serve(listener, Config::default(), |_| Echo).unwrap();
    let (addr, handle) = (server.addr(), server.handle());
    let mut c = TcpStream::connect(addr).await.unwrap();
    echo_once(&mut c).await;
    drop(server);
    // The open connection is flushed and closed: the client reads the end of the stream.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest))
        .await
        .expect("closed by the shutdown")
        .unwrap();
    assert!(rest.is_empty());
    // Closed on this side too: the server's lingering read ends, and the close is counted.
    drop(c);
    tokio::time::timeout(Duration::from_secs(5), async {
        while handle.stats().closed.total() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the close counted");
    let stats = handle.stats();
    assert_eq!((stats.accepted, stats.closed.done), (1, 1), "{stats:?}");
    // And nothing accepts any more.
    tokio::time::timeout(Duration::from_secs(5), async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the listener closed");
}

#[tokio::test]
async fn a_detached_server_runs_until_its_handle_shuts_it_down() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = asynchat_tokio::serve(listener, Config::default(), |_| Echo).unwrap();
    let (addr, handle) = (server.addr(), server.handle());
    server.detach();
    let mut c = TcpStream::connect(addr).await.unwrap();
    echo_once(&mut c).await;
    handle.shutdown(Duration::from_secs(1));
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest))
        .await
        .expect("closed by the handle's shutdown")
        .unwrap();
}

#[tokio::test]
async fn an_acceptor_prepares_each_stream_and_its_failure_closes_only_that_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    // Refuses peers whose first byte is `!`; greets the others before the protocol runs.
    let accept = |mut stream: TcpStream| async move {
        let mut first = [0u8; 1];
        stream.peek(&mut first).await?;
        if first[0] == b'!' {
            return Err(std::io::Error::other("refused by the acceptor"));
        }
        stream.write_all(b"welcome\n").await?;
        Ok(stream)
    };
    let server = asynchat_tokio::serve_with(listener, Config::default(), |_| Echo, accept).unwrap();
    let addr = server.addr();

    let mut refused = TcpStream::connect(addr).await.unwrap();
    refused.write_all(b"!\n").await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), refused.read_to_end(&mut rest))
        .await
        .expect("closed by the failed acceptor")
        .ok();

    let mut greeted = TcpStream::connect(addr).await.unwrap();
    greeted.write_all(b"hi\n").await.unwrap();
    let mut reply = [0; 11];
    greeted.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"welcome\nhi\n");
    assert_eq!(server.stats().closed.io, 1, "{:?}", server.stats());
}

/// Panics on its first line: a bug in a protocol.
struct Panics;

impl Protocol for Panics {
    fn first_terminator(&self) -> Terminator {
        "\n".into()
    }
    fn found_terminator(&mut self, _: &mut Context<'_>, _: Frame<'_>) {
        panic!("a protocol bug");
    }
}

#[tokio::test]
async fn a_connection_whose_task_panics_is_still_counted_and_does_not_hold_the_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = asynchat_tokio::serve(listener, Config::default(), |_| Panics).unwrap();
    let handle = server.handle();
    let mut c = TcpStream::connect(server.addr()).await.unwrap();
    c.write_all(b"boom\n").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), async {
        while handle.stats().closed.total() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the panicked connection is counted as closed");
    assert_eq!(handle.stats().active, 0);
    server.shutdown(Duration::from_secs(1));
    tokio::time::timeout(Duration::from_secs(5), server.wait())
        .await
        .expect("wait returns: nothing left registered");
}
