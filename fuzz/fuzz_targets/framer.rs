//! The framer under a random schedule of terminators and a random chunking, against a naive
//! model that searches the whole remaining stream for each frame. Frames, the unterminated rest,
//! the end and the limit error must all match exactly, for the event API and both whole-frame
//! APIs, whether bytes come in by `feed` or by `read_with`.
#![no_main]

use arbitrary::Arbitrary;
use asynchat_core::{Event, Framer, PeerError, Terminator};
use libfuzzer_sys::fuzz_target;

/// A few bytes that make delimiters and their partial matches frequent: raw fuzz bytes almost
/// never contain a 3-byte delimiter, so without this most runs would test one long frame.
const ALPHABET: &[u8] = b"ab\r\n.";

#[derive(Arbitrary, Debug, Clone)]
enum Term {
    Delim([u8; 4], u8),
    Count(u8),
    Eof,
}

#[derive(Arbitrary, Debug)]
enum Api {
    Events,
    Frames,
    Borrowed,
    /// Owned or borrowed, chosen poll by poll.
    Mixed,
}

#[derive(Arbitrary, Debug)]
struct Input {
    api: Api,
    small_alphabet: bool,
    first: Term,
    schedule: Vec<Term>,
    /// Event API only: the limit on a delimited frame.
    max_frame: Option<u8>,
    /// Chunk sizes; whatever they leave over comes as one last chunk.
    chunks: Vec<u8>,
    /// Per chunk: copy it in with `feed` (false) or append it inside `read_with` (true).
    read_with: Vec<bool>,
    data: Vec<u8>,
}

fn letter(b: u8, small: bool) -> u8 {
    if small {
        ALPHABET[usize::from(b) % ALPHABET.len()]
    } else {
        b
    }
}

fn terminator(t: &Term, small: bool) -> Terminator {
    match t {
        Term::Delim(bytes, len) => {
            let len = 1 + usize::from(*len) % 4;
            Terminator::from(
                bytes[..len]
                    .iter()
                    .map(|b| letter(*b, small))
                    .collect::<Vec<u8>>(),
            )
        }
        Term::Count(n) => Terminator::Count(u64::from(*n) % 48),
        Term::Eof => Terminator::Eof,
    }
}

/// What the protocol sees.
#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    frames: Vec<Vec<u8>>,
    /// Bytes of the last frame delivered without a terminator.
    unterminated: Vec<u8>,
    end: Option<u64>,
    error: Option<PeerError>,
}

/// The reference: each frame found by a plain search of everything not yet framed.
///
/// An explicit `Count(0)` ends a frame at once (an empty frame). A count that has fired and is
/// not followed by a new terminator never fires again: every later byte is data, as in Python. The limit applies to delimited frames only (the event API streams the others):
/// exactly `max_frame` bytes of the refused frame are delivered, then the error.
fn model(first: &Terminator, schedule: &[Terminator], data: &[u8], max_frame: usize) -> Outcome {
    let mut out = Outcome::default();
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
            Terminator::Delimiter(d) => {
                let found = rest.windows(d.len()).position(|w| w == &d[..]);
                let content = found.unwrap_or(rest.len());
                if content > max_frame {
                    out.unterminated = rest[..max_frame].to_vec();
                    out.error = Some(PeerError::FrameTooLong { limit: max_frame });
                    return out;
                }
                found.map(|i| (i, i + d.len()))
            }
            Terminator::Count(0) if spent => None,
            Terminator::Count(0) => Some((0, 0)),
            Terminator::Count(n) => {
                let n = *n as usize;
                (rest.len() >= n).then_some((n, n))
            }
            Terminator::Eof => Some((rest.len(), rest.len())),
        };
        let Some((end, skip)) = frame_end else {
            out.unterminated = rest.to_vec();
            out.end = Some(rest.len() as u64);
            return out;
        };
        out.frames.push(rest[..end].to_vec());
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
    out.end = Some(0);
    out
}

fn split<'a>(data: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut rest = data;
    for &size in sizes {
        let (head, tail) = rest.split_at(usize::from(size).min(rest.len()));
        chunks.push(head);
        rest = tail;
    }
    chunks.push(rest);
    chunks
}

fn feed(f: &mut Framer, chunk: &[u8], read_with: bool) {
    if read_with {
        let got = f
            .read_with(chunk.len(), |buf| {
                buf.extend_from_slice(chunk);
                chunk.len()
            })
            .expect("read_with before EOF");
        assert_eq!(got, chunk.len());
    } else {
        f.feed(chunk).expect("feed before EOF");
    }
}

/// What the framer may still hold once polled dry with the input open: the event API streams
/// everything but a partial delimiter.
fn check_streamed(f: &Framer) {
    let held = match f.terminator() {
        Terminator::Delimiter(d) => d.len() - 1,
        Terminator::Count(_) | Terminator::Eof => 0,
    };
    assert!(
        f.unprocessed_len() <= held,
        "{} bytes held back under {:?}",
        f.unprocessed_len(),
        f.terminator()
    );
}

fn run_events(
    first: &Terminator,
    schedule: &[Terminator],
    chunks: &[&[u8]],
    read_with: &[bool],
    max_frame: usize,
) -> Outcome {
    let mut f = Framer::new(first.clone())
        .expect("valid terminator")
        .with_max_frame(max_frame);
    let mut next = schedule.iter();
    let mut out = Outcome::default();
    let mut pull = |f: &mut Framer, out: &mut Outcome| loop {
        match f.poll_event() {
            Ok(Some(Event::Data(d))) => {
                assert!(!d.is_empty(), "empty data event");
                assert!(out.end.is_none(), "data after End");
                out.unterminated.extend_from_slice(&d);
                assert_eq!(f.frame_len(), out.unterminated.len() as u64);
            }
            Ok(Some(Event::Terminator)) => {
                assert!(out.end.is_none(), "terminator after End");
                out.frames.push(std::mem::take(&mut out.unterminated));
                assert_eq!(f.frame_len(), 0);
                if let Some(t) = next.next() {
                    f.set_terminator(t.clone()).expect("valid terminator");
                }
            }
            Ok(Some(Event::End { unterminated })) => {
                assert!(out.end.is_none(), "End twice");
                assert!(f.is_finished());
                out.end = Some(unterminated);
            }
            Ok(None) => return true,
            Err(e) => {
                out.error = Some(e.clone());
                // Failed for good: every later poll repeats the error.
                assert_eq!(f.poll_event(), Err(e));
                assert!(f.is_failed());
                return false;
            }
        }
    };
    for (i, chunk) in chunks.iter().enumerate() {
        feed(&mut f, chunk, read_with.get(i).copied().unwrap_or(false));
        if !pull(&mut f, &mut out) {
            return out;
        }
        check_streamed(&f);
    }
    f.feed_eof();
    if pull(&mut f, &mut out) {
        assert_eq!(f.unprocessed_len(), 0, "bytes left after End");
        assert!(out.end.is_some(), "no End after EOF");
        assert_eq!(f.poll_event(), Ok(None), "an event after End");
    }
    out
}

/// The whole-frame APIs: `choose(i)` says whether poll `i` borrows.
fn run_frames(
    first: &Terminator,
    schedule: &[Terminator],
    chunks: &[&[u8]],
    read_with: &[bool],
    choose: impl Fn(usize) -> bool,
) -> Outcome {
    let mut f = Framer::new(first.clone())
        .expect("valid terminator")
        .with_max_frame(1 << 20);
    let mut next = schedule.iter();
    let mut out = Outcome::default();
    let mut polls = 0usize;
    let mut truncated = false;
    let mut pull = |f: &mut Framer, out: &mut Outcome| loop {
        let borrowed = choose(polls);
        polls += 1;
        let polled = if borrowed {
            f.poll_frame_ref().map(|o| o.map(<[u8]>::to_vec))
        } else {
            f.poll_frame().map(|o| o.map(|b| b.to_vec()))
        };
        match polled {
            Ok(Some(frame)) => {
                assert!(!truncated, "a frame after Truncated");
                out.frames.push(frame);
                if let Some(t) = next.next() {
                    f.set_terminator(t.clone()).expect("valid terminator");
                }
            }
            Ok(None) => return,
            Err(PeerError::Truncated { unterminated }) => {
                assert!(!truncated, "Truncated twice");
                truncated = true;
                out.unterminated = f.take_unprocessed().to_vec();
                assert_eq!(unterminated, out.unterminated.len() as u64, "the count told");
            }
            Err(e) => panic!("unexpected error with a 1 MiB limit: {e:?}"),
        }
    };
    for (i, chunk) in chunks.iter().enumerate() {
        feed(&mut f, chunk, read_with.get(i).copied().unwrap_or(false));
        pull(&mut f, &mut out);
    }
    f.feed_eof();
    pull(&mut f, &mut out);
    assert_eq!(f.poll_frame(), Ok(None), "a frame after the end");
    out.end = Some(out.unterminated.len() as u64);
    out
}

fuzz_target!(|input: Input| {
    if input.data.len() > 4096 || input.schedule.len() > 64 {
        return;
    }
    let small = input.small_alphabet;
    let data: Vec<u8> = input.data.iter().map(|b| letter(*b, small)).collect();
    let first = terminator(&input.first, small);
    let schedule: Vec<Terminator> = input
        .schedule
        .iter()
        .map(|t| terminator(t, small))
        .collect();
    let chunks = split(&data, &input.chunks);
    let read_with = &input.read_with;
    match input.api {
        Api::Events => {
            let max_frame = input.max_frame.map_or(usize::MAX, usize::from);
            let want = model(&first, &schedule, &data, max_frame);
            let got = run_events(&first, &schedule, &chunks, read_with, max_frame);
            assert_eq!(got, want, "event API, {} chunks", chunks.len());
        }
        api => {
            let want = model(&first, &schedule, &data, usize::MAX);
            let bits = read_with.clone();
            let choose = |i: usize| match api {
                Api::Frames => false,
                Api::Borrowed => true,
                _ => bits.get(i % bits.len().max(1)).copied().unwrap_or(false) ^ (i % 3 == 0),
            };
            let got = run_frames(&first, &schedule, &chunks, read_with, choose);
            assert_eq!(got, want, "whole-frame API, {} chunks", chunks.len());
        }
    }
});
