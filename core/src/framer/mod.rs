//! Incremental terminator detection: Python's `async_chat.handle_read` and `find_prefix_at_end`,
//! in linear time and without copies.
//!
//! The [`Framer`] and its settings are here; the three ways frames come out each have a file
//! (`events`: Python's data-then-terminator stream; `frames`: whole `Bytes` frames; `lending`:
//! frames lent as slices), and `search` holds the compiled terminator and its search.

mod events;
mod frames;
mod lending;
mod search;

use std::cmp::min;

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{Misuse, PeerError};
use crate::pool;
use crate::terminator::Terminator;
use search::{Matcher, Search, BYTE_VALUES};

/// Default [`Framer::max_frame`]: 64 KiB, the size of one read in Python's `async_chat`
/// (`ac_in_buffer_size`). Long enough for any line-based protocol's lines (SMTP allows 1000, HTTP
/// servers commonly 8 KiB of headers), short enough that a peer cannot make a connection hold much.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;

/// Default [`Framer::max_counted_frame`]: 16 MiB. A count is the protocol's choice (usually a
/// length the peer announced and the protocol accepted), not a line the peer may never end, so
/// it has its own bound, far above the line limit: a 70 kB length-prefixed body is ordinary.
pub const DEFAULT_MAX_COUNTED_FRAME: u64 = 16 * 1024 * 1024;

/// A `Bytes` frame shorter than `1 / KEPT_FRAME_RATIO` of the read buffer it arrived in (of
/// 4 KiB at least, so frames under 512 bytes always) is copied out of that buffer rather than
/// split off it. A frame a protocol keeps (a stored value, a queued message) then costs its own
/// size, not the whole buffer it shares: split off, a one-byte value kept pins 4 to 64 KiB.
/// Larger frames are still handed out without a copy, pinning at most `KEPT_FRAME_RATIO` times
/// their size. [`Framer::poll_frame_ref`] lends frames and never copies.
pub const KEPT_FRAME_RATIO: usize = 8;

/// The buffer size [`KEPT_FRAME_RATIO`] is taken of, at least.
const MIN_RATIO_BASE: usize = 4096;

/// Frames shorter than this are always copied out of the buffer when handed out as `Bytes`.
pub(crate) const ALWAYS_COPIED_BELOW: usize = MIN_RATIO_BASE / KEPT_FRAME_RATIO;

/// What the framer does with a delimited frame that grows past [`Framer::max_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OverLongPolicy {
    /// Report [`PeerError::FrameTooLong`] and stay failed: every later poll returns the same
    /// error. The connection should be closed. The default.
    #[default]
    Fail,
    /// Report [`PeerError::FrameTooLong`] once, discard the rest of the frame up to and including
    /// its terminator, then carry on with the next frame (as tokio-util's `LinesCodec` does with a
    /// maximum length). For protocols that answer "line too long" and continue, such as SMTP.
    Skip,
}

/// One step of the framed input, as pulled by [`Framer::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Frame content (Python's `collect_incoming_data`). Never empty, never contains terminator
    /// bytes. A frame may come in several pieces; when it arrived within one read it comes as one
    /// piece that is a slice of the read buffer, not a copy.
    Data(Bytes),
    /// The current frame ended (Python's `found_terminator`). The delimiter, if any, has been
    /// consumed. Change the terminator now to frame the following bytes differently.
    Terminator,
    /// The input ended (after [`Framer::feed_eof`]) and every byte before it has been delivered.
    /// Always the last event.
    End {
        /// Bytes of the last frame that were delivered as [`Event::Data`] but never got their
        /// terminator: `0` when the stream ended cleanly on a frame boundary.
        unterminated: u64,
    },
}

/// What the framer owes before it frames on: one thing at a time, so that a method that checks
/// the phase cannot miss a second flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Framing; the fast paths apply.
    Steady,
    /// A frame's end was found (a delimiter or count consumed, or `Count(0)` set) after its last
    /// data: [`Event::Terminator`], or an empty frame, is owed.
    OwesTerminator,
    /// Dropping the rest of an over-long frame ([`OverLongPolicy::Skip`]).
    Discarding,
    /// Failed on an over-long frame ([`OverLongPolicy::Fail`]): nothing more is framed.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    Open,
    /// `feed_eof` was called; the end has not been reported yet.
    Ended,
    /// The end has been reported; nothing more will come out.
    Finished,
}

/// Splits a byte stream into frames by a [`Terminator`] that can change between frames.
///
/// Bytes go in with [`feed`](Self::feed) (a copy) or [`read_with`](Self::read_with) (a driver
/// reads straight into the framer's buffer), and the end of the stream with
/// [`feed_eof`](Self::feed_eof). Frames come out in one of two ways — pick one per frame:
///
/// - [`poll_event`](Self::poll_event): Python's model. Content is streamed out as
///   [`Event::Data`] as soon as it cannot be part of a terminator, then [`Event::Terminator`];
///   only a trailing partial match of the delimiter is held back. Counted and until-EOF frames
///   are streamed too, so a 4 GiB body never sits in memory.
/// - [`poll_frame`](Self::poll_frame): whole frames, kept in the buffer until complete (so a frame
///   is one `Bytes` however many reads it took: split off the buffer without a copy, or copied
///   out when small, see [`KEPT_FRAME_RATIO`]), bounded by `max_frame` for every terminator
///   kind.
///
/// [`set_terminator`](Self::set_terminator) between events or frames applies to every byte not yet
/// delivered, exactly as Python's `set_terminator` inside `found_terminator`.
///
/// # Security
///
/// A delimited frame longer than [`max_frame`](Self::max_frame) (default
/// [`DEFAULT_MAX_FRAME`], 64 KiB) is refused with [`PeerError::FrameTooLong`], wherever in the
/// stream the delimiter is and however the input is chunked; with [`poll_frame`](Self::poll_frame)
/// the limit applies to counted and until-EOF frames as well. Frames are detected in time linear
/// in the input: bytes already scanned are never scanned again, whatever the chunking. Poll until
/// `Ok(None)` after each feed: the buffer only shrinks as events are pulled.
///
/// # Examples
///
/// ```
/// use asynchat_core::{Event, Framer};
///
/// // HTTP-like: a header ended by "\r\n\r\n" says how long the body is.
/// let mut framer = Framer::new("\r\n\r\n")?;
/// framer.feed(b"Content-Length: 5\r\n\r\nhelloGET")?;
///
/// assert_eq!(framer.poll_frame()?, Some("Content-Length: 5".into()));
/// framer.set_terminator(5u64)?;
/// assert_eq!(framer.poll_frame()?, Some("hello".into()));
/// framer.set_terminator("\r\n\r\n")?;
/// assert_eq!(framer.poll_frame()?, None); // "GET" waits for its terminator
///
/// // Or event by event, as Python's collect_incoming_data / found_terminator:
/// framer.feed(b" / HTTP/1.1\r\n\r\n")?;
/// assert_eq!(framer.poll_event()?, Some(Event::Data("GET / HTTP/1.1".into())));
/// assert_eq!(framer.poll_event()?, Some(Event::Terminator));
/// framer.feed_eof();
/// assert_eq!(framer.poll_event()?, Some(Event::End { unterminated: 0 }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Framer {
    buf: BytesMut,
    search: Search,
    /// Bytes of the current frame already delivered as `Event::Data`.
    frame_len: u64,
    max_frame: usize,
    max_counted_frame: u64,
    policy: OverLongPolicy,
    phase: Phase,
    /// The `Eof` terminator has fired for this stream's end.
    eof_fired: bool,
    input: Input,
    /// A prefix of `buf` already handed out by `poll_frame_ref` (frames and their delimiters),
    /// dropped by the next other call: one `advance` per read instead of one split per frame.
    consumed: usize,
    /// A frame `poll_frame_ref` took from the slow path, owned here so a reference can be lent.
    lent: Option<Box<Bytes>>,
    /// `Bytes` split off `buf` may still share its memory, so it is not recycled when it empties.
    shared: bool,
}

/// Sizes and state only: the buffer may hold tens of KiB of a peer's bytes.
impl std::fmt::Debug for Framer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Framer")
            .field("terminator", &self.terminator())
            .field("unprocessed", &self.unprocessed_len())
            .field("frame_len", &self.frame_len)
            .field("max_frame", &self.max_frame)
            .field("max_counted_frame", &self.max_counted_frame)
            .field("policy", &self.policy)
            .field("input", &self.input)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl Framer {
    /// A framer whose first frame ends with `terminator`.
    ///
    /// Fails as [`set_terminator`](Self::set_terminator) does, against the default
    /// [`max_counted_frame`](Self::max_counted_frame) ([`DEFAULT_MAX_COUNTED_FRAME`]): to
    /// stream a larger first count, start with any terminator, raise the bound, then set it.
    pub fn new(terminator: impl Into<Terminator>) -> Result<Self, Misuse> {
        let mut framer = Self::with_matcher(Matcher::Eof);
        framer.set_terminator(terminator)?;
        Ok(framer)
    }

    /// [`new`](Self::new) without the count bound, for the chat (see
    /// [`switch_to`](Self::switch_to)).
    pub(crate) fn unbounded(terminator: Terminator) -> Result<Self, Misuse> {
        let mut framer = Self::with_matcher(Matcher::Eof);
        framer.switch_to(terminator)?;
        Ok(framer)
    }

    fn with_matcher(matcher: Matcher) -> Self {
        Self {
            buf: BytesMut::new(),
            shared: false,
            search: Search {
                matcher,
                scan: 0,
                #[cfg(test)]
                scanned: 0,
            },
            frame_len: 0,
            max_frame: DEFAULT_MAX_FRAME,
            max_counted_frame: DEFAULT_MAX_COUNTED_FRAME,
            policy: OverLongPolicy::Fail,
            phase: Phase::Steady,
            eof_fired: false,
            input: Input::Open,
            consumed: 0,
            lent: None,
        }
    }

    /// Sets the longest delimited or until-EOF frame accepted, in bytes of content (terminator
    /// excluded). Counted frames have their own bound,
    /// [`max_counted_frame`](Self::max_counted_frame).
    #[must_use]
    pub fn with_max_frame(mut self, max_frame: usize) -> Self {
        self.max_frame = max_frame;
        self
    }

    /// Sets the largest count [`set_terminator`](Self::set_terminator) accepts, and so the
    /// largest counted frame [`poll_frame`](Self::poll_frame) holds whole.
    #[must_use]
    pub fn with_max_counted_frame(mut self, max: u64) -> Self {
        self.max_counted_frame = max;
        self
    }

    /// Sets what happens to an over-long frame.
    #[must_use]
    pub fn with_over_long_policy(mut self, policy: OverLongPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Changes the longest frame accepted; applies to the frame in progress too.
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.max_frame = max_frame;
    }

    /// Changes the largest count accepted; a count already set is not checked again.
    pub fn set_max_counted_frame(&mut self, max: u64) {
        self.max_counted_frame = max;
    }

    /// The largest count [`set_terminator`](Self::set_terminator) accepts.
    #[must_use]
    pub fn max_counted_frame(&self) -> u64 {
        self.max_counted_frame
    }

    /// Changes what happens to an over-long frame.
    pub fn set_over_long_policy(&mut self, policy: OverLongPolicy) {
        self.policy = policy;
    }

    /// The longest frame accepted, in bytes of content.
    #[must_use]
    #[inline]
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// What happens to an over-long frame.
    #[must_use]
    pub fn over_long_policy(&self) -> OverLongPolicy {
        self.policy
    }

    /// Sets what ends the next frame; applies to every byte not yet delivered.
    ///
    /// Setting the delimiter already in force is free (its searcher is kept). A new
    /// [`Terminator::Count`] starts counting from its value; `Count(0)` ends the current frame at
    /// once (an empty frame if nothing of it was delivered), an over-long frame being
    /// discarded ([`OverLongPolicy::Skip`]) included: the bytes after it are framed anew.
    ///
    /// Fails, leaving the terminator unchanged, with [`Misuse::EmptyDelimiter`], or with
    /// [`Misuse::CountOverLimit`] for a count above
    /// [`max_counted_frame`](Self::max_counted_frame): the count is the caller's choice, so it
    /// is refused here rather than failing later as if the peer had sent too much. (A framer
    /// used only through [`poll_event`](Self::poll_event) streams counts and may raise the
    /// bound as far as it likes.)
    pub fn set_terminator(&mut self, terminator: impl Into<Terminator>) -> Result<(), Misuse> {
        let t = terminator.into();
        if let Terminator::Count(count) = t {
            if count > self.max_counted_frame {
                return Err(Misuse::CountOverLimit {
                    count,
                    limit: self.max_counted_frame,
                });
            }
        }
        self.switch_to(t)
    }

    /// [`set_terminator`](Self::set_terminator) without the count bound: for the chat, whose
    /// collector applies the bound to the bytes it holds, so that a protocol streaming a large
    /// count is not refused.
    pub(crate) fn switch_to(&mut self, t: Terminator) -> Result<(), Misuse> {
        match t {
            Terminator::Delimiter(delimiter) => self.switch_to_delimiter(delimiter),
            Terminator::Count(n) => {
                self.switch_to_count(n);
                Ok(())
            }
            Terminator::Eof => {
                self.settle();
                self.use_matcher(Matcher::Eof);
                Ok(())
            }
        }
    }

    /// [`switch_to`](Self::switch_to) a delimiter, without a [`Terminator`] made and matched:
    /// protocols switch between a line and a count for every field (RESP, HTTP bodies).
    pub(crate) fn switch_to_delimiter(&mut self, delimiter: Bytes) -> Result<(), Misuse> {
        self.settle();
        if delimiter.is_empty() {
            return Err(Misuse::EmptyDelimiter);
        }
        if self.search.matcher.delimiter() == Some(&delimiter[..]) {
            return Ok(());
        }
        self.use_matcher(Matcher::for_delimiter(delimiter));
        Ok(())
    }

    /// [`switch_to`](Self::switch_to) a count.
    pub(crate) fn switch_to_count(&mut self, n: u64) {
        self.settle();
        if n == 0 && self.phase != Phase::Failed {
            // Zero more bytes: the frame is complete now (Python's `set_terminator(0)` would
            // never fire; its "no terminator" is `None`, our `Eof`). Owed once: a count that
            // runs down is `Count(0)` as well, and only an explicit one ends a frame.
            self.phase = Phase::OwesTerminator;
        }
        self.use_matcher(Matcher::Count(n));
    }

    fn use_matcher(&mut self, matcher: Matcher) {
        self.search.matcher = matcher;
        self.search.scan = 0;
    }

    /// The terminator in force. For a count, this is what remains of it (as Python's
    /// `get_terminator`): `Count(0)` once it has run down.
    #[must_use]
    pub fn terminator(&self) -> Terminator {
        match &self.search.matcher {
            Matcher::Byte(b) => {
                let i = usize::from(*b);
                Terminator::Delimiter(Bytes::from_static(&BYTE_VALUES[i..=i]))
            }
            Matcher::Seq(seq) => Terminator::Delimiter(seq.delim.clone()),
            Matcher::Count(n) => Terminator::Count(*n),
            Matcher::Eof => Terminator::Eof,
        }
    }

    /// Appends received bytes (one copy into the framer's buffer).
    ///
    /// Fails with [`Misuse::FeedAfterEof`] after [`feed_eof`](Self::feed_eof). Once the framer has
    /// failed, bytes are dropped: nothing more will be framed.
    #[inline]
    pub fn feed(&mut self, data: &[u8]) -> Result<(), Misuse> {
        self.settle();
        if self.input != Input::Open {
            return Err(Misuse::FeedAfterEof);
        }
        if self.phase != Phase::Failed {
            self.buf.extend_from_slice(data);
        }
        Ok(())
    }

    /// Lets a driver read straight into the framer's buffer: no copy.
    ///
    /// Reserves at least `reserve` bytes of spare capacity, then calls `read` with the buffer,
    /// which must only *append* (e.g. `tokio_util::io::poll_read_buf`, or a `read` into
    /// `chunk_mut()`); bytes it removes or changes before the end are framed wrongly. Returns
    /// what `read` returned. When the buffer is empty afterwards (the read found nothing and all
    /// input was consumed) its memory is released, so an idle connection holds no read buffer.
    ///
    /// Fails with [`Misuse::FeedAfterEof`], without calling `read`, after
    /// [`feed_eof`](Self::feed_eof).
    pub fn read_with<R>(
        &mut self,
        reserve: usize,
        read: impl FnOnce(&mut BytesMut) -> R,
    ) -> Result<R, Misuse> {
        let result = self.read_with_kept(reserve, read)?;
        if self.buf.is_empty() {
            self.release();
        }
        Ok(result)
    }

    /// [`read_with`](Self::read_with), keeping the buffer even if it is empty afterwards: for a
    /// driver that reads again at once, until the socket would block, and then calls
    /// [`release_if_delivered`](Self::release_if_delivered).
    pub(crate) fn read_with_kept<R>(
        &mut self,
        reserve: usize,
        read: impl FnOnce(&mut BytesMut) -> R,
    ) -> Result<R, Misuse> {
        self.settle();
        if self.input != Input::Open {
            return Err(Misuse::FeedAfterEof);
        }
        let before = self.buf.len();
        if self.buf.capacity() == 0 {
            pool::take_buffer(&mut self.buf, reserve);
            self.shared = false;
        } else {
            self.buf.reserve(reserve);
        }
        let result = read(&mut self.buf);
        if self.buf.len() < before {
            self.search.scan = 0;
        }
        if self.phase == Phase::Failed {
            self.buf.clear();
        }
        Ok(result)
    }

    /// Marks the end of the input: the peer closed its side. Idempotent.
    ///
    /// Held-back bytes (a partial delimiter) are then delivered as data, an [`Terminator::Eof`]
    /// terminator fires, and [`Event::End`] reports what was left unterminated.
    pub fn feed_eof(&mut self) {
        if self.input == Input::Open {
            self.input = Input::Ended;
        }
    }

    /// Takes every byte received but not yet delivered, for a protocol upgrade (STARTTLS,
    /// WebSocket, another framing stack): none is lost, none will be delivered twice.
    ///
    /// A partial delimiter held back is included. The framer stays usable for bytes fed later.
    pub fn take_unprocessed(&mut self) -> Bytes {
        self.settle();
        self.search.scan = 0;
        let len = self.buf.len();
        self.hand_out(len)
    }

    /// Bytes received but not yet delivered.
    #[must_use]
    pub fn unprocessed_len(&self) -> usize {
        self.buf.len() - self.consumed
    }

    /// Lets go of the buffer if every byte in it has been delivered, so that a connection
    /// waiting for its peer holds none (a driver may not read again until the peer sends
    /// more, so the release cannot wait for a read that finds nothing).
    pub(crate) fn release_if_delivered(&mut self) {
        if self.buf.len() == self.consumed && self.buf.capacity() != 0 {
            self.settle();
            self.release();
        }
    }

    /// The memory the buffer holds, in bytes.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Whether a delimiter ends the current frame (not a count, not the end of the stream).
    #[inline]
    pub(crate) fn delimits(&self) -> bool {
        self.search.matcher.delimiter().is_some()
    }

    /// What is left of the count in force, if a count is in force: what
    /// [`terminator`](Self::terminator) says, without building a [`Terminator`].
    #[inline]
    pub(crate) fn count_left(&self) -> Option<u64> {
        match self.search.matcher {
            Matcher::Count(n) => Some(n),
            _ => None,
        }
    }

    /// Whether a frame's end is known but not yet delivered.
    #[inline]
    pub(crate) fn owes_terminator(&self) -> bool {
        self.phase == Phase::OwesTerminator
    }

    /// If the terminator of the frame just delivered as data is owed, consumes it: what the
    /// next [`poll_event`](Self::poll_event) would have returned as [`Event::Terminator`].
    #[inline]
    pub(crate) fn take_owed_terminator(&mut self) -> bool {
        if self.phase == Phase::OwesTerminator {
            self.phase = Phase::Steady;
            self.frame_len = 0;
            true
        } else {
            false
        }
    }

    /// The first step of the slow paths: the error of a failed framer, else whether an owed
    /// terminator was taken (see [`take_owed_terminator`](Self::take_owed_terminator)).
    fn take_owed(&mut self) -> Result<bool, PeerError> {
        if self.phase == Phase::Failed {
            return Err(self.too_long());
        }
        Ok(self.take_owed_terminator())
    }

    /// Bytes of the current frame already delivered as [`Event::Data`].
    #[must_use]
    pub fn frame_len(&self) -> u64 {
        self.frame_len
    }

    /// Whether [`feed_eof`](Self::feed_eof) was called.
    #[must_use]
    pub fn is_eof(&self) -> bool {
        self.input != Input::Open
    }

    /// Whether the end of the input has been reported: nothing more will come out.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.input == Input::Finished
    }

    /// Whether the framer failed ([`OverLongPolicy::Fail`]) and will frame nothing more.
    #[must_use]
    pub fn is_failed(&self) -> bool {
        self.phase == Phase::Failed
    }

    /// No error, no owed terminator, not discarding: the state in which the fast paths apply.
    #[inline(always)]
    fn is_steady(&self) -> bool {
        self.phase == Phase::Steady
    }

    /// Splits off a frame of `len` bytes and drops the delimiter after it.
    #[inline(always)]
    fn split_frame(&mut self, len: usize) -> Bytes {
        let delim_len = self.delimiter_len();
        let frame = self.hand_out(len);
        self.buf.advance(delim_len);
        self.search.scan = 0;
        frame
    }

    /// Searches `buf[scan..]` for the delimiter; on a miss, records how far the search got.
    #[inline(always)]
    fn find(&mut self) -> Option<usize> {
        self.search.find(&self.buf)
    }

    /// Length of the longest suffix of the buffer that is a proper prefix of the delimiter:
    /// bytes that may yet turn out to be a terminator (Python's `find_prefix_at_end`).
    fn held_back(&self) -> usize {
        let Matcher::Seq(seq) = &self.search.matcher else {
            return 0;
        };
        let delim = &seq.delim;
        if self.input != Input::Open {
            return 0;
        }
        let tail = &self.buf[self.buf.len().saturating_sub(delim.len() - 1)..];
        let mut from = 0;
        while let Some(i) = memchr::memchr(delim[0], &tail[from..]) {
            let p = from + i;
            if delim.starts_with(&tail[p..]) {
                return tail.len() - p;
            }
            from = p + 1;
        }
        0
    }

    #[inline(always)]
    fn delimiter_len(&self) -> usize {
        self.search.matcher.delimiter().map_or(0, <[u8]>::len)
    }

    /// Bytes of the current frame that may still be delivered before `max_frame` is exceeded.
    #[inline(always)]
    fn room(&self) -> u64 {
        (self.max_frame as u64).saturating_sub(self.frame_len)
    }

    fn too_long(&self) -> PeerError {
        PeerError::FrameTooLong {
            limit: self.max_frame,
        }
    }

    fn over_long(&mut self) -> PeerError {
        let e = self.too_long();
        self.frame_len = 0;
        match self.policy {
            OverLongPolicy::Fail => {
                self.phase = Phase::Failed;
                self.buf = BytesMut::new();
            }
            OverLongPolicy::Skip => self.phase = Phase::Discarding,
        }
        e
    }

    /// Hands out the first `n` buffered bytes as a `Bytes`: split off the read buffer
    /// (zero-copy) when they are a large part of it, copied out when they are small (see
    /// [`KEPT_FRAME_RATIO`]).
    #[inline(always)]
    fn hand_out(&mut self, n: usize) -> Bytes {
        if n.saturating_mul(KEPT_FRAME_RATIO) < self.buf.capacity().max(MIN_RATIO_BASE) {
            let frame = Bytes::copy_from_slice(&self.buf[..n]);
            self.buf.advance(n);
            return frame;
        }
        self.shared = true;
        self.buf.split_to(n).freeze()
    }

    /// Lets go of the (empty) buffer: an idle connection holds none. One nothing else refers to
    /// is kept for the next read on this thread.
    fn release(&mut self) {
        if std::mem::take(&mut self.shared) {
            self.buf = BytesMut::new();
        } else {
            pool::give_buffer(&mut self.buf);
        }
    }

    /// Drops input of an over-long frame; `true` once its terminator has been passed.
    fn discard_step(&mut self) -> bool {
        match self.search.matcher {
            Matcher::Byte(_) | Matcher::Seq(_) => {
                if let Some(i) = self.find() {
                    let delim_len = self.delimiter_len();
                    self.buf.advance(i + delim_len);
                    self.search.scan = 0;
                    self.phase = Phase::Steady;
                    return true;
                }
                let drop = self.buf.len() - self.held_back();
                self.buf.advance(drop);
                self.search.scan = self.search.scan.saturating_sub(drop);
            }
            Matcher::Count(0) | Matcher::Eof => self.buf.clear(),
            Matcher::Count(remaining) => {
                let n = min(remaining, self.buf.len() as u64);
                self.buf.advance(n as usize);
                self.search.matcher = Matcher::Count(remaining - n);
                if n == remaining {
                    self.phase = Phase::Steady;
                    return true;
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests;
