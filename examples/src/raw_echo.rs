//! The baseline of the driver benchmark: a hand-written minimal mio line-echo server, no
//! framework — read until `WouldBlock`, `memchr` for the last newline, write back every complete
//! line, keep the rest.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

const LISTENER: Token = Token(usize::MAX);

struct Conn {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    writable: bool,
}

/// Serves line echo on `listener` forever (until an I/O error of the poll itself).
pub fn serve(mut listener: TcpListener) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<Conn> = Slab::new();
    let mut buf = vec![0u8; 64 * 1024];
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    loop {
        poll.poll(&mut events, None)?;
        for event in &events {
            if event.token() == LISTENER {
                while let Ok((mut stream, _)) = listener.accept() {
                    let _ = stream.set_nodelay(true);
                    let entry = conns.vacant_entry();
                    poll.registry().register(
                        &mut stream,
                        Token(entry.key()),
                        Interest::READABLE,
                    )?;
                    entry.insert(Conn {
                        stream,
                        input: Vec::new(),
                        output: Vec::new(),
                        writable: false,
                    });
                }
                continue;
            }
            let key = event.token().0;
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            let mut closed = false;
            loop {
                match conn.stream.read(&mut buf) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => {
                        conn.input.extend_from_slice(&buf[..n]);
                        if let Some(i) = memchr::memrchr(b'\n', &conn.input) {
                            conn.output.extend_from_slice(&conn.input[..=i]);
                            conn.input.drain(..=i);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
            while !conn.output.is_empty() && !closed {
                match conn.stream.write(&conn.output) {
                    Ok(n) => {
                        conn.output.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => closed = true,
                }
            }
            if closed {
                let mut conn = conns.remove(key);
                let _ = poll.registry().deregister(&mut conn.stream);
                continue;
            }
            let want = !conn.output.is_empty();
            if want != conn.writable {
                conn.writable = want;
                let interest = if want {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                poll.registry()
                    .reregister(&mut conn.stream, Token(key), interest)?;
            }
            if conn.output.capacity() > 0 && conn.output.is_empty() {
                conn.output = Vec::new();
            }
            if conn.input.is_empty() && conn.input.capacity() > 0 {
                conn.input = Vec::new();
            }
        }
    }
}

/// Binds `addr` for [`serve`].
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
}
