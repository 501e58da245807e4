//! `accept` failing with EMFILE must not spin the loop at 100 % CPU (asyncore did): the listener
//! backs off, open connections are still served, and accepting resumes when descriptors free up.
//!
//! Alone in its own test binary (its own process): it lowers the process's descriptor limit.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use asynchat_mio::EventLoop;

use asynchat_core::testing::LineEcho as Echo;

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

fn cpu_time() -> Duration {
    let mut usage = libc_rusage();
    // SAFETY: getrusage writes into the struct we pass, which is valid and properly sized.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn libc_rusage() -> libc::rusage {
    // SAFETY: rusage is plain old data; all-zero bytes are a valid value.
    unsafe { std::mem::zeroed() }
}

fn set_soft_limit(soft: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read or write the struct we pass, which is valid.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        let old = lim.rlim_cur;
        lim.rlim_cur = soft.min(lim.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        old
    }
}

fn echoes(c: &mut TcpStream, within: Duration) -> bool {
    c.set_read_timeout(Some(within)).unwrap();
    if c.write_all(b"ping\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 5];
    c.read_exact(&mut buf).is_ok() && &buf == b"ping\n"
}

#[test]
fn accept_backs_off_when_out_of_descriptors_and_resumes() {
    let (addr_tx, addr_rx) = mpsc::channel::<SocketAddr>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (stop_tx, stop_rx) = mpsc::channel();
    let server = std::thread::spawn(move || {
        let mut ev = EventLoop::new().unwrap();
        let bound = ev.listen("127.0.0.1:0".parse().unwrap(), |_| Echo).unwrap();
        stop_tx.send(ev.handle()).unwrap();
        addr_tx.send(bound.addr).unwrap();
        go_rx.recv().unwrap();
        ev.run().unwrap();
    });
    let addr = addr_rx.recv().unwrap();
    let handle = stop_rx.recv().unwrap();

    // 20 connections wait in the backlog before the loop accepts anything.
    let mut clients: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(addr).unwrap()).collect();
    // Room for 5 accepted sockets, no more.
    let original = set_soft_limit(open_fds() + 5);
    go_tx.send(()).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let before = cpu_time();
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu_time() - before;
    assert!(
        spent < Duration::from_millis(250),
        "the loop used {spent:?} of CPU in 1 s while out of descriptors"
    );

    // The accepted connections are still served.
    assert!(echoes(&mut clients[0], Duration::from_secs(5)));
    // A client in the backlog is not (yet).
    assert!(!echoes(&mut clients[19], Duration::from_millis(200)));

    // Closing served connections frees descriptors: accepting resumes without waiting for the
    // back-off to run out.
    let freed: Vec<TcpStream> = clients.drain(..2).collect();
    drop(freed);
    let start = Instant::now();
    assert!(
        echoes(&mut clients[3], Duration::from_secs(5)),
        "accepting resumed"
    );
    assert!(start.elapsed() < Duration::from_secs(2));

    // With descriptors back, every waiting client is served.
    set_soft_limit(original);
    for (i, c) in clients.iter_mut().enumerate() {
        assert!(
            echoes(c, Duration::from_secs(5)),
            "client {i} served after the limit was raised"
        );
    }
    handle.stop().unwrap();
    server.join().unwrap();
}
