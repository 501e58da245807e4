//! Properties of the outbox: whatever mix of zero-copy pushes, copied slices and pieces (with and without
//! coalescing), producers and partial writes, the peer receives exactly the bytes pushed, in
//! push order, and the queued count never disagrees with what is left to write; and the
//! writable flag follows its water marks with hysteresis, whatever moves them meanwhile.

use std::io::IoSlice;

use asynchat_core::producer::SimpleProducer;
use asynchat_core::{Bytes, Outbox};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Push(Vec<u8>),
    PushSlice(Vec<u8>),
    /// Copied pieces, pushed in one call.
    PushSlices(Vec<Vec<u8>>),
    /// Data and the chunk size it is produced in.
    Producer(Vec<u8>, usize),
    /// A write of at most this many bytes, from at most this many slices.
    Write(usize, usize),
    /// New low and high water marks.
    Marks(usize, usize),
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => prop::collection::vec(any::<u8>(), 0..80),
        1 => prop::collection::vec(any::<u8>(), 4000..9000),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => bytes().prop_map(Op::Push),
        4 => bytes().prop_map(Op::PushSlice),
        2 => prop::collection::vec(bytes(), 0..4).prop_map(Op::PushSlices),
        1 => (bytes(), 1usize..64).prop_map(|(d, c)| Op::Producer(d, c)),
        3 => (1usize..10_000, 1usize..6).prop_map(|(n, s)| Op::Write(n, s)),
        1 => marks().prop_map(|(low, high)| Op::Marks(low, high)),
    ]
}

/// Water marks around the sizes the ops push, `low` sometimes above `high` (it is clamped).
fn marks() -> impl Strategy<Value = (usize, usize)> {
    (0usize..12_000, 0usize..12_000)
}

/// One write of at most `max` bytes from at most `slices` slices: what a socket taking
/// partial writes does. Returns the bytes written.
fn write(out: &mut Outbox, max: usize, slices: usize) -> Vec<u8> {
    write_watched(out, max, slices, |_| {})
}

/// [`write`], showing `watch` the outbox between the poll (which pulls producers, so more is
/// queued) and the advance.
fn write_watched(
    out: &mut Outbox,
    max: usize,
    slices: usize,
    mut watch: impl FnMut(&Outbox),
) -> Vec<u8> {
    let mut dst = vec![IoSlice::new(&[]); slices];
    let n = out.poll_slices(&mut dst);
    let taken: Vec<u8> = dst[..n]
        .iter()
        .flat_map(|s| s.iter().copied())
        .take(max)
        .collect();
    watch(out);
    out.advance(taken.len());
    taken
}

/// Applies `op` to `out`; returns what a write took (nothing for the other ops).
fn apply(out: &mut Outbox, op: &Op) -> Vec<u8> {
    match op {
        Op::Push(d) => out.push(Bytes::from(d.clone())).unwrap(),
        Op::PushSlice(d) => out.push_slice(d).unwrap(),
        Op::PushSlices(parts) => {
            let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            out.push_slices(&slices).unwrap();
        }
        Op::Producer(d, chunk) => out
            .push_producer(SimpleProducer::new(d.clone(), *chunk))
            .unwrap(),
        Op::Marks(low, high) => out.set_water_marks(*low, *high),
        Op::Write(max, slices) => return write(out, *max, *slices),
    }
    Vec::new()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn every_byte_arrives_once_in_push_order(
        ops in prop::collection::vec(op(), 0..60),
        coalesce in prop_oneof![Just(0usize), 1usize..100],
    ) {
        let mut out = Outbox::new().with_coalescing(coalesce);
        let (mut pushed, mut received) = (Vec::new(), Vec::new());
        let mut unpulled = 0usize;
        for op in ops {
            received.extend(apply(&mut out, &op));
            match op {
                Op::Push(d) | Op::PushSlice(d) => pushed.extend(d),
                Op::PushSlices(parts) => pushed.extend(parts.concat()),
                Op::Producer(d, _) => {
                    unpulled += d.len();
                    pushed.extend(d);
                }
                Op::Write(..) | Op::Marks(..) => {}
            }
            // Producers' bytes count once pulled; everything else as soon as it is pushed.
            let pending = pushed.len() - received.len();
            prop_assert!(out.queued_bytes() <= pending);
            prop_assert!(out.queued_bytes() + unpulled >= pending);
        }
        while !out.is_empty() {
            let before = received.len();
            received.extend(write(&mut out, 3000, 4));
            prop_assert!(received.len() > before || out.is_empty(), "no progress");
        }
        prop_assert_eq!(out.queued_bytes(), 0);
        prop_assert_eq!(out.cost(), 0, "an empty queue costs nothing");
        prop_assert_eq!(received, pushed);
    }

    #[test]
    fn writable_follows_the_water_marks_with_hysteresis(
        ops in prop::collection::vec(op(), 0..60),
        (low, high) in marks(),
        coalesce in prop_oneof![Just(0usize), 1usize..100],
    ) {
        let mut out = Outbox::new().with_coalescing(coalesce).with_water_marks(low, high);
        let (mut low, mut high) = (low.min(high), high);
        let mut writable = true;
        // The flag after any change of what is queued or of the marks. The marks count what
        // the queue costs (bytes and per-buffer overhead), never less than its bytes.
        let mut check = |out: &Outbox, low: usize, high: usize| {
            let cost = out.cost();
            if cost < out.queued_bytes() {
                return Err(format!("cost {cost} below the {} bytes queued", out.queued_bytes()));
            }
            if cost > high {
                writable = false;
            } else if cost <= low {
                writable = true;
            }
            (out.is_writable() == writable).then_some(()).ok_or(format!(
                "writable {} with cost {cost}, low {low}, high {high}",
                out.is_writable()
            ))
        };
        check(&out, low, high).map_err(TestCaseError::fail)?;
        for op in ops {
            if let Op::Marks(l, h) = op {
                (low, high) = (l.min(h), h);
            }
            if let Op::Write(max, slices) = op {
                let mut pulled = Ok(());
                write_watched(&mut out, max, slices, |out| pulled = check(out, low, high));
                pulled.map_err(TestCaseError::fail)?;
            } else {
                apply(&mut out, &op);
            }
            check(&out, low, high).map_err(TestCaseError::fail)?;
        }
    }
}
