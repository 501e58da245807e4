//! What the protocol targets share: how a fuzz input becomes a session and its chunking, and the
//! whole-versus-chunked comparison.

use asynchat_core::testing::{random_chunks, Replay, Transcript};
use asynchat_core::{Config, Protocol};

/// A protocol target's input: `k = data[0] % 16`, then `k` chunk sizes, then the session bytes;
/// bit 4 of `data[0]` asks for [`small_limits`](Self::small_limits).
///
/// The session stays plain text at a fixed offset, so seeds are real sessions behind one byte
/// (`\0` for "no sizes"). With sizes, the session is cut by them in turn (each size + 1, cycled);
/// without, by [`random_chunks`] seeded with the session's length, so every input is still fed
/// in pieces as well as whole.
#[derive(Debug)]
pub struct Session<'a> {
    pub bytes: &'a [u8],
    pub chunks: Vec<&'a [u8]>,
    /// Run with a line limit a fuzz input can exceed: the protocols' own limits (16 KiB heads,
    /// 64 KiB inline commands) are beyond the inputs' 4 KiB.
    pub small_limits: bool,
}

impl<'a> Session<'a> {
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let (&head, rest) = data.split_first()?;
        let k = usize::from(head % 16);
        if rest.len() < k {
            return None;
        }
        let (sizes, bytes) = rest.split_at(k);
        let chunks = if sizes.is_empty() {
            random_chunks(bytes, bytes.len() as u64)
        } else {
            let mut chunks = Vec::new();
            let mut left = bytes;
            for size in sizes.iter().cycle() {
                if left.is_empty() {
                    break;
                }
                let (head, tail) = left.split_at((usize::from(*size) + 1).min(left.len()));
                chunks.push(head);
                left = tail;
            }
            chunks
        };
        Some(Self {
            bytes,
            chunks,
            small_limits: head & 0x10 != 0,
        })
    }
}

/// Feeds `session` whole and in its chunks to fresh connections made by `make`, with and without
/// the peer's EOF at the end, and checks each pair of transcripts is identical. Returns the
/// transcripts of the whole input, without EOF and with it, for the target's own checks.
pub fn chunking_invariant<P: Protocol>(
    session: &Session<'_>,
    config: &Config,
    mut make: impl FnMut() -> P,
    mut same: impl FnMut(&Transcript, &Transcript, bool),
) -> [Transcript; 2] {
    [false, true].map(|eof| {
        let replay = Replay::new(session.bytes.to_vec())
            .config(config.clone())
            .eof(eof);
        let whole = replay.run(&mut make, &[session.bytes]);
        let chunked = replay.run(&mut make, &session.chunks);
        assert_eq!(
            whole,
            chunked,
            "whole and chunked (eof {eof}) differ; {} chunks: {:?}",
            session.chunks.len(),
            session.chunks.iter().map(|c| c.len()).collect::<Vec<_>>()
        );
        same(&whole, &chunked, eof);
        whole
    })
}
