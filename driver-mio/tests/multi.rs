//! N loops on N threads sharing one port with SO_REUSEPORT.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use asynchat_core::Config;
use asynchat_mio::MultiLoop;

use asynchat_core::testing::LineEcho as Echo;

#[test]
fn two_loops_share_a_port_and_both_serve() {
    let threads: Arc<Mutex<HashSet<std::thread::ThreadId>>> = Arc::default();
    let seen = threads.clone();
    let server = MultiLoop::start(
        2,
        "127.0.0.1:0".parse().unwrap(),
        &Config::default(),
        move |_| {
            seen.lock().unwrap().insert(std::thread::current().id());
            Echo
        },
    )
    .unwrap();
    let mut clients: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(server.addr()).unwrap())
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(format!("{i}\n").as_bytes()).unwrap();
        let mut buf = vec![0; format!("{i}\n").len()];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(buf, format!("{i}\n").as_bytes());
    }
    // 40 connections spread by the kernel's hash: both loops got some (odds of not: 2^-39).
    assert_eq!(threads.lock().unwrap().len(), 2);
    drop(clients);
    server.shutdown().unwrap();
    server.join().unwrap();
}
