//! One readiness event of a line-echo server, without the system calls: shared by the
//! criterion bench `chat` (time) and the example `event_instructions` (instruction counts under
//! valgrind, which do not depend on this VM's noise).

use std::hint::black_box;
use std::time::Instant;

use asynchat_core::{Chat, Context, Frame, Protocol, Terminator};

/// Lines per event (the `echo_bench` load keeps 16 in flight per connection).
pub(crate) const LINES: usize = 16;
/// Bytes per line, newline included.
pub(crate) const LINE: usize = 64;

/// Copies each frame and its newline into the output buffer in one call.
#[derive(Clone)]
pub(crate) struct CopyEcho;

impl Protocol for CopyEcho {
    fn first_terminator(&self) -> Terminator {
        "\n".into()
    }

    #[inline]
    fn found_terminator(&mut self, ctx: &mut Context<'_>, frame: Frame<'_>) {
        ctx.push_slices(&[&frame, b"\n"]);
    }
}

/// The echo a newcomer writes: the frame pushed as it came, then its terminator, as
/// `&'static str` (a shared `Bytes` the outbox copies together with the line).
pub(crate) struct PushEcho;

impl Protocol for PushEcho {
    fn first_terminator(&self) -> Terminator {
        "\n".into()
    }

    fn found_terminator(&mut self, ctx: &mut Context<'_>, frame: Frame<'_>) {
        ctx.push(frame);
        ctx.push("\n");
    }
}

/// The bytes one event reads: `LINES` lines of `LINE` bytes.
pub(crate) fn batch() -> Vec<u8> {
    let mut line: Vec<u8> = (0..LINE - 1).map(|i| b'a' + (i % 26) as u8).collect();
    line.push(b'\n');
    line.repeat(LINES)
}

/// One event on a chat: read, deliver, write everything, then the empty read.
pub(crate) fn chat_event<P: Protocol>(chat: &mut Chat<P>, input: &[u8], now: Instant) -> usize {
    chat.handle_read_with(now, |buf| buf.extend_from_slice(input));
    let mut written = 0;
    while let Some(n) =
        chat.transmit_with(|slices| slices.iter().map(|s| black_box(s.len())).sum::<usize>())
    {
        written += n;
        chat.handle_written(n);
    }
    chat.handle_read_with(now, |_| ());
    written
}

/// The hand-written server's user-space work for the same event (`raw_echo.rs`): the read
/// appended to the connection's input, `memrchr`, the complete lines copied to its output,
/// both buffers freed once empty (an idle connection holds neither, as ours).
pub(crate) fn raw_event(input: &mut Vec<u8>, output: &mut Vec<u8>, read: &[u8]) -> usize {
    input.extend_from_slice(read);
    if let Some(i) = memchr::memrchr(b'\n', input) {
        output.extend_from_slice(&input[..=i]);
        input.drain(..=i);
    }
    let n = black_box(output.len());
    output.clear();
    if input.is_empty() {
        *input = Vec::new();
    }
    *output = Vec::new();
    n
}
