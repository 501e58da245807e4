//! Echo: every frame back, followed by its terminator.

use asynchat_core::{Bytes, Context, Protocol, Terminator};

/// Echoes each frame followed by the terminator it was framed by.
///
/// By default every frame is pushed as it came (a slice of the read buffer), and the terminator
/// after it; the outbox copies runs of short pushes into one buffer
/// ([`Config::coalesce_below`](asynchat_core::Config::coalesce_below)), so short lines go out as
/// one slice. [`copy_below`](Self::copy_below) copies short frames and their terminator into the
/// connection's output buffer from the protocol instead, which also spares the
/// reference-counted slice each frame is handed as. It also takes frames
/// received whole as borrowed bytes ([`Protocol::found_frame`]), and those are copied whatever
/// their size; the threshold then only decides for frames that arrived in pieces. Meant for
/// short lines.
#[derive(Debug, Clone)]
pub struct Echo {
    terminator: Bytes,
    copy_below: usize,
}

impl Echo {
    /// An echo of lines ended by `terminator` (which must not be empty).
    pub fn new(terminator: impl Into<Bytes>) -> Self {
        Self {
            terminator: terminator.into(),
            copy_below: 0,
        }
    }

    /// Copies frames shorter than `bytes` (and their terminator) into the output buffer instead
    /// of pushing them zero-copy.
    #[must_use]
    pub fn copy_below(mut self, bytes: usize) -> Self {
        self.copy_below = bytes;
        self
    }
}

impl Default for Echo {
    fn default() -> Self {
        Self::new(Bytes::from_static(b"\n"))
    }
}

impl Protocol for Echo {
    fn first_terminator(&self) -> Terminator {
        Terminator::Delimiter(self.terminator.clone())
    }

    fn borrowed_frames(&self) -> bool {
        self.copy_below > 0
    }

    // Called once per line: inlined into the chat's delivery loop, it costs a tenth less per
    // echoed line (`scripts/instructions-per-line`).
    #[inline]
    fn found_frame(&mut self, ctx: &mut Context<'_>, frame: &[u8]) {
        ctx.push_slices(&[frame, &self.terminator]);
    }

    fn found_terminator(&mut self, ctx: &mut Context<'_>, frame: Bytes) {
        if frame.len() < self.copy_below {
            ctx.push_slices(&[&frame, &self.terminator]);
        } else {
            ctx.push(frame);
            ctx.push(self.terminator.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use asynchat_core::testing::Replay;

    #[test]
    fn echoes_frames_with_their_terminator_under_any_chunking() {
        let t = Replay::new("one\r\ntwo\r\n\r\nthree").assert_invariant(|| Echo::new("\r\n"));
        assert_eq!(t.output, "one\r\ntwo\r\n\r\n");
    }

    #[test]
    fn copying_short_frames_gives_the_same_bytes() {
        let input = format!("one\ntwo\n{}\n\n", "x".repeat(300));
        let zero_copy = Replay::new(input.clone()).assert_invariant(Echo::default);
        let copying = Replay::new(input).assert_invariant(|| Echo::default().copy_below(256));
        assert_eq!(copying.output, zero_copy.output);
        assert_eq!(copying.output.len(), 3 + 1 + 3 + 1 + 300 + 1 + 1);
    }
}
