//! Echo: every frame back, followed by its terminator.

use std::sync::{Arc, LazyLock};

use asynchat_core::{Bytes, Context, Frame, Protocol, Terminator};

/// Echoes each frame followed by the terminator it was framed by.
///
/// Each frame is pushed back as it came, then its terminator: a short line received whole is
/// lent from the receive buffer and copied into the output buffer, a long one goes out as the
/// slice of the read buffer it came in (see [`Frame`] and
/// [`Config::coalesce_below`](asynchat_core::Config::coalesce_below)).
///
/// Clones share the terminator: a server that clones one `Echo` per connection keeps one word
/// per connection for it, not the four of a `Bytes`.
#[derive(Debug, Clone)]
pub struct Echo {
    terminator: Arc<Bytes>,
}

impl Echo {
    /// An echo of lines ended by `terminator` (which must not be empty). Each call allocates
    /// the terminator's shared handle: make one and clone it for each connection.
    pub fn new(terminator: impl Into<Bytes>) -> Self {
        Self {
            terminator: Arc::new(terminator.into()),
        }
    }
}

/// One echo of `\n` lines for the whole process, so that every default echo shares it.
static LINES: LazyLock<Echo> = LazyLock::new(|| Echo::new(Bytes::from_static(b"\n")));

/// An echo of `\n` lines; every default echo shares one terminator.
impl Default for Echo {
    fn default() -> Self {
        LINES.clone()
    }
}

impl Protocol for Echo {
    fn first_terminator(&self) -> Terminator {
        Terminator::Delimiter(Bytes::clone(&self.terminator))
    }

    // Called once per line: inlined into the chat's delivery loop, it costs a tenth less per
    // echoed line (`scripts/instructions-per-line`).
    #[inline]
    fn found_terminator(&mut self, ctx: &mut Context<'_>, frame: Frame<'_>) {
        if frame.is_lent() {
            // Copied either way: one call copies both.
            ctx.push_slices(&[&frame, &self.terminator]);
        } else {
            ctx.push(frame);
            // Lent, not a clone: a clone of a shared `Bytes` is two atomic operations.
            ctx.push(&*self.terminator);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use asynchat_core::testing::Replay;

    #[test]
    fn default_echoes_share_their_terminator() {
        let (a, b) = (Echo::default(), Echo::default());
        assert!(Arc::ptr_eq(&a.terminator, &b.terminator));
        assert_eq!(&a.terminator[..], b"\n");
    }

    #[test]
    fn echoes_frames_with_their_terminator_under_any_chunking() {
        let t = Replay::new("one\r\ntwo\r\n\r\nthree").assert_invariant(|| Echo::new("\r\n"));
        assert_eq!(t.output, "one\r\ntwo\r\n\r\n");
    }

    #[test]
    fn short_and_long_frames_come_back_alike_under_any_chunking() {
        // Lines of 300 B are lent and copied back, those of 3000 B shared and sent as they are.
        let input = format!("one\ntwo\n{}\n\n{}\n", "x".repeat(300), "y".repeat(3000));
        let t = Replay::new(input.clone()).assert_invariant(Echo::default);
        assert_eq!(t.output, input);
    }
}
