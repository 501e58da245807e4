//! Properties of the outbox: whatever mix of zero-copy pushes, copied slices and pieces (with and without
//! coalescing), producers and partial writes, the peer receives exactly the bytes pushed, in
//! push order, and the queued count never disagrees with what is left to write.

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
    ]
}

/// One write of at most `max` bytes from at most `slices` slices: what a socket taking
/// partial writes does. Returns the bytes written.
fn write(out: &mut Outbox, max: usize, slices: usize) -> Vec<u8> {
    let mut dst = vec![IoSlice::new(&[]); slices];
    let n = out.poll_slices(&mut dst);
    let taken: Vec<u8> = dst[..n]
        .iter()
        .flat_map(|s| s.iter().copied())
        .take(max)
        .collect();
    out.advance(taken.len());
    taken
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
            match op {
                Op::Push(d) => {
                    out.push(Bytes::from(d.clone())).unwrap();
                    pushed.extend_from_slice(&d);
                }
                Op::PushSlice(d) => {
                    out.push_slice(&d).unwrap();
                    pushed.extend_from_slice(&d);
                }
                Op::PushSlices(parts) => {
                    let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
                    out.push_slices(&slices).unwrap();
                    pushed.extend(parts.concat());
                }
                Op::Producer(d, chunk) => {
                    unpulled += d.len();
                    out.push_producer(SimpleProducer::new(d.clone(), chunk)).unwrap();
                    pushed.extend_from_slice(&d);
                }
                Op::Write(max, slices) => received.extend(write(&mut out, max, slices)),
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
        prop_assert_eq!(received, pushed);
    }
}
