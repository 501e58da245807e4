//! Memory kept per thread for the next connection to need it: every pool the core has.
//!
//! - **Buffers.** A connection gives up its read buffer and its output copy buffer as soon as
//!   they empty, so that an idle connection holds neither. A busy request/response connection
//!   therefore empties both on every event, and would pay a `malloc`/`free` pair for each (4 KiB
//!   buffers are above the allocator's per-thread caches). Buffers given up here are taken back
//!   by the next connection on the same thread that needs one: a handful per thread, whatever
//!   the number of connections.
//! - **Output queues.** An outbox gives up its queue whenever it drains, and a busy connection
//!   would otherwise regrow one (4, 8, 16... slots) on every event: one emptied queue is kept.
//! - **Read scratch.** A stream that reads only into initialised memory (`futures-io`,
//!   `std::io::Read`) would have each connection's read reservation zeroed before every read
//!   (a memset of 4 KiB or more for lines of a few dozen bytes); [`read_initialized`] reads into
//!   one buffer per thread, zeroed once, and copies in only what arrived.
//!
//! Every pool is reached with `try_with`/`try_borrow`: a thread being torn down, or a read that
//! drives another connection on the same thread, gets fresh memory instead of a panic.

use std::cell::{Cell, RefCell};
use std::io;
use std::task::Poll;

use bytes::BytesMut;

use crate::outbox::Boxed;

/// Buffers kept per thread.
const SLOTS: usize = 4;

/// Larger buffers go back to the allocator: a chatty connection should not keep one.
const MAX_KEPT: usize = 64 * 1024;

/// Buffers given back with less capacity than this get their start moved back first (the
/// smallest buffer the connections ask for is 4 KiB).
const RECLAIM_BELOW: usize = 4096;

thread_local! {
    static SPARE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// Puts into `dst` (which should hold no memory: it is dropped) an empty buffer with room for at
/// least `capacity` bytes and at most four times that (so a connection that then goes idle
/// mid-frame does not sit on a buffer far larger than it asked for): a spare one if this thread
/// has one that fits, else a new one.
///
/// Writes into its owner's place rather than returning the buffer, for the reason [`give_buffer`]
/// takes one by reference.
pub(crate) fn take_buffer(dst: &mut BytesMut, capacity: usize) {
    let fits = |b: &BytesMut| (capacity..=capacity.saturating_mul(4)).contains(&b.capacity());
    let found = SPARE.with(|spare| {
        let Ok(mut spare) = spare.try_borrow_mut() else {
            return false;
        };
        // The buffer given back last is the likeliest fit (a connection takes back what it
        // gave up in its previous event): popped without a search.
        let at = if spare.last().is_some_and(fits) {
            spare.len() - 1
        } else {
            match spare.iter().rposition(fits) {
                Some(at) => at,
                None => return false,
            }
        };
        *dst = spare.swap_remove(at);
        true
    });
    if found {
        // Cannot allocate: a spare buffer is unique and empty, so this only moves its start
        // back to the beginning of its allocation.
        dst.reserve(capacity);
    } else {
        *dst = BytesMut::with_capacity(capacity);
    }
}

/// Takes `buf` (leaving it empty, without memory) and keeps it for reuse on this thread if
/// there is room; otherwise frees it.
///
/// Only worth it for a buffer whose memory the caller owns alone (no `Bytes` split off it still
/// alive): a shared one would be replaced, not reused, by the `take` that got it.
///
/// Takes the buffer by reference and moves it straight from its owner into the pool: a buffer
/// moved out first, into a temporary, was read back (in 16-byte halves) right after being
/// written (in 8-byte words), a store-forwarding stall that made this the costliest step of
/// giving a buffer back.
pub(crate) fn give_buffer(buf: &mut BytesMut) {
    if buf.capacity() < RECLAIM_BELOW {
        // A buffer advanced past what was written or read has its start moved back, so that its
        // whole allocation counts (and is offered) again. Its owners clear rather than advance
        // a buffer they empty, so this is rare.
        buf.clear();
        let _ = buf.try_reclaim(buf.capacity() + 1);
    }
    let cap = buf.capacity();
    if cap == 0 || cap > MAX_KEPT {
        *buf = BytesMut::new();
        return;
    }
    // A thread being torn down has no spares left to keep: the buffer is dropped then.
    let kept = SPARE
        .try_with(|spare| {
            let Ok(mut spare) = spare.try_borrow_mut() else {
                return false;
            };
            if spare.len() >= SLOTS {
                return false;
            }
            spare.push(std::mem::take(buf));
            if let Some(last) = spare.last_mut() {
                last.clear();
            }
            true
        })
        .unwrap_or(false);
    if !kept {
        *buf = BytesMut::new();
    }
}

/// Queues of more slots than this go back to the allocator rather than to the spare slot.
const MAX_SPARE_SLOTS: usize = 256;

thread_local! {
    static SPARE_QUEUE: Cell<Option<Boxed>> = const { Cell::new(None) };
}

/// An empty output queue: this thread's spare one, if any.
pub(crate) fn take_queue() -> Boxed {
    SPARE_QUEUE
        .try_with(Cell::take)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Keeps an (empty) queue as this thread's spare one, unless it is large or there is one.
pub(crate) fn give_queue(queue: Boxed) {
    if queue.capacity() > MAX_SPARE_SLOTS || !queue.is_empty() {
        return;
    }
    let _ = SPARE_QUEUE.try_with(|spare| {
        let kept = spare.take();
        spare.set(kept.or(Some(queue)));
    });
}

/// The most one [`read_initialized`] takes: the core's largest read reservation by default.
const SCRATCH: usize = 64 * 1024;

thread_local! {
    static SCRATCH_BUF: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Reads with `read`, which fills a slice of initialised memory, into `buf`'s spare capacity:
/// for a driver whose stream cannot read into uninitialised memory (`futures-io`'s
/// `poll_read`, `std::io::Read`).
///
/// `read` is given a slice of this thread's scratch buffer as long as `buf`'s spare capacity
/// (at least 1 byte, at most 64 KiB); the bytes it reports are appended to `buf`. A result of
/// `Ready(Ok(n))` with `n` under the slice's length means the stream held no more. Without
/// this, a driver would zero each connection's reservation before every read, or need
/// `unsafe` to skip it.
///
/// ```
/// use std::io::Read;
/// use std::task::Poll;
/// use asynchat_core::{driver::read_initialized, BytesMut};
///
/// let mut input: &[u8] = b"PING\r\n";
/// let mut buf = BytesMut::with_capacity(4096);
/// let got = read_initialized(&mut buf, |scratch| Poll::Ready(input.read(scratch)));
/// assert!(matches!(got, Poll::Ready(Ok(6))));
/// assert_eq!(&buf[..], b"PING\r\n");
/// ```
pub fn read_initialized(
    buf: &mut BytesMut,
    read: impl FnOnce(&mut [u8]) -> Poll<io::Result<usize>>,
) -> Poll<io::Result<usize>> {
    let want = (buf.capacity() - buf.len()).clamp(1, SCRATCH);
    // Taken, not borrowed: a read that drives another connection on this thread gets a buffer
    // of its own instead of a conflict.
    let mut scratch = SCRATCH_BUF.try_with(Cell::take).unwrap_or_default();
    if scratch.len() < want {
        scratch.resize(SCRATCH, 0);
    }
    let result = read(&mut scratch[..want]);
    if let Poll::Ready(Ok(n)) = &result {
        // A reader that claims more than it was given has filled only the slice.
        buf.extend_from_slice(&scratch[..(*n).min(want)]);
    }
    let _ = SCRATCH_BUF.try_with(|kept| kept.set(scratch));
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::Item;
    use std::collections::VecDeque;

    /// Tests share a thread when run with `--test-threads=1`.
    fn empty_pool() {
        SPARE.with(|s| s.borrow_mut().clear());
    }

    #[test]
    fn a_buffer_given_back_is_taken_again_with_its_allocation() {
        empty_pool();
        let mut buf = BytesMut::with_capacity(4096);
        buf.extend_from_slice(b"some bytes");
        let ptr = buf.as_ptr();
        give_buffer(&mut buf);
        let mut again = BytesMut::new();
        take_buffer(&mut again, 4096);
        assert_eq!(again.as_ptr(), ptr, "the same allocation comes back");
        assert!(again.is_empty());
        assert!(again.capacity() >= 4096);
    }

    #[test]
    fn an_advanced_buffer_comes_back_whole() {
        empty_pool();
        let mut buf = BytesMut::with_capacity(4096);
        buf.extend_from_slice(&[7; 1000]);
        let _ = buf.split_to(0);
        bytes::Buf::advance(&mut buf, 1000);
        give_buffer(&mut buf);
        let mut again = BytesMut::new();
        take_buffer(&mut again, 4096);
        assert!(again.capacity() >= 4096, "capacity {}", again.capacity());
    }

    #[test]
    fn buffers_far_larger_than_asked_for_are_not_handed_out() {
        empty_pool();
        give_buffer(&mut BytesMut::with_capacity(64 * 1024));
        let mut small = BytesMut::new();
        take_buffer(&mut small, 4096);
        assert!(
            small.capacity() < 64 * 1024,
            "capacity {}",
            small.capacity()
        );
        let mut large = BytesMut::new();
        take_buffer(&mut large, 64 * 1024);
        assert!(large.capacity() >= 64 * 1024);
    }

    #[test]
    fn a_fitting_buffer_is_found_behind_one_that_does_not_fit() {
        empty_pool();
        let mut small = BytesMut::with_capacity(4096);
        let ptr = small.as_ptr();
        give_buffer(&mut small);
        give_buffer(&mut BytesMut::with_capacity(64 * 1024));
        let mut again = BytesMut::new();
        take_buffer(&mut again, 4096);
        assert_eq!(
            again.as_ptr(),
            ptr,
            "the earlier, fitting buffer comes back"
        );
        let mut large = BytesMut::new();
        take_buffer(&mut large, 64 * 1024);
        assert!(
            large.capacity() >= 64 * 1024,
            "and the large one stays for a large ask"
        );
    }

    #[test]
    fn an_emptied_queue_is_reused_and_a_large_one_is_not_kept() {
        let _ = take_queue();
        let mut queue = Box::new(VecDeque::with_capacity(16));
        queue.push_back(Item::Copied(BytesMut::new()));
        queue.clear();
        let ptr = queue.as_slices().0.as_ptr();
        give_queue(queue);
        let again = take_queue();
        assert_eq!(
            again.as_slices().0.as_ptr(),
            ptr,
            "the same allocation comes back"
        );
        assert!(take_queue().capacity() == 0, "kept once, not twice");
        give_queue(Box::new(VecDeque::with_capacity(MAX_SPARE_SLOTS + 1)));
        assert_eq!(take_queue().capacity(), 0, "a large queue is freed");
    }

    #[test]
    fn a_scratch_read_appends_only_what_arrived_and_asks_for_the_reservation() {
        let mut buf = BytesMut::with_capacity(100);
        buf.extend_from_slice(b"ab");
        let room = buf.capacity() - buf.len();
        let mut asked = 0;
        let got = read_initialized(&mut buf, |scratch| {
            asked = scratch.len();
            scratch[..3].copy_from_slice(b"cde");
            Poll::Ready(Ok(3))
        });
        assert!(matches!(got, Poll::Ready(Ok(3))));
        assert_eq!(asked, room);
        assert_eq!(&buf[..], b"abcde");
        // A reader that lies about its count cannot make the buffer take more than it gave.
        let mut buf = BytesMut::with_capacity(8);
        let _ = read_initialized(&mut buf, |_| Poll::Ready(Ok(usize::MAX)));
        assert!(buf.len() <= 8 && buf.len() <= SCRATCH);
        // Pending and errors leave the buffer alone.
        let mut buf = BytesMut::with_capacity(8);
        let got = read_initialized(&mut buf, |_| Poll::Pending);
        assert!(got.is_pending() && buf.is_empty());
        let got = read_initialized(&mut buf, |_| Poll::Ready(Err(io::ErrorKind::Other.into())));
        assert!(matches!(got, Poll::Ready(Err(_))) && buf.is_empty());
    }

    #[test]
    fn at_most_a_few_buffers_are_kept_per_thread() {
        empty_pool();
        for _ in 0..SLOTS * 4 {
            give_buffer(&mut BytesMut::with_capacity(4096));
        }
        give_buffer(&mut BytesMut::with_capacity(MAX_KEPT + 1));
        let kept = SPARE.with(|s| s.borrow().len());
        assert_eq!(kept, SLOTS);
        assert!(SPARE.with(|s| s.borrow().iter().all(|b| b.capacity() <= MAX_KEPT)));
    }
}
