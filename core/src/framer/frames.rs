//! Whole frames, each held in the buffer until complete and handed out as one `Bytes`.

use bytes::{Bytes, BytesMut};

use super::{Framer, Input, Matcher, Phase};
use crate::error::PeerError;

impl Framer {
    /// Pulls the next whole frame; `Ok(None)` means more input is needed, or the stream is over.
    ///
    /// The frame is one `Bytes` slice of the receive buffer, without copying, however many reads
    /// it took. Every kind of frame is held until complete, so all are bounded: delimited and
    /// until-EOF frames by [`max_frame`](Self::max_frame), counted ones by
    /// [`max_counted_frame`](Self::max_counted_frame), checked where the count is set.
    ///
    /// Errors: [`PeerError::FrameTooLong`]; [`PeerError::Truncated`] (once) when the input ended
    /// inside a frame, with the count of its bytes ([`take_unprocessed`](Self::take_unprocessed)
    /// returns them). An [`Terminator::Eof`](crate::Terminator::Eof) frame is returned at the end of
    /// the input, even when empty.
    #[inline]
    pub fn poll_frame(&mut self) -> Result<Option<Bytes>, PeerError> {
        // The common case, inlined into the caller so the frame stays in registers: a delimiter
        // found in a healthy framer.
        self.settle();
        let mut searched = None;
        if self.is_steady() && self.search.matcher.delimiter().is_some() {
            let found = self.find();
            if let Some(i) = found {
                if i as u64 <= self.room() {
                    return Ok(Some(self.split_frame(i)));
                }
            }
            searched = Some(found);
        }
        self.poll_frame_slow(searched)
    }

    /// Everything but the common case. `searched` is the fast path's search result, if it made
    /// one, so that no byte is searched twice.
    #[inline(never)]
    pub(super) fn poll_frame_slow(
        &mut self,
        searched: Option<Option<usize>>,
    ) -> Result<Option<Bytes>, PeerError> {
        if self.take_owed()? {
            // A frame begun with poll_event, or ended by `Count(0)`: its content, if any, was
            // already delivered as data.
            return Ok(Some(Bytes::new()));
        }
        while self.phase == Phase::Discarding {
            if !self.discard_step() {
                if self.input == Input::Ended {
                    self.input = Input::Finished;
                }
                return Ok(None);
            }
        }
        match self.search.matcher {
            Matcher::Byte(_) | Matcher::Seq(_) => {
                let found = searched.unwrap_or_else(|| self.find());
                self.delimited_frame(found)
            }
            Matcher::Count(remaining) => self.counted_frame(remaining),
            Matcher::Eof => self.until_eof_frame(),
        }
    }

    /// The input ended with no complete frame left: report what remains of a partial one.
    fn end_of_frames(&mut self) -> Result<Option<Bytes>, PeerError> {
        self.input = Input::Finished;
        if self.buf.is_empty() && self.frame_len == 0 {
            return Ok(None);
        }
        let unterminated = self.frame_len + self.buf.len() as u64;
        self.frame_len = 0;
        Err(PeerError::Truncated { unterminated })
    }

    fn delimited_frame(&mut self, found: Option<usize>) -> Result<Option<Bytes>, PeerError> {
        if let Some(i) = found {
            if i as u64 > self.room() {
                return Err(self.over_long());
            }
            self.frame_len = 0;
            return Ok(Some(self.split_frame(i)));
        }
        match self.input {
            Input::Ended => self.end_of_frames(),
            Input::Finished => Ok(None),
            Input::Open => {
                let len = self.buf.len();
                if len as u64 > self.room() && (len - self.held_back()) as u64 > self.room() {
                    return Err(self.over_long());
                }
                Ok(None)
            }
        }
    }

    fn counted_frame(&mut self, remaining: u64) -> Result<Option<Bytes>, PeerError> {
        let room = self.max_counted_frame.saturating_sub(self.frame_len);
        if remaining > room {
            // Only if the bound was lowered after the count was set.
            self.frame_len = 0;
            self.phase = Phase::Failed;
            self.buf = BytesMut::new();
            return Err(PeerError::FrameTooLong {
                limit: usize::try_from(self.max_counted_frame).unwrap_or(usize::MAX),
            });
        }
        if remaining == 0 && self.buf.len() as u64 > self.room() {
            return Err(self.over_long());
        }
        if remaining > 0 && self.buf.len() as u64 >= remaining {
            self.search.matcher = Matcher::Count(0);
            self.frame_len = 0;
            return Ok(Some(self.hand_out(remaining as usize)));
        }
        match self.input {
            Input::Ended => self.end_of_frames(),
            Input::Open | Input::Finished => Ok(None),
        }
    }

    fn until_eof_frame(&mut self) -> Result<Option<Bytes>, PeerError> {
        if self.buf.len() as u64 > self.room() {
            return Err(self.over_long());
        }
        if self.input == Input::Ended && !self.eof_fired {
            self.eof_fired = true;
            self.frame_len = 0;
            return Ok(Some(self.hand_out(self.buf.len())));
        }
        if self.input == Input::Ended {
            self.input = Input::Finished;
        }
        Ok(None)
    }
}
