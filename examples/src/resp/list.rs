//! A list value packed as Redis packs one: elements side by side in buffers of a few KiB.

use std::collections::VecDeque;

use asynchat_core::Bytes;

/// What a pack holds before a push starts the next one. Redis's default
/// (`list-max-listpack-size -2`) is 8 KiB; at 4 KiB a push to the front moves at most a page.
const PACK_BYTES: usize = 4096;

/// The longest length prefix: a `u64` in LEB128.
const MAX_HEADER: usize = 10;

/// A Redis list: elements pushed and popped at both ends and read by index ranges.
///
/// Elements sit side by side in packs of about [`PACK_BYTES`], each with its length in LEB128
/// before it and again, reversed, after it, so that either end of a pack can be read. A million
/// three-byte elements then take about 5 MB, where a `Bytes` each (a 32-byte handle and an
/// allocation) would take 64 MB, and a push allocates nothing but, now and then, a pack.
/// Elements are copied in, and read in place (`LRANGE` writes them from the packs into its
/// reply) or copied out by a pop: lists hold short values, and a copy of a few bytes costs less
/// than the reference count a shared `Bytes` would take.
#[derive(Debug, Clone, Default)]
pub(super) struct List {
    packs: VecDeque<Pack>,
    len: usize,
}

#[derive(Debug, Clone, Default)]
struct Pack {
    bytes: VecDeque<u8>,
    count: usize,
}

impl List {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Pushes `element` before the first one (`LPUSH`).
    pub(super) fn push_front(&mut self, element: &[u8]) {
        self.push(element, true);
    }

    /// Pushes `element` after the last one (`RPUSH`).
    pub(super) fn push_back(&mut self, element: &[u8]) {
        self.push(element, false);
    }

    fn push(&mut self, element: &[u8], front: bool) {
        let (header, n) = header(element.len());
        let size = 2 * n + element.len();
        let end = if front {
            self.packs.front()
        } else {
            self.packs.back()
        };
        if end.is_none_or(|pack| pack.bytes.len() + size > PACK_BYTES) {
            if front {
                self.packs.push_front(Pack::default());
            } else {
                self.packs.push_back(Pack::default());
            }
        }
        let at = if front { 0 } else { self.packs.len() - 1 };
        let pack = &mut self.packs[at];
        let need = pack.bytes.len() + size;
        if need > pack.bytes.capacity() {
            // Grown once per push, by doubling up to a pack's size, and exactly for an element
            // that needs a pack of its own: three extends growing it each in turn could leave
            // twice the room the pack will ever use.
            let room = need.next_power_of_two().min(PACK_BYTES).max(need);
            pack.bytes.reserve_exact(room - pack.bytes.len());
        }
        pack.bytes.extend(&header[..n]);
        pack.bytes.extend(element);
        pack.bytes.extend(header[..n].iter().rev());
        if front {
            // Appended, then turned to the front: the rotation moves only the element's bytes.
            pack.bytes.rotate_right(size);
        }
        pack.count += 1;
        self.len += 1;
    }

    /// Takes the first element (`LPOP`).
    pub(super) fn pop_front(&mut self) -> Option<Bytes> {
        let pack = self.packs.front_mut()?;
        let (len, n) = read_header(pack.bytes.iter().copied());
        let element = copy_out(&pack.bytes, n, len);
        pack.bytes.drain(..2 * n + len);
        pack.count -= 1;
        if pack.count == 0 {
            self.packs.pop_front();
        }
        self.len -= 1;
        Some(element)
    }

    /// Takes the last element (`RPOP`).
    pub(super) fn pop_back(&mut self) -> Option<Bytes> {
        let pack = self.packs.back_mut()?;
        let (len, n) = read_header(pack.bytes.iter().rev().copied());
        let size = 2 * n + len;
        let start = pack.bytes.len() - size;
        let element = copy_out(&pack.bytes, start + n, len);
        pack.bytes.truncate(start);
        pack.count -= 1;
        if pack.count == 0 {
            self.packs.pop_back();
        }
        self.len -= 1;
        Some(element)
    }

    /// Hands `f` the elements from index `first` to `last` included, in order, each as two
    /// slices to be read one after the other (a pack's buffer may wrap around), until `f`
    /// returns `false`: `LRANGE` writes them into its reply as they are, with no copy of its
    /// own, and stops once the connection no longer takes output.
    pub(super) fn each_in(
        &self,
        first: usize,
        last: usize,
        mut f: impl FnMut(&[u8], &[u8]) -> bool,
    ) {
        let mut skip = first;
        let mut left = (last + 1).saturating_sub(first);
        for pack in &self.packs {
            if skip >= pack.count {
                skip -= pack.count;
                continue;
            }
            let mut at = 0;
            for index in 0..pack.count {
                let (len, n) = read_header(pack.bytes.range(at..).copied());
                if index >= skip {
                    if left == 0 {
                        return;
                    }
                    let (a, b) = slices(&pack.bytes, at + n, len);
                    if !f(a, b) {
                        return;
                    }
                    left -= 1;
                }
                at += 2 * n + len;
            }
            skip = 0;
        }
    }
}

/// `len` in LEB128, and how many of the bytes it takes.
fn header(len: usize) -> ([u8; MAX_HEADER], usize) {
    let mut out = [0; MAX_HEADER];
    let mut rest = len as u64;
    let mut n = 0;
    loop {
        let low = (rest & 0x7f) as u8;
        rest >>= 7;
        if rest == 0 {
            out[n] = low;
            return (out, n + 1);
        }
        out[n] = low | 0x80;
        n += 1;
    }
}

/// Reads a length [`header`] wrote, from its first byte on (forwards from an element's start,
/// backwards from its end), and how many bytes it took.
fn read_header(mut bytes: impl Iterator<Item = u8>) -> (usize, usize) {
    let mut len: u64 = 0;
    for n in 0..MAX_HEADER {
        // A pack holds whole elements only: a header always ends within it.
        let byte = bytes.next().unwrap_or(0);
        len |= u64::from(byte & 0x7f) << (7 * n);
        if byte & 0x80 == 0 {
            return (usize::try_from(len).unwrap_or(usize::MAX), n + 1);
        }
    }
    (usize::try_from(len).unwrap_or(usize::MAX), MAX_HEADER)
}

/// The `len` bytes of `bytes` from `start` on, as the two slices they lie in (either may be
/// empty).
fn slices(bytes: &VecDeque<u8>, start: usize, len: usize) -> (&[u8], &[u8]) {
    let (a, b) = bytes.as_slices();
    let end = start + len;
    let first = &a[start.min(a.len())..end.min(a.len())];
    let second = &b[start.saturating_sub(a.len())..end.saturating_sub(a.len())];
    (first, second)
}

/// A copy of `len` bytes of `bytes` from `start` on.
fn copy_out(bytes: &VecDeque<u8>, start: usize, len: usize) -> Bytes {
    let (a, b) = slices(bytes, start, len);
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(a);
    out.extend_from_slice(b);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        PushFront(Vec<u8>),
        PushBack(Vec<u8>),
        PopFront,
        PopBack,
        Range(usize, usize),
    }

    fn element() -> impl Strategy<Value = Vec<u8>> {
        // Mostly short, now and then one that needs a two-byte header or a pack of its own.
        prop_oneof![
            8 => proptest::collection::vec(any::<u8>(), 0..20),
            2 => proptest::collection::vec(any::<u8>(), 120..300),
            1 => proptest::collection::vec(any::<u8>(), 4000..9000),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => element().prop_map(Op::PushFront),
            4 => element().prop_map(Op::PushBack),
            2 => Just(Op::PopFront),
            2 => Just(Op::PopBack),
            1 => (0..400usize, 0..400usize).prop_map(|(a, b)| Op::Range(a.min(b), a.max(b))),
        ]
    }

    proptest! {
        #[test]
        fn a_packed_list_behaves_as_a_deque_of_its_elements(ops in proptest::collection::vec(op(), 0..400)) {
            let mut list = List::default();
            let mut model: VecDeque<Vec<u8>> = VecDeque::new();
            for op in ops {
                match op {
                    Op::PushFront(e) => { list.push_front(&e); model.push_front(e); }
                    Op::PushBack(e) => { list.push_back(&e); model.push_back(e); }
                    Op::PopFront => prop_assert_eq!(list.pop_front().map(|b| b.to_vec()), model.pop_front()),
                    Op::PopBack => prop_assert_eq!(list.pop_back().map(|b| b.to_vec()), model.pop_back()),
                    Op::Range(first, last) if last < model.len() => {
                        let mut got: Vec<Vec<u8>> = Vec::new();
                        list.each_in(first, last, |a, b| {
                            got.push([a, b].concat());
                            true
                        });
                        let want: Vec<Vec<u8>> = model.range(first..=last).cloned().collect();
                        prop_assert_eq!(got, want);
                    }
                    Op::Range(..) => {}
                }
                prop_assert_eq!(list.len(), model.len());
                prop_assert_eq!(list.is_empty(), model.is_empty());
                prop_assert!(list.packs.iter().all(|p| p.count > 0), "no empty pack is kept");
            }
        }
    }

    #[test]
    fn headers_read_back_the_same_both_ways() {
        for len in [0, 1, 127, 128, 300, 16_383, 16_384, 1 << 40] {
            let (h, n) = header(len);
            assert_eq!(read_header(h[..n].iter().copied()), (len, n));
            let reversed: Vec<u8> = h[..n].iter().rev().copied().collect();
            assert_eq!(read_header(reversed.iter().rev().copied()), (len, n));
        }
    }

    #[test]
    fn a_pack_holds_no_more_room_than_it_needs() {
        let mut list = List::default();
        let big = vec![7; 3 << 20];
        list.push_back(&big);
        let pack = &list.packs[0];
        assert!(
            pack.bytes.capacity() < big.len() + 64,
            "{}",
            pack.bytes.capacity()
        );
        for i in 0..5000u32 {
            list.push_front(&i.to_le_bytes()[..3]);
            list.push_back(&i.to_le_bytes());
        }
        // Every pack but the big element's own grew by doubling, no further than a pack's size.
        let small = list.packs.iter().filter(|p| p.bytes.len() <= PACK_BYTES);
        assert_eq!(small.clone().count(), list.packs.len() - 1);
        for pack in small {
            let room = pack.bytes.capacity();
            assert!(room <= PACK_BYTES, "{room}");
        }
    }

    #[test]
    fn a_range_stops_when_told() {
        let mut list = List::default();
        for i in 0..100u8 {
            list.push_back(&[i]);
        }
        let mut seen = 0;
        list.each_in(10, 90, |_, _| {
            seen += 1;
            seen < 5
        });
        assert_eq!(seen, 5);
    }

    #[test]
    fn short_elements_share_packs() {
        let mut list = List::default();
        for i in 0..10_000u32 {
            list.push_front(&i.to_le_bytes()[..3]);
        }
        // 5 bytes each (a one-byte length on both sides): about 800 to a pack.
        assert!(
            list.packs.len() <= 10_000 * 5 / PACK_BYTES + 1,
            "{} packs",
            list.packs.len()
        );
        let bytes: usize = list.packs.iter().map(|p| p.bytes.len()).sum();
        assert_eq!(bytes, 10_000 * 5);
    }
}
