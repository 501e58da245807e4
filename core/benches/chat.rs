//! The user-space work of one readiness event of a line-echo server, without the system calls:
//! what the drivers pay per line on top of the kernel.
//!
//! An event is a read of 16 lines of 64 bytes (the `echo_bench` load), their echo, and the
//! vectored write of the replies, then the read that finds nothing more:
//! - `chat/copy-echo`: a [`Chat`] whose protocol copies each lent frame and its newline into
//!   its output with one `push_slices`;
//! - `chat/push-echo`: a [`Chat`] whose protocol pushes each frame, then its terminator (the
//!   echo a newcomer writes; both are copied into the output buffer);
//! - `baseline/raw`: what the hand-written mio echo server does in user space — append the read
//!   to a buffer, `memrchr` for the last newline, copy the complete lines out, keep the rest.
//!   (Its reads land in a 64 KiB buffer of the loop first: one more copy than ours, not counted.)
//!
//! Throughput is in lines: compare the `chat/*` figures with `baseline/raw` of the same run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use asynchat_core::Chat;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[path = "common/echo_event.rs"]
mod echo_event;
use echo_event::{batch, chat_event, raw_event, CopyEcho, PushEcho, LINES};

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

    let mut chat = Chat::new(PushEcho).expect("valid terminator");
    chat.handle_connected(now);
    group.bench_function("chat/push-echo", |b| {
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
