//! Spare buffers, kept per thread.
//!
//! A connection gives up its read buffer and its output copy buffer as soon as they empty, so
//! that an idle connection holds neither. A busy request/response connection therefore empties
//! both on every event, and would pay a `malloc`/`free` pair for each (4 KiB buffers are above
//! the allocator's per-thread caches). Buffers given up here are taken back by the next
//! connection on the same thread that needs one: a handful per thread, whatever the number of
//! connections.

use std::cell::RefCell;

use bytes::BytesMut;

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
/// Writes into its owner's place rather than returning the buffer, for the reason [`give`]
/// takes one by reference.
pub(crate) fn take(dst: &mut BytesMut, capacity: usize) {
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
pub(crate) fn give(buf: &mut BytesMut) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        give(&mut buf);
        let mut again = BytesMut::new();
        take(&mut again, 4096);
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
        give(&mut buf);
        let mut again = BytesMut::new();
        take(&mut again, 4096);
        assert!(again.capacity() >= 4096, "capacity {}", again.capacity());
    }

    #[test]
    fn buffers_far_larger_than_asked_for_are_not_handed_out() {
        empty_pool();
        give(&mut BytesMut::with_capacity(64 * 1024));
        let mut small = BytesMut::new();
        take(&mut small, 4096);
        assert!(
            small.capacity() < 64 * 1024,
            "capacity {}",
            small.capacity()
        );
        let mut large = BytesMut::new();
        take(&mut large, 64 * 1024);
        assert!(large.capacity() >= 64 * 1024);
    }

    #[test]
    fn a_fitting_buffer_is_found_behind_one_that_does_not_fit() {
        empty_pool();
        let mut small = BytesMut::with_capacity(4096);
        let ptr = small.as_ptr();
        give(&mut small);
        give(&mut BytesMut::with_capacity(64 * 1024));
        let mut again = BytesMut::new();
        take(&mut again, 4096);
        assert_eq!(
            again.as_ptr(),
            ptr,
            "the earlier, fitting buffer comes back"
        );
        let mut large = BytesMut::new();
        take(&mut large, 64 * 1024);
        assert!(
            large.capacity() >= 64 * 1024,
            "and the large one stays for a large ask"
        );
    }

    #[test]
    fn at_most_a_few_buffers_are_kept_per_thread() {
        empty_pool();
        for _ in 0..SLOTS * 4 {
            give(&mut BytesMut::with_capacity(4096));
        }
        give(&mut BytesMut::with_capacity(MAX_KEPT + 1));
        let kept = SPARE.with(|s| s.borrow().len());
        assert_eq!(kept, SLOTS);
        assert!(SPARE.with(|s| s.borrow().iter().all(|b| b.capacity() <= MAX_KEPT)));
    }
}
