//! Frames lent as slices of the receive buffer: no `Bytes`, no reference count, no copy.

use bytes::{Buf, BytesMut};

use super::{Framer, Input, Matcher};
use crate::error::PeerError;

impl Framer {
    /// Pulls the next whole frame as a slice of the receive buffer: no `Bytes`, no reference
    /// count, no copy. For code that parses a frame in place and does not keep it (use
    /// [`poll_frame`](Self::poll_frame) to keep frames); otherwise the same as `poll_frame`.
    ///
    /// The buffer space of frames taken this way is reclaimed by the next call of any other
    /// method, once per read rather than once per frame: the fastest way to frame.
    ///
    /// ```
    /// use asynchat_core::Framer;
    ///
    /// let mut framer = Framer::new("\r\n")?;
    /// framer.feed(b"SET a 1\r\nGET a\r\n")?;
    /// let mut verbs = Vec::new();
    /// while let Some(line) = framer.poll_frame_ref()? {
    ///     verbs.push(line.split(|b| *b == b' ').next().unwrap_or_default().to_vec());
    /// }
    /// assert_eq!(verbs, [b"SET".to_vec(), b"GET".to_vec()]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn poll_frame_ref(&mut self) -> Result<Option<&[u8]>, PeerError> {
        let searched = match self.whole_frame() {
            Ok(frame) => return Ok(Some(&self.buf[frame])),
            Err(searched) => searched,
        };
        self.settle();
        match self.poll_frame_slow(searched)? {
            Some(frame) => Ok(Some(&self.lent.insert(Box::new(frame))[..])),
            None => Ok(None),
        }
    }

    /// Takes the buffer out (every byte handed out so far dropped), so that a chat can lend
    /// frames straight from it while the protocol holds the framer through its context (which
    /// may change the terminator). Until [`restore_buffer`](Self::restore_buffer) the framer's
    /// buffer is empty: only its settings (terminator, `max_frame`) may change meanwhile.
    pub(crate) fn lend_buffer(&mut self) -> BytesMut {
        self.settle();
        std::mem::take(&mut self.buf)
    }

    /// The next frame of a lent buffer, from `start`, if it is whole and shorter than `limit`
    /// (and, for a delimiter, within `max_frame`): its range and where the frame after it
    /// starts. A count lent runs down, as [`poll_event`](Self::poll_event) runs it down when it
    /// hands out the count's last bytes. `None` when only the other polls can say what comes
    /// next (a partial frame, a longer one, a count run down, the end).
    ///
    /// Only once [`lends_frames`](Self::lends_frames) said so: of what it checks, only the
    /// phase and the terminator can change while the buffer is lent.
    #[inline(always)]
    pub(crate) fn whole_frame_in(
        &mut self,
        buf: &[u8],
        start: usize,
        limit: usize,
    ) -> Option<(std::ops::Range<usize>, usize)> {
        if !self.is_steady() {
            // A callback ended a frame at once (`Count(0)`). (`Eof` ends the lend too: the
            // search below finds no delimiter.)
            return None;
        }
        if let Matcher::Count(count) = self.search.matcher {
            let end = start.checked_add(usize::try_from(count).ok()?)?;
            if count == 0 || count as usize >= limit || end > buf.len() {
                return None;
            }
            self.search.matcher = Matcher::Count(0);
            return Some((start..end, end));
        }
        let room = self.max_frame.min(limit.saturating_sub(1));
        self.search.whole_frame(buf, start, room as u64).ok()
    }

    /// Marks the end of a lent frame of `len` bytes as found and not yet delivered, as
    /// [`poll_event`](Self::poll_event) does when it hands out a frame's data with its
    /// delimiter found: a terminator set meanwhile applies after it.
    #[inline]
    pub(crate) fn owe_terminator(&mut self, len: usize) {
        if self.is_steady() {
            self.frame_len = len as u64;
            self.phase = super::Phase::OwesTerminator;
        }
    }

    /// Whether the next frame may be lent whole: a delimiter or a count not yet run down ends
    /// it, it has not begun as data events (a frame begun so must end as an event too), and no
    /// terminator or discard is owed.
    #[inline]
    pub(crate) fn lends_frames(&self) -> bool {
        self.frame_len == 0
            && self.is_steady()
            && match self.search.matcher {
                Matcher::Byte(_) | Matcher::Seq(_) => true,
                Matcher::Count(count) => count > 0,
                Matcher::Eof => false,
            }
    }

    /// Whether polling can only find nothing: every byte delivered, the input open, a
    /// delimiter or a count in force and no terminator owed.
    #[inline]
    pub(crate) fn is_drained(&self) -> bool {
        self.buf.len() == self.consumed && self.input == Input::Open && self.lends_frames()
    }

    /// Puts back a buffer taken by [`lend_buffer`](Self::lend_buffer), its first `delivered`
    /// bytes handed out (dropped with the next call, as after
    /// [`poll_frame_ref`](Self::poll_frame_ref)).
    pub(crate) fn restore_buffer(&mut self, buf: BytesMut, delivered: usize) {
        debug_assert!(self.buf.is_empty() && self.consumed == 0, "lent twice");
        self.buf = buf;
        self.consumed = delivered.min(self.buf.len());
    }

    /// The fast path of the borrowed polls: the range of a whole delimiter frame (marked as
    /// handed out), or the search result the slow path should reuse (`None` if no search was
    /// made, else the frame's length if a delimiter was found).
    #[inline(always)]
    fn whole_frame(&mut self) -> Result<std::ops::Range<usize>, Option<Option<usize>>> {
        if !self.is_steady() {
            return Err(None);
        }
        let room = self.room();
        let (frame, next) = self.search.whole_frame(&self.buf, self.consumed, room)?;
        self.consumed = next;
        Ok(frame)
    }

    /// Drops what [`poll_frame_ref`](Self::poll_frame_ref) has handed out.
    #[inline(always)]
    pub(super) fn settle(&mut self) {
        if self.consumed != 0 {
            if self.consumed == self.buf.len() {
                // Cleared, not advanced: the whole allocation stays usable for the next read.
                self.buf.clear();
            } else {
                self.buf.advance(self.consumed);
            }
            self.search.scan = self.search.scan.saturating_sub(self.consumed);
            self.consumed = 0;
        }
        self.lent = None;
    }
}
