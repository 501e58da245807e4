//! The outbox under random operations, against a model of what is pending: the bytes written
//! out are the bytes pushed in, in push order, nothing more; `queued_bytes` is exact (producers'
//! bytes count once pulled); the limit and `close_when_done` give typed errors and queue nothing;
//! the limit and the writable flag count the queue's cost (`Outbox::cost`: bytes plus
//! `ITEM_OVERHEAD` per buffer or producer plus the room of sealed copy buffers), which is never
//! below the bytes queued and is zero once the queue is empty; the writable flag follows the
//! water marks with hysteresis; `is_done` only once all is out.
#![no_main]

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arbitrary::Arbitrary;
use asynchat_core::outbox::ITEM_OVERHEAD;
use asynchat_core::producer::Producer;
use asynchat_core::{Bytes, Error, Misuse, Outbox};
use libfuzzer_sys::fuzz_target;

/// Bytes of a given size: fuzz-chosen for small pushes, a run for large ones, up to twice the
/// 4 KiB copy buffer (where the outbox changes strategy); producers of many runs reach its
/// 64 KiB pulls.
#[derive(Arbitrary, Debug, Clone)]
enum Data {
    Literal(Vec<u8>),
    Run { len: u16, fill: u8 },
}

impl Data {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Literal(v) => v.clone(),
            Self::Run { len, fill } => {
                let mut run = vec![*fill; usize::from(*len) % 9000];
                // Distinct bytes every 251 (a prime), so a misplaced slice of a run shows.
                for (i, b) in run.iter_mut().enumerate().step_by(251) {
                    *b = b.wrapping_add(i as u8 | 1);
                }
                run
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Push(Data),
    PushSlice(Data),
    PushSlices(Vec<Data>),
    /// A producer of these chunks (empty ones included, which it must skip).
    Producer(Vec<Data>),
    /// One write of at most `max` bytes from at most `slices` slices.
    Write {
        max: u16,
        slices: u8,
    },
    Marks {
        low: u16,
        high: u16,
    },
    Limit(u32),
    CloseWhenDone,
    Discard,
}

#[derive(Arbitrary, Debug)]
struct Input {
    coalesce: u8,
    limit: Option<u32>,
    ops: Vec<Op>,
}

/// A producer that reports how many bytes were pulled out of it.
struct Counted {
    chunks: VecDeque<Bytes>,
    pulled: Arc<AtomicUsize>,
}

impl Producer for Counted {
    fn more(&mut self) -> Option<Bytes> {
        let chunk = self.chunks.pop_front()?;
        self.pulled.fetch_add(chunk.len(), Ordering::Relaxed);
        Some(chunk)
    }
}

/// What should be pending.
struct Model {
    /// Bytes pushed and not yet written, producers' included.
    pending: VecDeque<u8>,
    /// Producers queued and not discarded: their total size and how much was pulled.
    producers: Vec<(usize, Arc<AtomicUsize>)>,
    closing: bool,
    limit: usize,
    low: usize,
    high: usize,
    writable: bool,
}

impl Model {
    /// Producer bytes not yet pulled: pending, but not counted by `queued_bytes`.
    fn unpulled(&self) -> usize {
        self.producers
            .iter()
            .map(|(len, pulled)| len - pulled.load(Ordering::Relaxed))
            .sum()
    }

    fn queued(&self) -> usize {
        self.pending.len() - self.unpulled()
    }

    fn check(&mut self, out: &Outbox) {
        assert_eq!(out.queued_bytes(), self.queued(), "queued_bytes");
        let cost = out.cost();
        assert!(
            cost >= out.queued_bytes(),
            "cost {cost} below the bytes queued"
        );
        if cost > self.high {
            self.writable = false;
        } else if cost <= self.low {
            self.writable = true;
        }
        assert_eq!(
            out.is_writable(),
            self.writable,
            "writable with cost {cost}, marks {}/{}",
            self.low,
            self.high
        );
        assert_eq!(out.is_closing(), self.closing);
        if out.is_done() {
            assert!(self.pending.is_empty(), "done with bytes pending");
        }
        if self.pending.is_empty() && self.producers.is_empty() {
            assert!(out.is_empty());
            assert_eq!(cost, 0, "an empty queue costs nothing");
        }
    }

    /// What a push of `len` bytes, costing `extra` beyond them (`ITEM_OVERHEAD` for a buffer
    /// or producer queued as it is, nothing for a copy), must return from `out`.
    fn admit(&self, out: &Outbox, len: usize, extra: usize) -> Result<(), Error> {
        if self.closing {
            Err(Misuse::PushAfterClose.into())
        } else if len == 0 && extra == 0 {
            // Nothing to queue: no limit to pass.
            Ok(())
        } else if out.cost().saturating_add(len).saturating_add(extra) > self.limit {
            Err(Error::OutboxFull { limit: self.limit })
        } else {
            Ok(())
        }
    }
}

/// One write; the bytes it took are checked against the front of what is pending.
fn write(out: &mut Outbox, model: &mut Model, max: usize, slices: usize) -> usize {
    let mut dst = vec![IoSlice::new(&[]); slices];
    let n = out.poll_slices(&mut dst);
    assert!(n <= slices);
    if slices == 0 {
        assert_eq!(n, 0);
    }
    let mut taken = Vec::new();
    for s in &dst[..n] {
        taken.extend_from_slice(&s[..s.len().min(max - taken.len())]);
    }
    // Pulling producers may have queued more: check the count between the poll and the advance.
    model.check(out);
    assert!(
        taken.len() <= model.pending.len(),
        "offered more than was pushed"
    );
    // Compared slice by slice (memcmp): inputs push up to 256 KiB.
    let (front, back) = model.pending.as_slices();
    let split = front.len().min(taken.len());
    assert!(
        front[..split] == taken[..split],
        "a write's bytes differ from what was pushed"
    );
    assert!(
        back[..taken.len() - split] == taken[split..],
        "a write's bytes differ from what was pushed"
    );
    model.pending.drain(..taken.len());
    out.advance(taken.len());
    taken.len()
}

fuzz_target!(|input: Input| {
    if input.ops.len() > 256 {
        return;
    }
    let limit = input.limit.map_or(usize::MAX, |l| l as usize);
    let mut out = Outbox::new()
        .with_coalescing(usize::from(input.coalesce))
        .with_limit(limit);
    let (low, high) = out.water_marks();
    let mut model = Model {
        pending: VecDeque::new(),
        producers: Vec::new(),
        closing: false,
        limit,
        low,
        high,
        writable: true,
    };
    let mut total = 0usize;
    for op in &input.ops {
        match op {
            Op::Push(d) | Op::PushSlice(d) => {
                let bytes = d.bytes();
                total += bytes.len();
                // A push at or over the coalescing threshold is queued as it is; an empty one
                // is ignored; a slice is copied. A shorter push is copied if it joins a run of
                // small pushes, and queued as it is (a buffer's overhead) if it stands alone,
                // which depends on what the queue holds: near the limit, either answer is
                // right, and only the limit is checked.
                let is_push = matches!(op, Op::Push(_)) && !bytes.is_empty();
                let small = bytes.len() < usize::from(input.coalesce);
                let extra = if is_push && !small { ITEM_OVERHEAD } else { 0 };
                let want = model.admit(&out, bytes.len(), extra);
                let want_alone = model.admit(&out, bytes.len(), ITEM_OVERHEAD);
                let got = match op {
                    Op::Push(_) => out.push(Bytes::from(bytes.clone())),
                    _ => out.push_slice(&bytes),
                };
                if is_push && small && want.is_ok() && want_alone.is_err() {
                    assert!(out.cost() <= model.limit, "over the limit");
                } else {
                    assert_eq!(got, want, "push of {} bytes", bytes.len());
                }
                if got.is_ok() {
                    model.pending.extend(bytes);
                }
            }
            Op::PushSlices(parts) => {
                let parts: Vec<Vec<u8>> = parts.iter().map(Data::bytes).collect();
                let len = parts.iter().map(Vec::len).sum::<usize>();
                total += len;
                let want = model.admit(&out, len, 0);
                let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
                let got = out.push_slices(&refs);
                assert_eq!(got, want, "push_slices of {len} bytes");
                if got.is_ok() {
                    model.pending.extend(parts.concat());
                }
            }
            Op::Producer(chunks) => {
                // Fewer than the 1024 empty chunks in a row after which the outbox gives up on
                // a producer (documented), so every producer here is drained.
                let chunks: VecDeque<Bytes> = chunks
                    .iter()
                    .take(64)
                    .map(|d| Bytes::from(d.bytes()))
                    .collect();
                let len = chunks.iter().map(Bytes::len).sum::<usize>();
                total += len;
                let pulled = Arc::new(AtomicUsize::new(0));
                // A producer costs ITEM_OVERHEAD against the limit until it runs out (its
                // bytes count once pulled).
                let want = model.admit(&out, 0, ITEM_OVERHEAD);
                let got = out.push_producer(Counted {
                    chunks: chunks.clone(),
                    pulled: pulled.clone(),
                });
                assert_eq!(got, want, "push of a producer");
                if got.is_ok() {
                    model.producers.push((len, pulled));
                    for chunk in &chunks {
                        model.pending.extend(chunk.iter());
                    }
                }
            }
            Op::Write { max, slices } => {
                write(
                    &mut out,
                    &mut model,
                    usize::from(*max),
                    usize::from(*slices % 80),
                );
            }
            Op::Marks { low, high } => {
                out.set_water_marks(usize::from(*low), usize::from(*high));
                model.low = usize::from(*low).min(usize::from(*high));
                model.high = usize::from(*high);
                assert_eq!(out.water_marks(), (model.low, model.high));
            }
            Op::Limit(l) => {
                out.set_limit(*l as usize);
                model.limit = *l as usize;
            }
            Op::CloseWhenDone => {
                out.close_when_done();
                model.closing = true;
            }
            Op::Discard => {
                out.discard();
                model.pending.clear();
                model.producers.clear();
                model.closing = false;
                assert!(out.is_empty());
            }
        }
        if total > 256 << 10 {
            return;
        }
        model.check(&out);
    }
    // Everything pushed comes out, in order, and then the outbox is empty (and done if closing).
    let mut rounds = 0;
    while !out.is_empty() {
        let wrote = write(&mut out, &mut model, 5000, 7);
        if wrote == 0 {
            // A producer with nothing left is dropped by the poll that finds it out.
            rounds += 1;
            assert!(
                rounds < 4,
                "no progress with {} pending",
                model.pending.len()
            );
        } else {
            rounds = 0;
        }
        model.check(&out);
    }
    assert!(
        model.pending.is_empty(),
        "{} bytes never written",
        model.pending.len()
    );
    assert_eq!(out.queued_bytes(), 0);
    assert_eq!(out.is_done(), model.closing);
});
