//! Finding a terminator: the compiled delimiter and a search that never scans a byte twice.

use std::cmp::min;

use bytes::Bytes;
use memchr::memmem;

/// Every byte value, so a one-byte delimiter can be handed out as a static `Bytes`.
pub(super) static BYTE_VALUES: [u8; 256] = {
    let mut all = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        all[i] = i as u8;
        i += 1;
    }
    all
};

/// A multi-byte delimiter and its searcher, built once when the terminator is set.
#[derive(Debug, Clone)]
pub(super) struct Sequence {
    pub(super) delim: Bytes,
    finder: memmem::Finder<'static>,
}

/// The compiled form of a [`Terminator`](crate::Terminator), kept small (16 bytes): it lives
/// in every connection.
#[derive(Debug, Clone)]
pub(super) enum Matcher {
    Byte(u8),
    Seq(Box<Sequence>),
    Count(u64),
    Eof,
}

impl Matcher {
    /// The matcher of a non-empty delimiter: one byte is searched for as a byte.
    pub(super) fn for_delimiter(delim: Bytes) -> Self {
        match *delim {
            [byte] => Self::Byte(byte),
            _ => Self::Seq(Box::new(Sequence {
                finder: memmem::Finder::new(&delim[..]).into_owned(),
                delim,
            })),
        }
    }

    pub(super) fn delimiter(&self) -> Option<&[u8]> {
        match self {
            Self::Byte(b) => Some(std::slice::from_ref(&BYTE_VALUES[usize::from(*b)])),
            Self::Seq(seq) => Some(&seq.delim),
            Self::Count(_) | Self::Eof => None,
        }
    }
}

/// The delimiter search: what to look for and where to resume.
#[derive(Debug, Clone)]
pub(super) struct Search {
    pub(super) matcher: Matcher,
    /// No delimiter match starts in `buf[..scan]`: the next search starts here.
    pub(super) scan: usize,
    /// Bytes handed to the searcher, to prove in tests that nothing is scanned twice.
    #[cfg(test)]
    pub(super) scanned: usize,
}

impl Search {
    /// Searches `buf[scan..]` for the delimiter; on a miss, records how far the search got.
    /// Takes the buffer apart from the search state, so that a chat can search a buffer it has
    /// taken out of the framer (see [`Framer::lend_buffer`]).
    #[inline(always)]
    pub(super) fn find(&mut self, buf: &[u8]) -> Option<usize> {
        let start = min(self.scan, buf.len());
        let hay = &buf[start..];
        #[cfg(test)]
        {
            self.scanned += hay.len();
        }
        let (found, delim_len) = match &self.matcher {
            Matcher::Byte(byte) => (find_byte(*byte, hay), 1),
            Matcher::Seq(seq) => (seq.finder.find(hay), seq.delim.len()),
            Matcher::Count(_) | Matcher::Eof => return None,
        };
        match found {
            Some(i) => Some(start + i),
            None => {
                // A match may still start in the last delim_len - 1 bytes, once more arrive.
                self.scan = (buf.len() + 1).saturating_sub(delim_len).max(start);
                None
            }
        }
    }

    /// The next delimiter frame of `buf` from `start`, if it is whole and at most `room` bytes
    /// long: its range, and where the frame after it starts. Otherwise the search result the
    /// slow path should reuse (`None` if no search was made, else the frame's length if a
    /// delimiter was found).
    #[inline(always)]
    pub(super) fn whole_frame(
        &mut self,
        buf: &[u8],
        start: usize,
        room: u64,
    ) -> Result<(std::ops::Range<usize>, usize), Option<Option<usize>>> {
        let Some(delim_len) = self.matcher.delimiter().map(<[u8]>::len) else {
            return Err(None);
        };
        self.scan = self.scan.max(start);
        let found = self.find(buf);
        if let Some(i) = found {
            if (i - start) as u64 <= room {
                let next = i + delim_len;
                self.scan = next;
                return Ok((start..i, next));
            }
        }
        Err(Some(found.map(|i| i - start)))
    }
}

/// Bytes searched with the inlined SSE2 searcher before handing over to `memchr`'s AVX2 one.
#[cfg(target_arch = "x86_64")]
const NEAR: usize = 256;

/// The first `byte` in `hay`: the next [`NEAR`] bytes with `memchr`'s SSE2 searcher on x86-64,
/// the rest with `memchr::memchr`.
///
/// `memchr::memchr` picks its AVX2 searcher through a function pointer and sets up a 128-byte
/// loop: for the next delimiter of a line protocol, usually a few dozen bytes away, that costs
/// about twice the search (71 instructions a call for 64-byte lines, counted by
/// `scripts/instructions-per-line`). SSE2 is part of x86-64, so that searcher needs no detection
/// and is inlined; AVX2 still takes over for long lines, where its wider loop pays.
#[inline(always)]
pub(super) fn find_byte(byte: u8, hay: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(near) = memchr::arch::x86_64::sse2::memchr::One::new(byte) {
        if hay.len() <= NEAR {
            return near.find(hay);
        }
        return near
            .find(&hay[..NEAR])
            .or_else(|| memchr::memchr(byte, &hay[NEAR..]).map(|i| NEAR + i));
    }
    memchr::memchr(byte, hay)
}
