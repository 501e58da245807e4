//! The bytes a protocol is handed and pushes: lent from the receive buffer, or shared.

use std::fmt;
use std::ops::Deref;

use bytes::{Bytes, BytesMut};

#[allow(unused_imports)] // for intra-doc links
use super::{Context, Protocol};

/// Bytes of a frame: what [`Protocol::found_terminator`] and
/// [`Protocol::collect_incoming_data`] are handed, and what [`Context::push`] takes.
///
/// A frame received whole comes lent straight from the connection's receive buffer, for the
/// length of the callback: reading it costs nothing, no reference count, no copy. It becomes an
/// owned [`Bytes`] only if the protocol keeps it ([`into_bytes`](Self::into_bytes)), and
/// pushing it back copies it into the output buffer, as the outbox does with short pushes
/// anyway. Frames that arrived in pieces, and long ones, come as shared `Bytes`, pushed back
/// without a copy. Either way a `Frame` reads as `&[u8]` (it dereferences to one).
///
/// ```
/// use asynchat_core::{Bytes, Context, Frame, Protocol, Terminator};
///
/// /// Keeps every line it is sent: `into_bytes` makes a lent line an owned `Bytes`.
/// #[derive(Default)]
/// struct Journal {
///     lines: Vec<Bytes>,
/// }
///
/// impl Protocol for Journal {
///     fn first_terminator(&self) -> Terminator {
///         Terminator::from("\n")
///     }
///     fn found_terminator(&mut self, ctx: &mut Context<'_>, line: Frame<'_>) {
///         if line.starts_with(b"#") {
///             return; // read in place: nothing copied
///         }
///         ctx.push(format!("{}\n", self.lines.len()));
///         self.lines.push(line.into_bytes());
///     }
/// }
/// ```
///
/// Pushing: `Bytes`, `BytesMut`, `Vec<u8>`, `String`, `Box<[u8]>` and `&'static str` become a
/// shared frame (taken without a copy); a borrowed `&[u8]` (or `&[u8; N]`) becomes a lent one,
/// copied when pushed.
#[derive(Clone, Default)]
pub struct Frame<'a>(Repr<'a>);

#[derive(Clone)]
enum Repr<'a> {
    Lent(&'a [u8]),
    Shared(Bytes),
}

impl Default for Repr<'_> {
    fn default() -> Self {
        Self::Lent(&[])
    }
}

impl<'a> Frame<'a> {
    /// An empty frame.
    #[must_use]
    pub const fn new() -> Self {
        Self(Repr::Lent(&[]))
    }

    /// A frame of borrowed bytes (copied if kept or pushed).
    #[must_use]
    pub const fn lent(bytes: &'a [u8]) -> Self {
        Self(Repr::Lent(bytes))
    }

    /// The bytes as an owned [`Bytes`]: a shared frame as it is, a lent one copied (its own
    /// allocation, of its own size).
    #[must_use]
    pub fn into_bytes(self) -> Bytes {
        match self.0 {
            Repr::Lent(bytes) => Bytes::copy_from_slice(bytes),
            Repr::Shared(bytes) => bytes,
        }
    }

    /// The bytes, for as long as the frame is lent.
    #[must_use]
    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            Repr::Lent(bytes) => bytes,
            Repr::Shared(bytes) => bytes,
        }
    }

    /// Whether the bytes are lent (so [`into_bytes`](Self::into_bytes) copies them) rather
    /// than shared.
    #[must_use]
    pub fn is_lent(&self) -> bool {
        matches!(self.0, Repr::Lent(_))
    }

    /// The lent bytes with their full lifetime, or the shared `Bytes`.
    pub(crate) fn into_parts(self) -> Result<&'a [u8], Bytes> {
        match self.0 {
            Repr::Lent(bytes) => Ok(bytes),
            Repr::Shared(bytes) => Err(bytes),
        }
    }
}

impl Deref for Frame<'_> {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Frame<'_> {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::borrow::Borrow<[u8]> for Frame<'_> {
    fn borrow(&self) -> &[u8] {
        self
    }
}

/// As `Bytes` prints: an escaped byte string, whether lent or shared.
impl fmt::Debug for Frame<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("b\"")?;
        for &b in self.as_slice() {
            match b {
                b'\n' => f.write_str("\\n")?,
                b'\r' => f.write_str("\\r")?,
                b'\t' => f.write_str("\\t")?,
                0 => f.write_str("\\0")?,
                b'\\' | b'"' => write!(f, "\\{}", char::from(b))?,
                0x20..=0x7e => write!(f, "{}", char::from(b))?,
                _ => write!(f, "\\x{b:02x}")?,
            }
        }
        f.write_str("\"")
    }
}

/// Frames compare, order and hash by their bytes, lent or shared alike.
impl PartialEq for Frame<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Frame<'_> {}

impl PartialOrd for Frame<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Frame<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl std::hash::Hash for Frame<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl From<Bytes> for Frame<'_> {
    fn from(bytes: Bytes) -> Self {
        Self(Repr::Shared(bytes))
    }
}

impl From<BytesMut> for Frame<'_> {
    fn from(bytes: BytesMut) -> Self {
        Self(Repr::Shared(bytes.freeze()))
    }
}

impl From<Vec<u8>> for Frame<'_> {
    fn from(bytes: Vec<u8>) -> Self {
        Self(Repr::Shared(bytes.into()))
    }
}

impl From<Box<[u8]>> for Frame<'_> {
    fn from(bytes: Box<[u8]>) -> Self {
        Self(Repr::Shared(bytes.into()))
    }
}

impl From<String> for Frame<'_> {
    fn from(text: String) -> Self {
        Self(Repr::Shared(text.into()))
    }
}

impl From<&'static str> for Frame<'_> {
    fn from(text: &'static str) -> Self {
        Self(Repr::Shared(Bytes::from_static(text.as_bytes())))
    }
}

impl<'a> From<&'a [u8]> for Frame<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        Self(Repr::Lent(bytes))
    }
}

impl<'a, const N: usize> From<&'a [u8; N]> for Frame<'a> {
    fn from(bytes: &'a [u8; N]) -> Self {
        Self(Repr::Lent(bytes))
    }
}

impl<'a> From<&'a Bytes> for Frame<'a> {
    fn from(bytes: &'a Bytes) -> Self {
        Self(Repr::Lent(bytes))
    }
}

impl From<Frame<'_>> for Bytes {
    fn from(frame: Frame<'_>) -> Self {
        frame.into_bytes()
    }
}

impl PartialEq<[u8]> for Frame<'_> {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<&[u8]> for Frame<'_> {
    fn eq(&self, other: &&[u8]) -> bool {
        self.as_slice() == *other
    }
}

impl<const N: usize> PartialEq<[u8; N]> for Frame<'_> {
    fn eq(&self, other: &[u8; N]) -> bool {
        self.as_slice() == other
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for Frame<'_> {
    fn eq(&self, other: &&[u8; N]) -> bool {
        self.as_slice() == *other
    }
}

impl PartialEq<str> for Frame<'_> {
    fn eq(&self, other: &str) -> bool {
        self.as_slice() == other.as_bytes()
    }
}

impl PartialEq<&str> for Frame<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.as_slice() == other.as_bytes()
    }
}

impl PartialEq<Bytes> for Frame<'_> {
    fn eq(&self, other: &Bytes) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<Vec<u8>> for Frame<'_> {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self.as_slice() == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lent_and_shared_frames_of_the_same_bytes_compare_equal_and_read_alike() {
        let bytes = Bytes::from_static(b"GET /\r");
        let lent = Frame::lent(b"GET /\r");
        let shared = Frame::from(bytes.clone());
        assert!(lent.is_lent() && !shared.is_lent());
        assert_eq!(lent, "GET /\r");
        assert_eq!(shared, bytes);
        assert_eq!(format!("{lent:?}"), format!("{shared:?}"));
        assert_eq!(format!("{lent:?}"), "b\"GET /\\r\"");
        assert_eq!(
            format!("{:?}", Frame::lent(b"a\"\\\x00\n")),
            format!("{:?}", Bytes::from_static(b"a\"\\\x00\n"))
        );
        assert_eq!(lent, shared);
        assert_eq!(lent.into_bytes(), shared.into_bytes());
    }

    #[test]
    fn a_shared_frame_becomes_bytes_without_a_copy_and_a_lent_one_by_a_copy() {
        let bytes = Bytes::from(vec![7u8; 100]);
        let kept = Frame::from(bytes.clone()).into_bytes();
        assert_eq!(kept.as_ptr(), bytes.as_ptr());
        let buf = [7u8; 100];
        let copied = Frame::lent(&buf).into_bytes();
        assert_ne!(copied.as_ptr(), buf.as_ptr());
        assert_eq!(copied, bytes);
    }
}
