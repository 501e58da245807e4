//! Python's model: frame content streamed out as data events, then the terminator.

use std::cmp::min;

use super::{Event, Framer, Input, Matcher, Phase};
use crate::error::PeerError;

impl Framer {
    /// Pulls the next event; `Ok(None)` means more input is needed (or, after [`Event::End`],
    /// that the stream is over).
    ///
    /// Errors: [`PeerError::FrameTooLong`] when a delimited frame exceeds
    /// [`max_frame`](Self::max_frame). Before the error, exactly `max_frame` bytes of the frame
    /// have been delivered as data, whatever the chunking. Counted and until-EOF frames are
    /// streamed and not limited here.
    #[inline]
    pub fn poll_event(&mut self) -> Result<Option<Event>, PeerError> {
        self.settle();
        let mut searched = None;
        if self.is_steady() && self.search.matcher.delimiter().is_some() {
            let found = self.find();
            if let Some(i) = found {
                if i > 0 && i as u64 <= self.room() {
                    self.frame_len += i as u64;
                    self.phase = Phase::OwesTerminator;
                    return Ok(Some(Event::Data(self.split_frame(i))));
                }
            }
            searched = Some(found);
        }
        self.poll_event_slow(searched)
    }

    /// Everything but the common case; `searched` as in [`Self::poll_frame_slow`].
    #[inline(never)]
    fn poll_event_slow(
        &mut self,
        searched: Option<Option<usize>>,
    ) -> Result<Option<Event>, PeerError> {
        if self.take_owed()? {
            return Ok(Some(Event::Terminator));
        }
        while self.phase == Phase::Discarding {
            if !self.discard_step() {
                return Ok(self.end_if_eof());
            }
        }
        match self.search.matcher {
            Matcher::Byte(_) | Matcher::Seq(_) => {
                let found = searched.unwrap_or_else(|| self.find());
                self.delimited_event(found)
            }
            Matcher::Count(remaining) => Ok(self.counted_event(remaining)),
            Matcher::Eof => Ok(self.until_eof_event()),
        }
    }

    /// Hands out the first `n` buffered bytes as frame content.
    fn deliver(&mut self, n: usize) -> Event {
        self.search.scan = self.search.scan.saturating_sub(n);
        self.frame_len += n as u64;
        Event::Data(self.hand_out(n))
    }

    fn end_if_eof(&mut self) -> Option<Event> {
        if self.input != Input::Ended {
            return None;
        }
        self.input = Input::Finished;
        let unterminated = std::mem::take(&mut self.frame_len);
        Some(Event::End { unterminated })
    }

    fn delimited_event(&mut self, found: Option<usize>) -> Result<Option<Event>, PeerError> {
        let content = match found {
            Some(i) => i,
            None => self.buf.len() - self.held_back(),
        };
        let room = self.room();
        if content as u64 > room {
            if room == 0 {
                return Err(self.over_long());
            }
            // Deliver exactly up to the limit, so the error comes at the same byte whatever the
            // chunking was.
            return Ok(Some(self.deliver(room as usize)));
        }
        if found.is_some() {
            let data = self.split_frame(content);
            if content == 0 {
                self.frame_len = 0;
                return Ok(Some(Event::Terminator));
            }
            self.frame_len += content as u64;
            self.phase = Phase::OwesTerminator;
            return Ok(Some(Event::Data(data)));
        }
        if content > 0 {
            return Ok(Some(self.deliver(content)));
        }
        Ok(self.end_if_eof())
    }

    fn counted_event(&mut self, remaining: u64) -> Option<Event> {
        let len = self.buf.len();
        if len == 0 {
            return self.end_if_eof();
        }
        if remaining == 0 {
            // Python's falsy terminator: everything is data, no terminator ever fires.
            return Some(self.deliver(len));
        }
        let n = min(remaining, len as u64);
        self.search.matcher = Matcher::Count(remaining - n);
        if n == remaining {
            self.phase = Phase::OwesTerminator;
        }
        Some(self.deliver(n as usize))
    }

    fn until_eof_event(&mut self) -> Option<Event> {
        if !self.buf.is_empty() {
            return Some(self.deliver(self.buf.len()));
        }
        if self.input == Input::Ended && !self.eof_fired {
            self.eof_fired = true;
            self.frame_len = 0;
            return Some(Event::Terminator);
        }
        self.end_if_eof()
    }
}
