//! The user-space work of one readiness event of a line-echo server, without the system calls:
//! what the drivers pay per line on top of the kernel.
//!
//! An event is a read of 16 lines of 64 bytes (the `echo_bench` load), their echo, and the
//! vectored write of the replies, then the read that finds nothing more:
//! - `chat/copy-echo`: a [`Chat`] whose protocol copies each lent frame into its output
//!   (`borrowed_frames` + `push_slice`, as `Echo::copy_below` in the examples);
//! - `chat/zero-copy-echo`: a [`Chat`] whose protocol pushes each frame as a `Bytes` and its
//!   terminator (two `IoSlice`s per line);
//! - `baseline/raw`: what the hand-written mio echo server does in user space — append the read
//!   to a buffer, `memrchr` for the last newline, copy the complete lines out, keep the rest.
//!   (Its read goes to a 64 KiB stack of the loop first: one more copy than ours, not counted.)
//!
//! Throughput is in lines: compare the `chat/*` figures with `baseline/raw` of the same run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use asynchat_core::{Bytes, Chat, Context, Protocol, Terminator};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const LINES: usize = 16;
const LINE: usize = 64;

/// Copies each whole frame it is lent, as a server that must copy anyway would.
#[derive(Clone)]
struct CopyEcho;

impl Protocol for CopyEcho {
    fn first_terminator(&self) -> Terminator {
        "\n".into()
    }

    fn borrowed_frames(&self) -> bool {
        true
    }

    fn found_frame(&mut self, ctx: &mut Context<'_>, frame: &[u8]) {
        ctx.push_slice(frame);
        ctx.push_slice(b"\n");
    }

    fn found_terminator(&mut self, ctx: &mut Context<'_>, frame: Bytes) {
        ctx.push_slice(&frame);
        ctx.push_slice(b"\n");
    }
}

/// Pushes each frame as it is, zero-copy, then its terminator.
struct ZeroCopyEcho;

impl Protocol for ZeroCopyEcho {
    fn first_terminator(&self) -> Terminator {
        "\n".into()
    }

    fn found_terminator(&mut self, ctx: &mut Context<'_>, frame: Bytes) {
        ctx.push(frame);
        ctx.push(Bytes::from_static(b"\n"));
    }
}

fn batch() -> Vec<u8> {
    let mut line: Vec<u8> = (0..LINE - 1).map(|i| b'a' + (i % 26) as u8).collect();
    line.push(b'\n');
    line.repeat(LINES)
}

/// One event on a chat: read, deliver, write everything, then the empty read.
fn chat_event<P: Protocol>(chat: &mut Chat<P>, input: &[u8], now: Instant) -> usize {
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
fn raw_event(input: &mut Vec<u8>, output: &mut Vec<u8>, read: &[u8]) -> usize {
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

fn event(c: &mut Criterion) {
    let input = batch();
    let now = Instant::now();
    let mut group = c.benchmark_group("event");
    group.throughput(Throughput::Elements(LINES as u64));
    group.measurement_time(Duration::from_secs(3));

    let mut chat = Chat::new(CopyEcho).expect("valid terminator");
    chat.handle_connected(now);
    group.bench_function("chat/copy-echo", |b| {
        b.iter(|| chat_event(&mut chat, black_box(&input), now))
    });

    let mut chat = Chat::new(ZeroCopyEcho).expect("valid terminator");
    chat.handle_connected(now);
    group.bench_function("chat/zero-copy-echo", |b| {
        b.iter(|| chat_event(&mut chat, black_box(&input), now))
    });

    let (mut pending, mut out) = (Vec::new(), Vec::new());
    group.bench_function("baseline/raw", |b| {
        b.iter(|| raw_event(&mut pending, &mut out, black_box(&input)))
    });
    group.finish();
}

criterion_group!(benches, event);
criterion_main!(benches);
