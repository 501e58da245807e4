//! Echo: every frame back, followed by its terminator.

use asynchat_core::{Bytes, Context, Protocol, Terminator};

/// Echoes each frame followed by the terminator it was framed by.
#[derive(Debug, Clone)]
pub struct Echo {
    terminator: Bytes,
}

impl Echo {
    /// An echo of lines ended by `terminator` (which must not be empty).
    pub fn new(terminator: impl Into<Bytes>) -> Self {
        Self {
            terminator: terminator.into(),
        }
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

    fn found_terminator(&mut self, ctx: &mut Context<'_>, frame: Bytes) {
        ctx.push(frame);
        ctx.push(self.terminator.clone());
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
}
