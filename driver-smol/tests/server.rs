//! A `Server`'s lifetime, as its docs state it: dropping it shuts the server down gracefully;
//! `detach` lets it run until a handle stops it.
#![cfg(feature = "smol")]

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use asynchat_core::Config;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::Async;

use asynchat_core::testing::LineEcho as Echo;

async fn echo_once(c: &mut Async<TcpStream>) {
    c.write_all(b"hi\n").await.unwrap();
    let mut reply = [0; 3];
    c.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"hi\n");
}

async fn read_to_end_within(c: &mut Async<TcpStream>, within: Duration) -> Vec<u8> {
    let mut rest = Vec::new();
    let read = async {
        c.read_to_end(&mut rest).await.unwrap();
        true
    };
    let timeout = async {
        smol::Timer::after(within).await;
        false
    };
    assert!(
        smol::future::or(read, timeout).await,
        "the end of the stream in time"
    );
    rest
}

#[test]
fn dropping_a_server_shuts_it_down_gracefully() {
    smol::block_on(async {
        let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
        let server = asynchat_smol::serve(listener, Config::default(), |_| Echo).unwrap();
        let (addr, handle) = (server.addr(), server.handle());
        let mut c = Async::<TcpStream>::connect(addr).await.unwrap();
        echo_once(&mut c).await;
        drop(server);
        assert!(read_to_end_within(&mut c, Duration::from_secs(5))
            .await
            .is_empty());
        // Closed on this side too: the server's lingering read ends, and the close is counted.
        drop(c);
        let start = std::time::Instant::now();
        while handle.stats().closed.total() == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{:?}",
                handle.stats()
            );
            smol::Timer::after(Duration::from_millis(10)).await;
        }
        let stats = handle.stats();
        assert_eq!((stats.accepted, stats.closed.done), (1, 1), "{stats:?}");
        let start = std::time::Instant::now();
        while Async::<TcpStream>::connect(addr).await.is_ok() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the listener closed"
            );
            smol::Timer::after(Duration::from_millis(10)).await;
        }
    });
}

#[test]
fn a_detached_server_runs_until_its_handle_shuts_it_down() {
    smol::block_on(async {
        let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
        let server = asynchat_smol::serve(listener, Config::default(), |_| Echo).unwrap();
        let (addr, handle) = (server.addr(), server.handle());
        server.detach();
        let mut c = Async::<TcpStream>::connect(addr).await.unwrap();
        echo_once(&mut c).await;
        handle.shutdown(Duration::from_secs(1));
        read_to_end_within(&mut c, Duration::from_secs(5)).await;
    });
}

#[test]
fn an_acceptor_prepares_each_stream_and_its_failure_closes_only_that_connection() {
    smol::block_on(async {
        let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
        // Refuses peers whose first byte is `!`; greets the others before the protocol runs.
        let accept = |mut stream: Async<TcpStream>| async move {
            let mut first = [0u8; 1];
            stream.peek(&mut first).await?;
            if first[0] == b'!' {
                return Err(std::io::Error::other("refused by the acceptor"));
            }
            stream.write_all(b"welcome\n").await?;
            Ok(stream)
        };
        let server =
            asynchat_smol::serve_with(listener, Config::default(), |_| Echo, accept).unwrap();
        let addr = server.addr();

        let mut refused = Async::<TcpStream>::connect(addr).await.unwrap();
        refused.write_all(b"!\n").await.unwrap();
        // Dropped by the acceptor with unread input: the end of the stream, or a reset.
        let mut sink = Vec::new();
        let ended = smol::future::or(
            async {
                let _ = refused.read_to_end(&mut sink).await;
                true
            },
            async {
                smol::Timer::after(Duration::from_secs(5)).await;
                false
            },
        )
        .await;
        assert!(ended, "closed by the failed acceptor");

        let mut greeted = Async::<TcpStream>::connect(addr).await.unwrap();
        greeted.write_all(b"hi\n").await.unwrap();
        let mut reply = [0; 11];
        greeted.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"welcome\nhi\n");
        assert_eq!(server.stats().closed.io, 1, "{:?}", server.stats());
    });
}

#[test]
fn serves_on_an_executor_that_is_not_smol() {
    // A thread per task, each blocking on its future: async-io's reactor drives the sockets.
    let spawner = asynchat_smol::Spawner::new(|task| {
        std::thread::spawn(move || futures_lite::future::block_on(task));
    });
    futures_lite::future::block_on(async {
        let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
        let server =
            asynchat_smol::serve_on(&spawner, listener, Config::default(), |_| Echo).unwrap();
        let mut c = Async::<TcpStream>::connect(server.addr()).await.unwrap();
        echo_once(&mut c).await;
        drop(c);
        server.shutdown(Duration::from_secs(1));
        server.wait().await;
    });
}
