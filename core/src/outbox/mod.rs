//! The producer FIFO: Python's `producer_fifo` and `initiate_send`, with vectored output, water
//! marks and a hard limit.

use std::fmt;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{Error, Misuse};
use crate::pool;
use crate::producer::Producer;
pub(crate) use queue::Boxed;
use queue::Queue;

mod queue;

/// Default high water mark: above it the connection stops reading (64 KiB, as Netty).
pub const DEFAULT_HIGH_WATER: usize = 64 * 1024;
/// Default low water mark: at or below it reading resumes (32 KiB, as Netty).
pub const DEFAULT_LOW_WATER: usize = 32 * 1024;
/// Default hard limit on queued bytes: 64 MiB.
pub const DEFAULT_OUTBOX_LIMIT: usize = 64 * 1024 * 1024;
/// Default copy threshold ([`Outbox::with_coalescing`]): pushes under 1 KiB are copied
/// together, larger ones stay zero-copy. Measured with `echo_bench sweep` (the manual's
/// [performance](crate::manual::performance) chapter): in
/// server CPU per echoed line, copying pushes under 1 KiB saves 15–20 % on 64-byte to 2 KiB
/// lines, and copying 8 KiB ones costs more than their slices.
pub const DEFAULT_COALESCE_BELOW: usize = 1024;

/// How many bytes to pull from producers for one batch of output, at most.
const PULL_TARGET: usize = 64 * 1024;
/// Consecutive empty chunks after which a producer is treated as exhausted, so a buggy producer
/// cannot keep a connection busy forever without output.
const MAX_EMPTY_CHUNKS: u32 = 1024;

/// One item of the queue: bytes kept as pushed, copies appended together, or a producer.
pub(crate) enum Item {
    Data(Bytes),
    /// Copies appended together: slices ([`Outbox::push_slice`]) and, with a coalescing
    /// threshold ([`Outbox::with_coalescing`]), small pushes. Never split into `Bytes`, so a
    /// written one is recycled.
    Copied(BytesMut),
    Producer(Box<dyn Producer + Send>),
}

impl Item {
    fn bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Data(b) => Some(b),
            Self::Copied(b) => Some(b),
            Self::Producer(_) => None,
        }
    }
}

/// Capacity of a buffer of copied small pushes.
const COPY_CHUNK: usize = 4096;

/// Unused room above which (and above the bytes it holds) a copy buffer is sealed as a copy of
/// its own size instead (see `Outbox::seal_tail`).
const SPARSE_COPY: usize = 256;

/// What a queued buffer or producer costs beyond its bytes, as counted against the water marks
/// and the hard limit: its slot in the queue, plus the heap header a shared `Bytes` (or a boxed
/// producer) carries and the allocator's rounding, estimated at 32 bytes. Without it a peer
/// that makes a protocol push one-byte buffers would hold some 60 bytes of memory for each
/// byte the limits count.
pub const ITEM_OVERHEAD: usize = std::mem::size_of::<Item>() + 32;

/// A FIFO of output: byte buffers and lazy producers, written with one vectored write per batch.
///
/// - [`push`](Self::push) queues a `Bytes`: runs of small pushes (under
///   [`DEFAULT_COALESCE_BELOW`] unless [`with_coalescing`](Self::with_coalescing) says
///   otherwise) are copied together into one buffer, larger ones stay as they are, unsplit;
///   each becomes one `IoSlice`.
/// - [`push_producer`](Self::push_producer) queues a producer, pulled only once everything ahead
///   of it has been written.
/// - [`poll_slices`](Self::poll_slices) fills a batch of `IoSlice`s for `writev`;
///   [`advance`](Self::advance) drops what a (possibly partial) write took.
/// - [`close_when_done`](Self::close_when_done): everything queued so far is written, then
///   [`is_done`](Self::is_done); later pushes are refused.
///
/// # Security
///
/// Bytes queued count towards water marks (default low [`DEFAULT_LOW_WATER`], high
/// [`DEFAULT_HIGH_WATER`]): above the high mark [`is_writable`](Self::is_writable) turns false and
/// a [`Chat`](crate::Chat) stops reading its peer, until the queue drains to the low mark. A push
/// that would take the queue past the hard limit (default [`DEFAULT_OUTBOX_LIMIT`], 64 MiB) fails
/// with [`Error::OutboxFull`], so a peer that never reads cannot make the process grow without end.
///
/// ```
/// use std::io::IoSlice;
/// use asynchat_core::Outbox;
///
/// let mut out = Outbox::new();
/// out.push("HTTP/1.1 200 OK\r\n".into())?;
/// out.push("Content-Length: 2\r\n\r\nhi".into())?;
/// // Two small pushes in a row: copied into one buffer, one slice.
/// let mut slices = [IoSlice::new(&[]); 8];
/// assert_eq!(out.poll_slices(&mut slices), 1);
/// out.advance(20); // the socket took 20 bytes
/// assert_eq!(out.queued_bytes(), 20);
/// # Ok::<(), asynchat_core::Error>(())
/// ```
pub struct Outbox {
    items: Queue,
    /// The copy buffer being filled: output after everything in `items`. Kept apart so that a
    /// copy (the common small push) costs a capacity check and a `memcpy`, not a walk to the
    /// back of the queue; moved into `items` when a push that is not copied comes after it.
    tail: BytesMut,
    queued: usize,
    /// What the queued items cost beyond their bytes: [`ITEM_OVERHEAD`] for each buffer and
    /// producer, and the unused room of each sealed copy buffer.
    overhead: usize,
    low: usize,
    high: usize,
    limit: usize,
    above_high: bool,
    closing: bool,
    /// Pushes shorter than this are copied into a shared buffer instead of queued as they are.
    /// (u32: a threshold of 4 GiB would make no sense, and every connection carries the field.)
    coalesce_below: u32,
    /// Bytes still offered before a barrier ([`set_barrier`](Self::set_barrier)), or
    /// [`NO_BARRIER`]. (u16: it sits in what would be padding, and a barrier is set behind a
    /// one-line reply.)
    barrier: u16,
}

/// [`Outbox::barrier`] when none is set.
const NO_BARRIER: u16 = u16::MAX;

impl Default for Outbox {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("items", &self.items.len())
            .field("tail", &self.tail.len())
            .field("queued", &self.queued)
            .field("overhead", &self.overhead)
            .field("low", &self.low)
            .field("high", &self.high)
            .field("limit", &self.limit)
            .field("closing", &self.closing)
            .finish()
    }
}

impl Outbox {
    /// An empty outbox with the default water marks and limit.
    #[must_use]
    pub fn new() -> Self {
        Self {
            items: Queue::default(),
            tail: BytesMut::new(),
            queued: 0,
            overhead: 0,
            low: DEFAULT_LOW_WATER,
            high: DEFAULT_HIGH_WATER,
            limit: DEFAULT_OUTBOX_LIMIT,
            above_high: false,
            closing: false,
            coalesce_below: DEFAULT_COALESCE_BELOW as u32,
            barrier: NO_BARRIER,
        }
    }

    /// Copies pushes shorter than `below` bytes together into shared buffers, instead of
    /// queuing each as its own slice (default [`DEFAULT_COALESCE_BELOW`]; 0: never).
    ///
    /// Each slice costs the kernel a segment in `writev`, which for small pushes (a line and
    /// its newline, say) costs more than copying them into one buffer; large buffers are better
    /// sent as they are. Pushes of `below` bytes or more are never copied, and neither is a small
    /// push alone between two that are not (a terminator after a long line): only runs of small
    /// pushes are copied together (`echo_bench sweep` measures the threshold).
    #[must_use]
    pub fn with_coalescing(mut self, below: usize) -> Self {
        self.coalesce_below = u32::try_from(below).unwrap_or(u32::MAX);
        self
    }

    /// Pushes shorter than this are copied together ([`with_coalescing`](Self::with_coalescing)).
    #[must_use]
    pub fn coalesce_below(&self) -> usize {
        self.coalesce_below as usize
    }

    /// Sets the water marks; `low` is clamped to at most `high`.
    #[must_use]
    pub fn with_water_marks(mut self, low: usize, high: usize) -> Self {
        self.set_water_marks(low, high);
        self
    }

    /// Sets the hard limit on queued bytes.
    #[must_use]
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Changes the water marks; `low` is clamped to at most `high`.
    pub fn set_water_marks(&mut self, low: usize, high: usize) {
        self.low = low.min(high);
        self.high = high;
        self.update_watermark();
    }

    /// Changes the hard limit on queued bytes (bytes already queued stay).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// The (low, high) water marks.
    #[must_use]
    pub fn water_marks(&self) -> (usize, usize) {
        (self.low, self.high)
    }

    /// The hard limit on queued bytes.
    #[must_use]
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Queues bytes. Empty ones are ignored.
    ///
    /// Fails with [`Error::OutboxFull`] past the hard limit and with
    /// [`Misuse::PushAfterClose`] after [`close_when_done`](Self::close_when_done); nothing is
    /// queued then.
    #[inline]
    pub fn push(&mut self, data: Bytes) -> Result<(), Error> {
        if data.is_empty() {
            // Nothing to queue, so no limit to pass (whatever the queue costs now).
            return self.check_open();
        }
        let below = self.coalesce_below as usize;
        if data.len() < below && !self.tail.is_empty() {
            self.admit(data.len(), 0)?;
            self.copy_in(&[&data], data.len());
        } else if data.len() < below
            && matches!(self.items.back(), Some(Item::Data(last)) if last.len() < below)
        {
            // The second small push in a row: both go into a copy buffer. A small push on its
            // own (a terminator between two large ones) stays as it is: a copy buffer for it
            // alone would cost more than its slice.
            self.admit(data.len(), 0)?;
            match self.items.pop_back() {
                Some(Item::Data(last)) => {
                    self.overhead -= ITEM_OVERHEAD;
                    self.copy_in(&[&last, &data], last.len() + data.len());
                    // The only push that can lower the cost: the marks may be crossed downwards.
                    self.update_watermark();
                }
                // Not reached (the match above saw a small `Data` last); kept total.
                other => {
                    if let Some(item) = other {
                        self.items.push_back(item);
                    }
                    self.copy_in(&[&data], data.len());
                }
            }
        } else {
            self.admit(data.len(), ITEM_OVERHEAD)?;
            self.seal_tail();
            self.enqueue(Item::Data(data));
        }
        self.note_growth();
        Ok(())
    }

    /// Queues a copy of borrowed bytes, appended to the output buffer the previous copies went
    /// to while it has room: a protocol that writes many small pieces of its own (a header line,
    /// a formatted number, a short frame) gets one contiguous slice, not one allocation and one
    /// `IoSlice` each. A slice that does not fit in the room left starts a new 4 KiB buffer (or
    /// one of its own size, if larger).
    ///
    /// Fails as [`push`](Self::push) does; nothing is queued then.
    #[inline]
    pub fn push_slice(&mut self, data: &[u8]) -> Result<(), Error> {
        self.push_slices(std::slice::from_ref(&data))
    }

    /// Queues a copy of several borrowed pieces back to back, as one
    /// [`push_slice`](Self::push_slice) of their concatenation would, with one check of the
    /// limits for all of them: for a reply built from parts (a frame and its terminator, a
    /// length line and a value).
    ///
    /// ```
    /// use asynchat_core::Outbox;
    ///
    /// let mut outbox = Outbox::new();
    /// outbox.push_slices(&[b"$5\r\n", b"hello", b"\r\n"])?;
    /// assert_eq!(outbox.queued_bytes(), 11);
    /// # Ok::<(), asynchat_core::Error>(())
    /// ```
    ///
    /// Fails as [`push`](Self::push) does; nothing is queued then.
    #[inline]
    pub fn push_slices(&mut self, parts: &[&[u8]]) -> Result<(), Error> {
        let len = parts
            .iter()
            .fold(0usize, |len, part| len.saturating_add(part.len()));
        if len == 0 {
            return self.check_open();
        }
        self.admit(len, 0)?;
        self.copy_in(parts, len);
        self.note_growth();
        Ok(())
    }

    /// Checks that `len` more bytes, costing `overhead` more besides, may be queued, and counts
    /// both.
    #[inline]
    fn admit(&mut self, len: usize, overhead: usize) -> Result<(), Error> {
        self.check_open()?;
        let queued = self.queued.saturating_add(len);
        let overhead = self.overhead.saturating_add(overhead);
        if queued.saturating_add(overhead) > self.limit {
            return Err(Error::OutboxFull { limit: self.limit });
        }
        self.queued = queued;
        self.overhead = overhead;
        Ok(())
    }

    /// Appends a copy of `parts` (`len` bytes in all) to the tail copy buffer, or to a new one.
    #[inline]
    fn copy_in(&mut self, parts: &[&[u8]], len: usize) {
        if len == 0 {
            return;
        }
        if self.tail.capacity() - self.tail.len() < len {
            self.new_tail(len);
        }
        for part in parts {
            self.tail.extend_from_slice(part);
        }
    }

    /// Queues the tail copy buffer (if it holds anything) and starts an empty one with room for
    /// `len` bytes at least. (An empty tail never holds memory: it is given up as it empties.)
    #[inline(never)]
    fn new_tail(&mut self, len: usize) {
        self.seal_tail();
        pool::take_buffer(&mut self.tail, COPY_CHUNK.max(len));
    }

    /// Moves what the tail copy buffer holds into the queue, so that a push not copied can go
    /// after it.
    #[inline]
    fn seal_tail(&mut self) {
        if self.tail.is_empty() {
            return;
        }
        // A buffer sealed mostly empty (a few small pushes between large ones: a length line and
        // a CRLF around each value of a reply) would hold, and be charged, its whole room: what
        // it holds moves to a buffer of its own size, and the room goes back to the pool for the
        // next copies.
        let tail = if copied_overhead(&self.tail) > self.tail.len().max(SPARSE_COPY) {
            let exact = BytesMut::from(&self.tail[..]);
            pool::give_buffer(&mut self.tail);
            exact
        } else {
            std::mem::take(&mut self.tail)
        };
        self.overhead += copied_overhead(&tail);
        self.enqueue(Item::Copied(tail));
    }

    #[inline]
    fn enqueue(&mut self, item: Item) {
        self.items.push_back(item);
    }

    /// Queues a producer, pulled once everything ahead of it is written.
    ///
    /// Fails with [`Misuse::PushAfterClose`] after [`close_when_done`](Self::close_when_done).
    ///
    /// A producer costs [`ITEM_OVERHEAD`] against the hard limit until it is exhausted (what it
    /// makes is counted as it is pulled): past the limit this fails with [`Error::OutboxFull`].
    pub fn push_producer(&mut self, producer: impl Producer + Send + 'static) -> Result<(), Error> {
        self.admit(0, ITEM_OVERHEAD)?;
        self.seal_tail();
        self.enqueue(Item::Producer(Box::new(producer)));
        self.note_growth();
        Ok(())
    }

    fn check_open(&self) -> Result<(), Error> {
        if self.closing {
            return Err(Misuse::PushAfterClose.into());
        }
        Ok(())
    }

    /// Marks the end of output: once everything queued is written, [`is_done`](Self::is_done).
    pub fn close_when_done(&mut self) {
        self.closing = true;
    }

    /// Whether [`close_when_done`](Self::close_when_done) was called.
    #[must_use]
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Whether the close was asked for and everything queued before it has been written.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.closing && self.is_empty()
    }

    /// Drops everything queued, producers included, and cancels
    /// [`close_when_done`](Self::close_when_done) (as Python's `discard_buffers`).
    pub fn discard(&mut self) {
        self.items.release();
        pool::give_buffer(&mut self.tail);
        self.queued = 0;
        self.overhead = 0;
        self.closing = false;
        self.barrier = NO_BARRIER;
        self.update_watermark();
    }

    /// Bytes queued and not yet written (output that producers have yet to make is not counted).
    #[must_use]
    pub fn queued_bytes(&self) -> usize {
        self.queued
    }

    /// The memory the queue holds, as the water marks and the hard limit count it: the bytes
    /// queued plus [`ITEM_OVERHEAD`] for each buffer and producer, and the unused room of the
    /// copy buffers waiting to be written.
    #[must_use]
    pub fn cost(&self) -> usize {
        self.queued + self.overhead
    }

    /// Whether nothing at all is left to write: no bytes, no producers.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && self.tail.is_empty()
    }

    /// False once the queue has grown above the high water mark, true again once it has drained
    /// to the low water mark.
    #[must_use]
    pub fn is_writable(&self) -> bool {
        !self.above_high
    }

    /// After output was added: only the high mark can have been crossed. (Whatever lowered
    /// `queued` or moved the marks updated the flag, so it is not set with `queued <= low`.)
    #[inline]
    fn note_growth(&mut self) {
        if self.cost() > self.high {
            self.above_high = true;
        }
    }

    #[inline]
    fn update_watermark(&mut self) {
        let cost = self.cost();
        if cost > self.high {
            self.above_high = true;
        } else if cost <= self.low {
            self.above_high = false;
        }
    }

    /// Fills `dst` with the next output, front first, and returns how many slices were filled
    /// (0: nothing to write now). Pulls producers at the front of the queue for up to 64 KiB.
    pub fn poll_slices<'a>(&'a mut self, dst: &mut [IoSlice<'a>]) -> usize {
        if dst.is_empty() {
            return 0;
        }
        self.pull(dst.len());
        if self.barrier != NO_BARRIER {
            let max = usize::from(self.barrier);
            return self.fill_upto(dst, max);
        }
        self.fill(dst)
    }

    /// Offers nothing past the bytes queued now until [`lift_barrier`](Self::lift_barrier):
    /// for a chat switching to TLS, whose plaintext must end where the switch is. `false`, and
    /// no barrier, if more than 65 534 bytes or a producer are queued.
    pub(crate) fn set_barrier(&mut self) -> bool {
        // A producer's output is counted only as it is pulled, so a barrier counted in bytes
        // could not tell its output from what was queued behind it.
        if self
            .items
            .iter()
            .any(|item| matches!(item, Item::Producer(_)))
        {
            return false;
        }
        match u16::try_from(self.queued) {
            Ok(queued) if queued != NO_BARRIER => {
                self.barrier = queued;
                true
            }
            _ => false,
        }
    }

    /// Bytes still offered before the barrier, if one is set.
    pub(crate) fn barrier_left(&self) -> Option<u16> {
        (self.barrier != NO_BARRIER).then_some(self.barrier)
    }

    /// Offers everything again.
    pub(crate) fn lift_barrier(&mut self) {
        self.barrier = NO_BARRIER;
    }

    /// [`fill`](Self::fill), the slices holding at most `max` bytes (a barrier's).
    #[cold]
    fn fill_upto<'a>(&'a self, dst: &mut [IoSlice<'a>], max: usize) -> usize {
        if max == 0 {
            return 0;
        }
        let mut left = max;
        let mut n = 0;
        for data in self
            .items
            .iter()
            .map(Item::bytes)
            .chain(std::iter::once(Some(&self.tail[..])))
        {
            let Some(data) = data else {
                return n;
            };
            if data.is_empty() {
                continue;
            }
            let take = data.len().min(left);
            dst[n] = IoSlice::new(&data[..take]);
            n += 1;
            left -= take;
            if left == 0 || n == dst.len() {
                return n;
            }
        }
        n
    }

    /// Fills `dst` from the queue as [`poll_slices`](Self::poll_slices) does, producers pulled.
    #[inline(always)]
    fn fill<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for item in self.items.iter() {
            let Some(data) = item.bytes() else {
                // A producer not pulled yet: what follows it, the tail included, must wait.
                return n;
            };
            dst[n] = IoSlice::new(data);
            n += 1;
            if n == dst.len() {
                return n;
            }
        }
        if !self.tail.is_empty() {
            dst[n] = IoSlice::new(&self.tail);
            n += 1;
        }
        n
    }

    /// Pulls the producers at the front of the queue as [`poll_slices`](Self::poll_slices) with
    /// `max_slices` slices would, without filling any: so that a caller can learn that the last
    /// producer has run out (the queue is then empty) before it lends the output.
    pub(crate) fn pull_front(&mut self, max_slices: usize) {
        if max_slices != 0 {
            self.pull(max_slices);
        }
    }

    /// Turns the output of the producers at the front of the queue into bytes, up to
    /// `max_chunks` chunks or [`PULL_TARGET`] bytes.
    fn pull(&mut self, max_chunks: usize) {
        let mut at = 0;
        let mut pulled = 0;
        let mut empties = 0;
        while at < max_chunks && pulled < PULL_TARGET {
            let Some(Item::Producer(producer)) = self.items.get_mut(at) else {
                break;
            };
            match producer.more() {
                Some(chunk) if chunk.is_empty() => {
                    empties += 1;
                    if empties == MAX_EMPTY_CHUNKS {
                        self.items.remove(at);
                        self.overhead -= ITEM_OVERHEAD;
                    }
                }
                Some(chunk) => {
                    empties = 0;
                    pulled += chunk.len();
                    self.queued = self.queued.saturating_add(chunk.len());
                    self.overhead += ITEM_OVERHEAD;
                    self.items.insert(at, Item::Data(chunk));
                    at += 1;
                }
                None => {
                    self.items.remove(at);
                    self.overhead -= ITEM_OVERHEAD;
                }
            }
        }
        if self.items.is_empty() {
            // The last producer ran out: the queue is drained, as after a write.
            self.items.release();
        }
        self.update_watermark();
    }

    /// Drops the first `n` bytes of output, after a write took them. Counts beyond what is
    /// queued are ignored.
    pub fn advance(&mut self, mut n: usize) {
        if self.barrier != NO_BARRIER {
            self.barrier = self
                .barrier
                .saturating_sub(u16::try_from(n).unwrap_or(u16::MAX));
        }
        while n > 0 {
            let len = match self.items.front_mut() {
                Some(Item::Data(front)) if front.len() > n => {
                    front.advance(n);
                    self.queued -= n;
                    break;
                }
                Some(Item::Copied(front)) if front.len() > n => {
                    front.advance(n);
                    self.queued -= n;
                    break;
                }
                Some(Item::Data(front)) => front.len(),
                Some(Item::Copied(front)) => front.len(),
                Some(Item::Producer(_)) => break,
                None if self.tail.len() > n => {
                    self.tail.advance(n);
                    self.queued -= n;
                    break;
                }
                None => {
                    self.queued -= self.tail.len();
                    // Given back whole (the pool clears it), not advanced: its whole
                    // allocation stays usable.
                    pool::give_buffer(&mut self.tail);
                    break;
                }
            };
            n -= len;
            self.queued -= len;
            match self.items.pop_front() {
                Some(Item::Copied(mut written)) => {
                    self.overhead -= copied_overhead(&written);
                    // A copy sealed at its own small size would take one of the pool's few
                    // slots from the buffers worth keeping: it goes back to the allocator.
                    if written.capacity() >= COPY_CHUNK {
                        pool::give_buffer(&mut written);
                    }
                }
                Some(_) => self.overhead -= ITEM_OVERHEAD,
                None => {}
            }
        }
        if self.items.is_empty() {
            // An idle connection should not keep the queue's memory.
            self.items.release();
        }
        self.update_watermark();
    }
}

/// What a sealed copy buffer costs beyond its bytes: its unused room (which writing it does not
/// change: advancing a `BytesMut` takes from its length and its capacity alike).
fn copied_overhead(buf: &BytesMut) -> usize {
    buf.capacity() - buf.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::producer::{from_fn, SimpleProducer};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn batch(out: &mut Outbox, max: usize) -> Vec<u8> {
        let mut slices = vec![IoSlice::new(&[]); max];
        let n = out.poll_slices(&mut slices);
        slices[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    /// Writes everything, `per_write` bytes at a time, as a socket taking partial writes would.
    fn write_all(out: &mut Outbox, per_write: usize) -> Vec<u8> {
        let mut written = Vec::new();
        loop {
            let pending = batch(out, 4);
            if pending.is_empty() {
                return written;
            }
            let n = per_write.min(pending.len());
            written.extend_from_slice(&pending[..n]);
            out.advance(n);
        }
    }

    #[test]
    fn vectored_batch_neither_copies_nor_splits() {
        let big = Bytes::from(vec![1u8; 1 << 20]);
        let mut out = Outbox::new().with_coalescing(0);
        out.push(Bytes::from_static(b"a")).unwrap();
        out.push(Bytes::from_static(b"bc")).unwrap();
        out.push(big.clone()).unwrap();
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(out.poll_slices(&mut slices), 3);
        assert_eq!(slices[2].as_ptr(), big.as_ptr());
        assert_eq!(slices[2].len(), 1 << 20);
        // Only as many slices as offered.
        let mut two = [IoSlice::new(&[]); 2];
        assert_eq!(out.poll_slices(&mut two), 2);
    }

    #[test]
    fn partial_writes_preserve_order_and_bytes() {
        let mut out = Outbox::new();
        let mut want = Vec::new();
        for i in 0..50u8 {
            let chunk = vec![i; usize::from(i) * 37 + 1];
            want.extend_from_slice(&chunk);
            out.push(Bytes::from(chunk)).unwrap();
        }
        out.push_producer(SimpleProducer::new(vec![9u8; 3000], 100))
            .unwrap();
        want.extend_from_slice(&[9u8; 3000]);
        out.push(Bytes::from_static(b"end")).unwrap();
        want.extend_from_slice(b"end");
        assert_eq!(write_all(&mut out, 997), want);
        assert_eq!(out.queued_bytes(), 0);
        assert!(out.is_empty());
    }

    #[test]
    fn producers_are_pulled_only_when_the_queue_ahead_drains() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let mut left = 3;
        let mut out = Outbox::new();
        out.push(Bytes::from_static(b"head")).unwrap();
        out.push_producer(from_fn(move || {
            seen.fetch_add(1, Ordering::SeqCst);
            left -= 1;
            (left >= 0).then(|| Bytes::from_static(b"p"))
        }))
        .unwrap();
        assert_eq!(batch(&mut out, 8), b"head");
        assert_eq!(calls.load(Ordering::SeqCst), 0, "pulled too early");
        out.advance(4);
        assert_eq!(batch(&mut out, 8), b"ppp");
        out.advance(3);
        assert!(out.is_empty());
    }

    #[test]
    fn water_marks_have_hysteresis() {
        // The marks count each buffer's overhead too.
        let o = ITEM_OVERHEAD;
        let mut out = Outbox::new()
            .with_coalescing(0)
            .with_water_marks(o + 4, o + 8);
        out.push(Bytes::from_static(b"12345678")).unwrap();
        assert!(out.is_writable(), "at the high mark is still fine");
        out.push(Bytes::from_static(b"9")).unwrap();
        assert!(!out.is_writable());
        out.advance(4);
        assert_eq!(out.cost(), 2 * o + 5);
        assert!(!out.is_writable(), "two buffers queued: above low");
        out.advance(4);
        assert_eq!(out.cost(), o + 1);
        assert!(out.is_writable());
    }

    #[test]
    fn hard_limit_is_a_typed_error_and_queues_nothing() {
        let o = ITEM_OVERHEAD;
        let mut out = Outbox::new().with_limit(o + 10);
        out.push(Bytes::from_static(b"123456")).unwrap();
        assert_eq!(
            out.push(Bytes::from_static(b"12345")),
            Err(Error::OutboxFull { limit: o + 10 })
        );
        assert_eq!(out.queued_bytes(), 6);
        assert_eq!(out.cost(), o + 6);
    }

    #[test]
    fn the_limit_counts_what_tiny_buffers_really_cost() {
        let limit = 64 * 1024;
        // Tiny pushes each kept as a buffer of their own (no copying, which would pack them).
        let mut out = Outbox::new().with_coalescing(0).with_limit(limit);
        let mut pushed = 0;
        while out.push(Bytes::from(vec![b'x'])).is_ok() {
            pushed += 1;
        }
        assert_eq!(pushed, limit / (ITEM_OVERHEAD + 1), "one-byte buffers");
        assert!(out.cost() <= limit);
        // Producers count too, and leave the count once exhausted.
        let mut out = Outbox::new().with_limit(3 * ITEM_OVERHEAD);
        for _ in 0..3 {
            out.push_producer(crate::producer::SimpleProducer::new(Bytes::new(), 16))
                .unwrap();
        }
        assert_eq!(
            out.push_producer(crate::producer::SimpleProducer::new(Bytes::new(), 16)),
            Err(Error::OutboxFull {
                limit: 3 * ITEM_OVERHEAD
            })
        );
        assert_eq!(batch(&mut out, 8), b"");
        assert_eq!(out.cost(), 0, "exhausted producers cost nothing");
        // Copied pushes cost their bytes, and a sealed copy buffer (sealed by a push kept as it
        // is) its unused room; one sealed mostly empty is moved to a buffer of its own size.
        let mut out = Outbox::new().with_coalescing(0);
        out.push_slice(b"ab").unwrap();
        assert_eq!(out.cost(), 2, "the buffer being filled is not charged");
        out.push(Bytes::from_static(b"zero-copy")).unwrap();
        assert_eq!(
            out.cost(),
            2 + 9 + ITEM_OVERHEAD,
            "no room held for two bytes"
        );
        let all = write_all(&mut out, 3);
        assert_eq!(all, b"abzero-copy");
        assert_eq!(out.cost(), 0);
        let full = vec![b'f'; COPY_CHUNK - 100];
        out.push_slice(&full).unwrap();
        out.push(Bytes::from_static(b"zero-copy")).unwrap();
        assert_eq!(
            out.cost(),
            full.len() + 9 + ITEM_OVERHEAD + 100,
            "a full one's room"
        );
        assert_eq!(write_all(&mut out, 1000).len(), full.len() + 9);
        assert_eq!(out.cost(), 0);
    }

    #[test]
    fn close_when_done_refuses_later_pushes_and_discard_cancels_it() {
        let mut out = Outbox::new();
        out.push(Bytes::from_static(b"bye")).unwrap();
        out.close_when_done();
        assert!(!out.is_done());
        assert_eq!(
            out.push(Bytes::from_static(b"late")),
            Err(Error::Misuse(Misuse::PushAfterClose))
        );
        out.advance(3);
        assert!(out.is_done());
        out.discard();
        assert!(!out.is_closing());
        out.push(Bytes::from_static(b"again")).unwrap();
    }

    #[test]
    fn endless_empty_producer_is_dropped() {
        let mut out = Outbox::new();
        out.push_producer(from_fn(|| Some(Bytes::new()))).unwrap();
        assert!(batch(&mut out, 4).is_empty());
        assert!(out.is_empty());
    }

    #[test]
    fn coalescing_copies_small_pushes_into_one_slice_and_keeps_large_ones() {
        let big = Bytes::from(vec![b'B'; 1000]);
        let mut out = Outbox::new().with_coalescing(64);
        let mut want = Vec::new();
        for i in 0..100u8 {
            let line = vec![b'a' + i % 26; 63];
            out.push(Bytes::from(line.clone())).unwrap();
            out.push(Bytes::from_static(b"\n")).unwrap();
            want.extend_from_slice(&line);
            want.push(b'\n');
        }
        out.push(big.clone()).unwrap();
        want.extend_from_slice(&big);
        out.push(Bytes::from_static(b"end")).unwrap();
        want.extend_from_slice(b"end");
        let mut slices = [IoSlice::new(&[]); 64];
        let n = out.poll_slices(&mut slices);
        // 6400 small bytes fill two 4 KiB buffers; the large push stays its own, uncopied slice.
        assert_eq!(n, 4);
        assert_eq!(slices[2].as_ptr(), big.as_ptr());
        assert_eq!(out.queued_bytes(), want.len());
        assert_eq!(write_all(&mut out, 333), want);
        assert!(out.is_empty());
    }

    #[test]
    fn a_small_push_alone_between_large_ones_is_not_copied() {
        // A line over the threshold and its one-byte terminator, again and again: copying the
        // terminator alone would take a copy buffer (and count its unused room) per byte.
        let mut out = Outbox::new().with_coalescing(256);
        let line = Bytes::from(vec![b'x'; 512]);
        let newline = Bytes::from_static(b"\n");
        for _ in 0..16 {
            out.push(line.clone()).unwrap();
            out.push(newline.clone()).unwrap();
        }
        assert_eq!(out.queued_bytes(), 16 * 513);
        assert_eq!(out.cost(), 16 * 513 + 32 * ITEM_OVERHEAD);
        let mut slices = [IoSlice::new(&[]); 64];
        assert_eq!(out.poll_slices(&mut slices), 32);
        assert_eq!(
            slices[1].as_ptr(),
            newline.as_ptr(),
            "the terminator as pushed"
        );
        // Two small pushes in a row: the second joins the first in one copy buffer.
        let mut out = Outbox::new().with_coalescing(256);
        out.push(line.clone()).unwrap();
        out.push(Bytes::from_static(b"ab")).unwrap();
        out.push(Bytes::from_static(b"cd")).unwrap();
        out.push(line.clone()).unwrap();
        assert_eq!(out.poll_slices(&mut slices), 3);
        assert_eq!(&*slices[1], b"abcd");
        let mut want = line.to_vec();
        want.extend_from_slice(b"abcd");
        want.extend_from_slice(&line);
        assert_eq!(write_all(&mut out, 100), want);
        assert_eq!(out.cost(), 0);
    }

    #[test]
    fn pushed_slices_share_one_buffer_and_interleave_with_zero_copy_pushes() {
        // No coalescing: `push` stays zero-copy, `push_slice` copies (it must).
        let mut out = Outbox::new().with_coalescing(0);
        let shared = Bytes::from(vec![b'S'; 100]);
        let mut want = Vec::new();
        for i in 0..50u8 {
            out.push_slice(&[b'a' + i % 26; 40]).unwrap();
            out.push_slice(b"\r\n").unwrap();
            want.extend_from_slice(&[b'a' + i % 26; 40]);
            want.extend_from_slice(b"\r\n");
        }
        out.push(shared.clone()).unwrap();
        want.extend_from_slice(&shared);
        out.push_slice(b"tail").unwrap();
        want.extend_from_slice(b"tail");
        let big = vec![b'L'; 5000];
        out.push_slice(&big).unwrap();
        want.extend_from_slice(&big);
        let mut slices = [IoSlice::new(&[]); 64];
        let n = out.poll_slices(&mut slices);
        // 2100 copied bytes in one buffer, the shared push as is, then "tail" in a new buffer
        // (copies never go ahead of a zero-copy push), and 5000 bytes in a buffer of their own.
        assert_eq!(
            n,
            4,
            "{:?}",
            slices[..n].iter().map(|s| s.len()).collect::<Vec<_>>()
        );
        assert_eq!(slices[0].len(), 2100);
        assert_eq!(slices[1].as_ptr(), shared.as_ptr());
        assert_eq!(slices[2].len(), 4);
        assert_eq!(slices[3].len(), 5000);
        assert_eq!(out.queued_bytes(), want.len());
        assert_eq!(write_all(&mut out, 777), want);
        assert!(out.is_empty());
    }

    #[test]
    fn pushed_slices_obey_the_limit_and_the_close() {
        let mut out = Outbox::new().with_limit(10);
        out.push_slice(b"0123456789").unwrap();
        assert!(matches!(
            out.push_slice(b"x"),
            Err(Error::OutboxFull { limit: 10 })
        ));
        assert_eq!(out.queued_bytes(), 10, "a refused slice is not queued");
        out.close_when_done();
        assert!(
            out.push_slice(b"").is_err(),
            "nothing after close_when_done"
        );
    }

    #[test]
    fn pieces_are_copied_back_to_back_and_refused_whole() {
        let mut out = Outbox::new().with_limit(10);
        out.push_slices(&[b"ab", b"", b"c"]).unwrap();
        assert!(matches!(
            out.push_slices(&[b"defg", b"hijk"]),
            Err(Error::OutboxFull { limit: 10 })
        ));
        assert_eq!(
            out.queued_bytes(),
            3,
            "a refused push queues none of its pieces"
        );
        out.push_slices(&[b"defg", b"hij"]).unwrap();
        let mut slices = [IoSlice::new(&[]); 4];
        assert_eq!(out.poll_slices(&mut slices), 1, "one buffer");
        assert_eq!(&*slices[0], b"abcdefghij");
        out.close_when_done();
        assert!(
            out.push_slices(&[]).is_err(),
            "nothing after close_when_done"
        );
    }

    #[test]
    fn over_advance_is_ignored() {
        let mut out = Outbox::new();
        out.push(Bytes::from_static(b"ab")).unwrap();
        out.advance(10);
        assert_eq!(out.queued_bytes(), 0);
        assert!(out.is_empty());
    }
}
