//! The peer side: plain blocking std sockets with timeouts, so no test can hang.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long any single socket operation of a test may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// A connected client with timeouts and no Nagle delay.
#[must_use]
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to the server");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads exactly `n` bytes.
#[must_use]
pub fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).expect("read the expected bytes");
    buf
}

/// Reads until the peer closes; `Err` if the connection was reset or timed out.
pub fn read_to_eof(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

/// Whether the server closed the connection (EOF or reset) within `within`.
#[must_use]
pub fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
        if start.elapsed() > within {
            return false;
        }
    }
}

/// Writes `data` one byte per write, pausing so that the bytes really travel separately.
pub fn write_bytewise(s: &mut TcpStream, data: &[u8]) {
    for b in data {
        s.write_all(std::slice::from_ref(b)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// FNV-1a, to compare large payloads.
#[must_use]
pub fn fnv1a(data: impl IntoIterator<Item = u8>) -> u64 {
    data.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
