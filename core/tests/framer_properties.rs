//! Properties of the framer: for every terminator kind, any input and any chunking, the frames are
//! the same, and they are the frames a naive reference model finds; switching terminators
//! mid-stream obeys the same property; no sequence of calls panics.

use asynchat_core::{Event, Framer, OverLongPolicy, PeerError, Terminator};
use proptest::prelude::*;

/// A small alphabet makes delimiters and their partial matches frequent.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(b"ab\r\n.".to_vec()), 0..400)
}

fn terminator() -> impl Strategy<Value = Terminator> {
    prop_oneof![
        4 => prop::collection::vec(prop::sample::select(b"ab\r\n.".to_vec()), 1..=4)
            .prop_map(Terminator::from),
        2 => (0u64..40).prop_map(Terminator::Count),
        1 => Just(Terminator::Eof),
    ]
}

/// Cut points turning `len` bytes into chunks.
fn chunking(data: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut at = 0;
    for p in points.into_iter().chain([data.len()]) {
        chunks.push(data[at..p].to_vec());
        at = p;
    }
    chunks
}

/// What the protocol sees: the frames (content between terminators), and how the stream ended.
#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    frames: Vec<Vec<u8>>,
    unterminated: Vec<u8>,
    end: Option<u64>,
    error: Option<PeerError>,
}

/// Runs the event API over `chunks`, setting the next terminator of `schedule` after each frame.
fn run_events(
    first: &Terminator,
    schedule: &[Terminator],
    chunks: &[Vec<u8>],
    max_frame: usize,
) -> Outcome {
    let mut f = Framer::new(first.clone())
        .unwrap()
        .with_max_frame(max_frame);
    let mut next = schedule.iter();
    let mut out = Outcome::default();
    let mut pull = |f: &mut Framer, out: &mut Outcome| loop {
        match f.poll_event() {
            Ok(Some(Event::Data(d))) => {
                assert!(!d.is_empty(), "empty data event");
                out.unterminated.extend_from_slice(&d);
            }
            Ok(Some(Event::Terminator)) => {
                out.frames.push(std::mem::take(&mut out.unterminated));
                if let Some(t) = next.next() {
                    f.set_terminator(t.clone()).unwrap();
                }
            }
            Ok(Some(Event::End { unterminated })) => {
                assert!(out.end.is_none(), "End twice");
                out.end = Some(unterminated);
            }
            Ok(None) => return,
            Err(e) => {
                out.error = Some(e);
                return;
            }
        }
    };
    for c in chunks {
        f.feed(c).unwrap();
        pull(&mut f, &mut out);
        if out.error.is_some() {
            return out;
        }
    }
    f.feed_eof();
    pull(&mut f, &mut out);
    out
}

/// Runs the whole-frame API the same way, owned (`poll_frame`) or borrowed (`poll_frame_ref`).
fn run_frames(
    first: &Terminator,
    schedule: &[Terminator],
    chunks: &[Vec<u8>],
    borrowed: bool,
) -> Outcome {
    let mut f = Framer::new(first.clone()).unwrap().with_max_frame(1 << 20);
    let mut next = schedule.iter();
    let mut out = Outcome::default();
    let mut pull = |f: &mut Framer, out: &mut Outcome| loop {
        let polled = if borrowed {
            f.poll_frame_ref().map(|o| o.map(<[u8]>::to_vec))
        } else {
            f.poll_frame().map(|o| o.map(|b| b.to_vec()))
        };
        match polled {
            Ok(Some(frame)) => {
                out.frames.push(frame);
                if let Some(t) = next.next() {
                    f.set_terminator(t.clone()).unwrap();
                }
            }
            Ok(None) => return,
            Err(PeerError::Truncated { unterminated }) => {
                out.unterminated = f.take_unprocessed().to_vec();
                assert_eq!(unterminated, out.unterminated.len() as u64);
            }
            Err(e) => {
                out.error = Some(e);
                return;
            }
        }
    };
    for c in chunks {
        f.feed(c).unwrap();
        pull(&mut f, &mut out);
    }
    f.feed_eof();
    pull(&mut f, &mut out);
    out.end = Some(out.unterminated.len() as u64);
    out
}

/// The naive model: frames found by searching the whole remaining stream each time.
fn model(first: &Terminator, schedule: &[Terminator], data: &[u8]) -> Outcome {
    let mut frames = Vec::new();
    let mut rest = data;
    let mut t = first.clone();
    let mut next = schedule.iter();
    // A count that ran down with no new terminator named: it never fires again. An explicit
    // `Count(0)` ends a frame at once.
    let mut spent = false;
    // The end of the stream ends one frame only; after it, only an explicit `Count(0)` (a
    // zero-length body, which needs no bytes) still gives a frame.
    let mut ended = false;
    loop {
        if ended && (spent || t != Terminator::Count(0)) {
            break;
        }
        let frame_end = match &t {
            Terminator::Delimiter(d) => rest
                .windows(d.len())
                .position(|w| w == &d[..])
                .map(|i| (i, i + d.len())),
            Terminator::Count(0) if spent => None,
            Terminator::Count(0) => Some((0, 0)),
            Terminator::Count(n) => (rest.len() as u64 >= *n).then_some((*n as usize, *n as usize)),
            Terminator::Eof => Some((rest.len(), rest.len())),
        };
        let Some((end, skip)) = frame_end else {
            return Outcome {
                frames,
                unterminated: rest.to_vec(),
                end: Some(rest.len() as u64),
                error: None,
            };
        };
        frames.push(rest[..end].to_vec());
        rest = &rest[skip..];
        let was_eof = t == Terminator::Eof;
        t = match next.next() {
            Some(n) => n.clone(),
            None => match t {
                Terminator::Count(_) => {
                    spent = true;
                    Terminator::Count(0)
                }
                other => other,
            },
        };
        ended |= was_eof;
    }
    Outcome {
        frames,
        unterminated: Vec::new(),
        end: Some(0),
        error: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_chunking_gives_the_model_frames(
        data in stream(),
        first in terminator(),
        schedule in prop::collection::vec(terminator(), 0..12),
        cuts in prop::collection::vec(any::<usize>(), 0..30),
    ) {
        let want = model(&first, &schedule, &data);
        let whole = run_events(&first, &schedule, std::slice::from_ref(&data), usize::MAX);
        prop_assert_eq!(&whole, &want);
        let chunked = run_events(&first, &schedule, &chunking(&data, &cuts), usize::MAX);
        prop_assert_eq!(&chunked, &want);
        let bytes: Vec<Vec<u8>> = data.chunks(1).map(<[u8]>::to_vec).collect();
        prop_assert_eq!(&run_events(&first, &schedule, &bytes, usize::MAX), &want);
    }

    #[test]
    fn whole_frame_api_agrees_with_the_model(
        data in stream(),
        first in terminator(),
        schedule in prop::collection::vec(terminator(), 0..12),
        cuts in prop::collection::vec(any::<usize>(), 0..30),
    ) {
        let want = model(&first, &schedule, &data);
        let chunks = chunking(&data, &cuts);
        prop_assert_eq!(&run_frames(&first, &schedule, &chunks, false), &want);
        prop_assert_eq!(&run_frames(&first, &schedule, &chunks, true), &want);
    }

    #[test]
    fn limit_errors_do_not_depend_on_chunking(
        data in stream(),
        first in terminator(),
        schedule in prop::collection::vec(terminator(), 0..12),
        cuts in prop::collection::vec(any::<usize>(), 0..30),
        max_frame in 0usize..20,
    ) {
        let whole = run_events(&first, &schedule, std::slice::from_ref(&data), max_frame);
        let chunked = run_events(&first, &schedule, &chunking(&data, &cuts), max_frame);
        prop_assert_eq!(&chunked, &whole);
        if whole.error.is_some() {
            // Exactly max_frame bytes of the refused frame were delivered first.
            prop_assert_eq!(whole.unterminated.len(), max_frame);
        }
    }

    /// Random sequences of every call, with random limits and policies: nothing panics, and the
    /// framer never holds more than it was fed.
    #[test]
    fn no_call_sequence_panics(
        ops in prop::collection::vec((0u8..7, stream(), terminator()), 0..60),
        max_frame in 0usize..64,
        skip in any::<bool>(),
    ) {
        let policy = if skip { OverLongPolicy::Skip } else { OverLongPolicy::Fail };
        let mut f = Framer::new("\n").unwrap().with_max_frame(max_frame).with_over_long_policy(policy);
        let mut fed = 0usize;
        for (op, bytes, t) in ops {
            match op {
                0 | 1 => { if f.feed(&bytes).is_ok() { fed += bytes.len(); } }
                2 => { let _ = f.poll_event(); }
                3 => { let _ = f.poll_frame(); let _ = f.poll_frame_ref(); }
                4 => { f.set_terminator(t).unwrap(); }
                5 => { if bytes.len() % 7 == 0 { f.feed_eof(); } }
                _ => { fed -= f.take_unprocessed().len().min(fed); }
            }
            prop_assert!(f.unprocessed_len() <= fed);
        }
    }
}
