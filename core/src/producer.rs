//! Lazy sources of output: Python's (and Medusa's) producers, with `more()` returning `Bytes`.
//!
//! A producer is pulled by the [`Outbox`](crate::Outbox) only when everything queued ahead of it
//! has been written, so a large response generated on demand never sits in memory whole.

use std::collections::VecDeque;
use std::fmt;

use bytes::Bytes;

/// A lazy source of output bytes.
///
/// `more` returns the next chunk, or `None` once exhausted (after which it is not called again).
/// An empty chunk is skipped. Chunks are written as they are: return large `Bytes` (tens of KiB)
/// for bulk data, they are never copied or split.
pub trait Producer {
    /// The next chunk of output, or `None` when there is no more.
    fn more(&mut self) -> Option<Bytes>;
}

impl<P: Producer + ?Sized> Producer for Box<P> {
    fn more(&mut self) -> Option<Bytes> {
        (**self).more()
    }
}

/// Hands out a `Bytes` in chunks of at most `chunk_size` bytes, without copying: Python's
/// `simple_producer`.
///
/// ```
/// use asynchat_core::producer::{Producer, SimpleProducer};
///
/// let mut p = SimpleProducer::new("abcde", 2);
/// assert_eq!(p.more().as_deref(), Some(&b"ab"[..]));
/// assert_eq!(p.more().as_deref(), Some(&b"cd"[..]));
/// assert_eq!(p.more().as_deref(), Some(&b"e"[..]));
/// assert_eq!(p.more(), None);
/// ```
#[derive(Debug, Clone)]
pub struct SimpleProducer {
    data: Bytes,
    chunk_size: usize,
}

impl SimpleProducer {
    /// Python's default chunk size for `simple_producer`.
    pub const DEFAULT_CHUNK_SIZE: usize = 512;

    /// Chunks `data` by `chunk_size` bytes; a `chunk_size` of 0 hands the data out whole.
    pub fn new(data: impl Into<Bytes>, chunk_size: usize) -> Self {
        Self {
            data: data.into(),
            chunk_size,
        }
    }
}

impl Producer for SimpleProducer {
    fn more(&mut self) -> Option<Bytes> {
        if self.data.is_empty() {
            return None;
        }
        let n = match self.chunk_size {
            0 => self.data.len(),
            size => size.min(self.data.len()),
        };
        Some(self.data.split_to(n))
    }
}

/// Produces the items of an iterator: one chunk per item.
#[derive(Debug, Clone)]
pub struct IterProducer<I> {
    iter: I,
}

impl<I> IterProducer<I>
where
    I: Iterator,
    I::Item: Into<Bytes>,
{
    /// Produces each item of `iter` in turn.
    pub fn new(iter: impl IntoIterator<IntoIter = I>) -> Self {
        Self {
            iter: iter.into_iter(),
        }
    }
}

impl<I> Producer for IterProducer<I>
where
    I: Iterator,
    I::Item: Into<Bytes>,
{
    fn more(&mut self) -> Option<Bytes> {
        self.iter.next().map(Into::into)
    }
}

/// A producer from a closure returning the next chunk: `from_fn(|| file.read_chunk())`.
pub fn from_fn<F: FnMut() -> Option<Bytes>>(f: F) -> FnProducer<F> {
    FnProducer(f)
}

/// The producer made by [`from_fn`].
pub struct FnProducer<F>(F);

impl<F> fmt::Debug for FnProducer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnProducer")
    }
}

impl<F: FnMut() -> Option<Bytes>> Producer for FnProducer<F> {
    fn more(&mut self) -> Option<Bytes> {
        (self.0)()
    }
}

/// HTTP/1.1 chunked transfer coding (RFC 9112 §7.1) of another producer's output.
///
/// Each non-empty chunk of the inner producer becomes `SIZE\r\n` + chunk + `\r\n`; the chunk itself
/// is passed through, not copied. The end is `0\r\n`, optional trailer fields, `\r\n`.
///
/// ```
/// use asynchat_core::producer::{ChunkedProducer, IterProducer, Producer};
///
/// let mut p = ChunkedProducer::new(IterProducer::new(["hello", " world!"]));
/// let mut out = Vec::new();
/// while let Some(chunk) = p.more() {
///     out.extend_from_slice(&chunk);
/// }
/// assert_eq!(out, b"5\r\nhello\r\n7\r\n world!\r\n0\r\n\r\n");
/// ```
#[derive(Debug, Clone)]
pub struct ChunkedProducer<P> {
    inner: P,
    /// A chunk whose size line has been produced but not the chunk itself.
    body: Option<Bytes>,
    trailers: Bytes,
    /// A chunk has been produced, so the next line must first close it with CRLF.
    open_chunk: bool,
    done: bool,
}

impl<P: Producer> ChunkedProducer<P> {
    /// Chunk-encodes `inner`'s output, with no trailer fields.
    pub fn new(inner: P) -> Self {
        Self {
            inner,
            body: None,
            trailers: Bytes::new(),
            open_chunk: false,
            done: false,
        }
    }

    /// Adds trailer fields, each formatted as `Name: value\r\n`, sent after the last chunk.
    #[must_use]
    pub fn with_trailers(mut self, trailers: impl Into<Bytes>) -> Self {
        self.trailers = trailers.into();
        self
    }
}

impl<P: Producer> Producer for ChunkedProducer<P> {
    fn more(&mut self) -> Option<Bytes> {
        if let Some(body) = self.body.take() {
            return Some(body);
        }
        if self.done {
            return None;
        }
        let close = if self.open_chunk { "\r\n" } else { "" };
        loop {
            match self.inner.more() {
                Some(chunk) if chunk.is_empty() => continue,
                Some(chunk) => {
                    self.open_chunk = true;
                    let line = format!("{close}{:x}\r\n", chunk.len());
                    self.body = Some(chunk);
                    return Some(Bytes::from(line));
                }
                None => {
                    self.done = true;
                    let mut end = Vec::with_capacity(7 + self.trailers.len());
                    end.extend_from_slice(close.as_bytes());
                    end.extend_from_slice(b"0\r\n");
                    end.extend_from_slice(&self.trailers);
                    end.extend_from_slice(b"\r\n");
                    return Some(Bytes::from(end));
                }
            }
        }
    }
}

/// Several producers one after the other: Medusa's `composite_producer`.
#[derive(Default)]
pub struct Concat {
    parts: VecDeque<Box<dyn Producer + Send>>,
}

impl Concat {
    /// An empty concatenation.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a producer, to be drained after those already added.
    pub fn push(&mut self, producer: impl Producer + Send + 'static) {
        self.parts.push_back(Box::new(producer));
    }

    /// Appends a producer; builder form of [`push`](Self::push).
    #[must_use]
    pub fn then(mut self, producer: impl Producer + Send + 'static) -> Self {
        self.push(producer);
        self
    }
}

impl fmt::Debug for Concat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Concat")
            .field("parts", &self.parts.len())
            .finish()
    }
}

impl Producer for Concat {
    fn more(&mut self) -> Option<Bytes> {
        while let Some(first) = self.parts.front_mut() {
            match first.more() {
                Some(chunk) => return Some(chunk),
                None => {
                    self.parts.pop_front();
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(p: &mut dyn Producer) -> Vec<Bytes> {
        std::iter::from_fn(|| p.more()).collect()
    }

    #[test]
    fn simple_producer_chunks_without_copying() {
        let data = Bytes::from(vec![7u8; 1000]);
        let mut p = SimpleProducer::new(data.clone(), SimpleProducer::DEFAULT_CHUNK_SIZE);
        let chunks = drain(&mut p);
        assert_eq!(
            chunks.iter().map(Bytes::len).collect::<Vec<_>>(),
            [512, 488]
        );
        assert_eq!(chunks[1].as_ptr(), data[512..].as_ptr());
        assert_eq!(
            drain(&mut SimpleProducer::new("abc", 0)),
            [Bytes::from("abc")]
        );
        assert!(drain(&mut SimpleProducer::new("", 4)).is_empty());
    }

    #[test]
    fn chunked_encoding_with_empty_chunks_and_trailers() {
        let inner = IterProducer::new(vec![
            Bytes::from("ab"),
            Bytes::new(),
            Bytes::from(vec![b'x'; 26]),
        ]);
        let mut p = ChunkedProducer::new(inner).with_trailers("Expires: never\r\n");
        let out: Vec<u8> = drain(&mut p).concat();
        let mut want = b"2\r\nab\r\n1a\r\n".to_vec();
        want.extend_from_slice(&[b'x'; 26]);
        want.extend_from_slice(b"\r\n0\r\nExpires: never\r\n\r\n");
        assert_eq!(out, want);

        let mut empty = ChunkedProducer::new(IterProducer::new(Vec::<Bytes>::new()));
        assert_eq!(drain(&mut empty).concat(), b"0\r\n\r\n");
    }

    #[test]
    fn concat_drains_in_order_and_from_fn_works() {
        let mut n = 0;
        let counter = from_fn(move || {
            n += 1;
            (n <= 2).then(|| Bytes::from(n.to_string()))
        });
        let mut p = Concat::new()
            .then(SimpleProducer::new("ab", 1))
            .then(counter)
            .then(IterProducer::new(["z"]));
        assert_eq!(drain(&mut p).concat(), b"ab12z");
        assert_eq!(p.more(), None);
    }
}
