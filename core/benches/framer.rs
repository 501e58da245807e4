//! Framer throughput: 64 MiB of lines of 16, 64 and 1024 bytes (terminator included), fed in
//! 4 KiB and 64 KiB chunks, terminators `\n` and `\r\n`.
//!
//! In each group, side by side:
//! - `framer/frames`: [`Framer::poll_frame`] (whole frames, zero-copy `Bytes`);
//! - `framer/borrowed`: [`Framer::poll_frame_ref`] (whole frames as `&[u8]`, no reference count);
//! - `framer/events`: [`Framer::poll_event`] (Python's collect/found_terminator model);
//! - `baseline/split`: the least work any framer must do — copy each chunk into a `BytesMut`,
//!   `memchr`/`memmem` from where the last search stopped, split each frame off as `Bytes`;
//! - `baseline/count`: a raw `memchr`/`memmem` count over the chunks, no framing (the physical
//!   limit, for context);
//! - `tokio-util/lines` and `tokio-util/any-delimiter`: `LinesCodec` and `AnyDelimiterCodec` on
//!   `\n` (for `\r\n` input `LinesCodec` strips the `\r`; `AnyDelimiterCodec` keeps it).
//!
//! `BENCH_MIB` overrides the data size (default 64). `scripts/bench-framer` runs this with the
//! Python baseline and writes the ratios.

use std::hint::black_box;
use std::time::Duration;

use asynchat_core::{Event, Framer};
use bytes::{Buf, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tokio_util::codec::{AnyDelimiterCodec, Decoder, LinesCodec};

fn lines(total: usize, line: usize, delim: &[u8]) -> Vec<u8> {
    let mut one = vec![b'x'; line - delim.len()];
    for (i, b) in one.iter_mut().enumerate() {
        *b = b'a' + (i % 26) as u8;
    }
    one.extend_from_slice(delim);
    one.iter()
        .copied()
        .cycle()
        .take(total / line * line)
        .collect()
}

// Every loop propagates errors with `?`, as real code does. (A `.unwrap()` inside the loop makes
// LLVM copy the returned `Option<Bytes>` out of its `Result` in a way that stalls store-to-load
// forwarding; see BENCHMARKS.md.)
type Res = Result<usize, Box<dyn std::error::Error>>;

fn framer_frames(data: &[u8], chunk: usize, delim: &'static str) -> Res {
    let mut f = Framer::new(delim)?;
    let mut n = 0;
    for c in data.chunks(chunk) {
        f.feed(c)?;
        while let Some(frame) = f.poll_frame()? {
            black_box(frame);
            n += 1;
        }
    }
    Ok(n)
}

fn framer_borrowed(data: &[u8], chunk: usize, delim: &'static str) -> Res {
    let mut f = Framer::new(delim)?;
    let mut n = 0;
    for c in data.chunks(chunk) {
        f.feed(c)?;
        while let Some(frame) = f.poll_frame_ref()? {
            black_box(frame);
            n += 1;
        }
    }
    Ok(n)
}

fn framer_events(data: &[u8], chunk: usize, delim: &'static str) -> Res {
    let mut f = Framer::new(delim)?;
    let mut n = 0;
    for c in data.chunks(chunk) {
        f.feed(c)?;
        while let Some(ev) = f.poll_event()? {
            n += usize::from(ev == Event::Terminator);
            black_box(ev);
        }
    }
    Ok(n)
}

fn baseline_split(data: &[u8], chunk: usize, delim: &[u8]) -> usize {
    let finder = memchr::memmem::Finder::new(delim);
    let mut buf = BytesMut::new();
    let mut scan = 0;
    let mut n = 0;
    for c in data.chunks(chunk) {
        buf.extend_from_slice(c);
        loop {
            let found = if delim.len() == 1 {
                memchr::memchr(delim[0], &buf[scan..])
            } else {
                finder.find(&buf[scan..])
            };
            match found {
                Some(i) => {
                    let frame = buf.split_to(scan + i).freeze();
                    buf.advance(delim.len());
                    scan = 0;
                    black_box(frame);
                    n += 1;
                }
                None => {
                    scan = (buf.len() + 1).saturating_sub(delim.len());
                    break;
                }
            }
        }
    }
    n
}

fn baseline_count(data: &[u8], chunk: usize, delim: &[u8]) -> usize {
    let finder = memchr::memmem::Finder::new(delim);
    data.chunks(chunk)
        .map(|c| {
            if delim.len() == 1 {
                memchr::memchr_iter(delim[0], c).count()
            } else {
                finder.find_iter(c).count()
            }
        })
        .sum()
}

fn codec<D: Decoder>(data: &[u8], chunk: usize, mut codec: D) -> Res
where
    D::Error: std::error::Error + 'static,
{
    let mut buf = BytesMut::new();
    let mut n = 0;
    for c in data.chunks(chunk) {
        buf.extend_from_slice(c);
        while let Some(frame) = codec.decode(&mut buf)? {
            black_box(frame);
            n += 1;
        }
    }
    Ok(n)
}

fn bench(c: &mut Criterion) {
    let mib: usize = std::env::var("BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let total = mib << 20;
    for delim in ["\n", "\r\n"] {
        for line in [16, 64, 1024] {
            let data = lines(total, line, delim.as_bytes());
            let frames = data.len() / line;
            for chunk in [4 << 10, 64 << 10] {
                let name = format!(
                    "{}/line{line}/chunk{}k",
                    if delim == "\n" { "lf" } else { "crlf" },
                    chunk >> 10
                );
                let mut g = c.benchmark_group(name);
                g.throughput(Throughput::Bytes(data.len() as u64));
                g.sample_size(10);
                g.warm_up_time(Duration::from_millis(500));
                g.measurement_time(Duration::from_secs(2));
                let d = &data[..];
                let id = |s: &str| BenchmarkId::from_parameter(s);
                g.bench_function(id("framer-frames"), |b| {
                    b.iter(|| assert_eq!(framer_frames(d, chunk, delim).ok(), Some(frames)));
                });
                g.bench_function(id("framer-borrowed"), |b| {
                    b.iter(|| assert_eq!(framer_borrowed(d, chunk, delim).ok(), Some(frames)));
                });
                g.bench_function(id("framer-events"), |b| {
                    b.iter(|| assert_eq!(framer_events(d, chunk, delim).ok(), Some(frames)));
                });
                g.bench_function(id("baseline-split"), |b| {
                    b.iter(|| assert_eq!(baseline_split(d, chunk, delim.as_bytes()), frames));
                });
                g.bench_function(id("baseline-count"), |b| {
                    b.iter(|| black_box(baseline_count(d, chunk, delim.as_bytes())));
                });
                g.bench_function(id("tokio-lines"), |b| {
                    b.iter(|| assert_eq!(codec(d, chunk, LinesCodec::new()).ok(), Some(frames)));
                });
                g.bench_function(id("tokio-any-delimiter"), |b| {
                    b.iter(|| {
                        let codec_ = AnyDelimiterCodec::new(b"\n".to_vec(), Vec::new());
                        assert_eq!(codec(d, chunk, codec_).ok(), Some(frames));
                    });
                });
                g.finish();
            }
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
