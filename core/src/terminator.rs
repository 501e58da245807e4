//! What ends a frame: Python's `set_terminator(bytes | int | None)`, as a type.

use bytes::Bytes;

use crate::error::Misuse;

/// What ends the current frame.
///
/// | variant | Python | a frame ends when |
/// |---|---|---|
/// | [`Delimiter`](Self::Delimiter) | `set_terminator(b"\r\n")` | the byte sequence arrives (it is consumed, never delivered) |
/// | [`Count`](Self::Count) | `set_terminator(n)` | `n` more bytes have arrived |
/// | [`Eof`](Self::Eof) | `set_terminator(None)` | the peer closes its side |
///
/// `Count(0)`, when set, ends the current frame at once: a zero-length body (`Content-Length:
/// 0`, memcached's `set k 0 0 0`) is an empty frame, with no special case in the protocol. This
/// differs from Python, where `set_terminator(0)` never fires; Python's "no terminator" is
/// `None`, whose counterpart here is [`Eof`](Self::Eof) (which fires once, at the end of the
/// stream, as "read until close" protocols need). A count that has run down reads as
/// `Count(0)` too, but fires nothing more: if `found_terminator` names no new terminator, the
/// bytes that follow are collected as data, as in Python.
///
/// A delimiter must not be empty: [`Terminator::delimiter`] and every `set_terminator` refuse it
/// with [`Misuse::EmptyDelimiter`].
///
/// ```
/// use asynchat_core::Terminator;
///
/// assert_eq!(Terminator::from("\r\n"), Terminator::Delimiter("\r\n".into()));
/// assert_eq!(Terminator::from(42u64), Terminator::Count(42));
/// assert!(Terminator::delimiter(Vec::new()).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Terminator {
    /// A byte sequence of any non-zero length, such as `\n`, `\r\n`, `\r\n\r\n` or `\r\n.\r\n`.
    Delimiter(Bytes),
    /// A number of bytes; counts down across reads and streams its bytes as they arrive.
    Count(u64),
    /// Everything until the peer closes its side of the stream.
    Eof,
}

impl Terminator {
    /// A delimiter terminator, refusing an empty one.
    pub fn delimiter(bytes: impl Into<Bytes>) -> Result<Self, Misuse> {
        let t = Self::Delimiter(bytes.into());
        t.validate()?;
        Ok(t)
    }

    /// A byte-count terminator.
    #[must_use]
    pub const fn count(n: u64) -> Self {
        Self::Count(n)
    }

    /// Checks the terminator can be used: a delimiter must not be empty.
    pub fn validate(&self) -> Result<(), Misuse> {
        match self {
            Self::Delimiter(d) if d.is_empty() => Err(Misuse::EmptyDelimiter),
            _ => Ok(()),
        }
    }
}

impl From<&'static str> for Terminator {
    fn from(s: &'static str) -> Self {
        Self::Delimiter(Bytes::from_static(s.as_bytes()))
    }
}

impl From<&'static [u8]> for Terminator {
    fn from(s: &'static [u8]) -> Self {
        Self::Delimiter(Bytes::from_static(s))
    }
}

impl<const N: usize> From<&'static [u8; N]> for Terminator {
    fn from(s: &'static [u8; N]) -> Self {
        Self::Delimiter(Bytes::from_static(s))
    }
}

impl From<Bytes> for Terminator {
    fn from(b: Bytes) -> Self {
        Self::Delimiter(b)
    }
}

impl From<Vec<u8>> for Terminator {
    fn from(v: Vec<u8>) -> Self {
        Self::Delimiter(Bytes::from(v))
    }
}

impl From<String> for Terminator {
    fn from(s: String) -> Self {
        Self::Delimiter(Bytes::from(s))
    }
}

impl From<u64> for Terminator {
    fn from(n: u64) -> Self {
        Self::Count(n)
    }
}

impl From<u32> for Terminator {
    fn from(n: u32) -> Self {
        Self::Count(u64::from(n))
    }
}

impl From<usize> for Terminator {
    fn from(n: usize) -> Self {
        // usize is at most 64 bits on every platform Rust supports.
        Self::Count(u64::try_from(n).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors() {
        assert_eq!(
            Terminator::from(&b"\r\n.\r\n"[..]),
            Terminator::Delimiter(Bytes::from_static(b"\r\n.\r\n"))
        );
        assert_eq!(
            Terminator::from(b"ab"),
            Terminator::Delimiter(Bytes::from_static(b"ab"))
        );
        assert_eq!(
            Terminator::from(String::from("x")),
            Terminator::Delimiter("x".into())
        );
        assert_eq!(Terminator::from(7u32), Terminator::Count(7));
        assert_eq!(Terminator::from(7usize), Terminator::Count(7));
        assert_eq!(Terminator::count(0), Terminator::Count(0));
    }

    #[test]
    fn empty_delimiter_is_a_typed_error() {
        assert_eq!(Terminator::delimiter(""), Err(Misuse::EmptyDelimiter));
        assert_eq!(Terminator::from("").validate(), Err(Misuse::EmptyDelimiter));
        assert!(Terminator::Eof.validate().is_ok());
        assert!(Terminator::Count(0).validate().is_ok());
    }
}
