//! asyncore's `file_dispatcher`: a `Chat` over a pipe pair.

use std::io::{Read, Write};
use std::time::Duration;

use asynchat_core::{Context, Frame, Protocol, Terminator};
use asynchat_mio::EventLoop;
use mio::unix::pipe;

struct Upper;

impl Protocol for Upper {
    fn first_terminator(&self) -> Terminator {
        "\n".into()
    }
    fn found_terminator(&mut self, ctx: &mut Context<'_>, line: Frame<'_>) {
        ctx.push(line.to_ascii_uppercase());
        ctx.push("\n");
    }
}

#[test]
fn a_chat_over_a_pipe_pair_echoes_and_ends_with_eof() {
    let (mut to_chat, chat_in) = pipe::new().unwrap();
    let (chat_out, mut from_chat) = pipe::new().unwrap();
    to_chat.set_nonblocking(false).unwrap();
    from_chat.set_nonblocking(false).unwrap();
    let server = std::thread::spawn(move || {
        let mut ev = EventLoop::new().unwrap();
        ev.attach_pipe(chat_in, chat_out, Upper).unwrap();
        // Returns once the chat has finished: nothing is left in the loop.
        ev.run().unwrap();
    });
    // A large input, so both pipes fill up and the loop must wait for writability.
    let lines: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    let want = lines.to_ascii_uppercase();
    let writer = std::thread::spawn(move || {
        to_chat.write_all(lines.as_bytes()).unwrap();
        drop(to_chat); // EOF: the chat flushes, then closes its output
    });
    let mut got = Vec::new();
    from_chat.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), want.len());
    assert!(got == want.as_bytes());
    writer.join().unwrap();
    let start = std::time::Instant::now();
    server.join().unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
}
