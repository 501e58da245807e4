//! A `tokio_util::codec::{Decoder, Encoder}` built on the core [`Framer`], for people who already
//! use `Framed`: multi-byte delimiters, byte counts and until-EOF framing, switchable between
//! frames, with `max_frame` honoured.

use std::fmt;
use std::io;

use asynchat_core::{Bytes, BytesMut, Framer, Misuse, OverLongPolicy, PeerError, Terminator};
use tokio_util::codec::{Decoder, Encoder};

/// Frames by a [`Terminator`] when decoding; when encoding, writes each item followed by the
/// encoder's own suffix (by default the delimiter the codec was created with; see
/// [`with_suffix`](Self::with_suffix)), whatever the decoder is framing by at the time.
///
/// ```
/// use asynchat_tokio::codec::TerminatorCodec;
/// use asynchat_core::{BytesMut, Terminator};
/// use tokio_util::codec::Decoder;
///
/// let mut codec = TerminatorCodec::new("\r\n\r\n")?;
/// let mut buf = BytesMut::from(&b"Content-Length: 3\r\n\r\nabcGET"[..]);
/// assert_eq!(codec.decode(&mut buf)?.as_deref(), Some(&b"Content-Length: 3"[..]));
/// codec.set_terminator(3u64)?; // between frames, as found_terminator would
/// assert_eq!(codec.decode(&mut buf)?.as_deref(), Some(&b"abc"[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Security
///
/// Delimited and until-EOF frames are bounded by `max_frame` (default
/// [`DEFAULT_MAX_FRAME`](asynchat_core::DEFAULT_MAX_FRAME), 64 KiB, see
/// [`with_max_frame`](Self::with_max_frame)); a count is refused where it is set if it is
/// over `max_counted_frame` (default
/// [`DEFAULT_MAX_COUNTED_FRAME`](asynchat_core::DEFAULT_MAX_COUNTED_FRAME), 16 MiB, see
/// [`with_max_counted_frame`](Self::with_max_counted_frame)).
#[derive(Debug, Clone)]
pub struct TerminatorCodec {
    framer: Framer,
    suffix: Bytes,
}

/// Why decoding failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum CodecError {
    /// The underlying I/O failed.
    Io(io::Error),
    /// The peer sent what the framer refuses (a frame too long, a stream ending inside a frame).
    Peer(PeerError),
    /// The codec was used wrongly (an empty delimiter, a count over its bound).
    Misuse(Misuse),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "I/O error: {e}"),
            Self::Peer(e) => e.fmt(f),
            Self::Misuse(e) => write!(f, "codec misuse: {e}"),
        }
    }
}

impl std::error::Error for CodecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Peer(e) => Some(e),
            Self::Misuse(e) => Some(e),
        }
    }
}

impl From<io::Error> for CodecError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<PeerError> for CodecError {
    fn from(e: PeerError) -> Self {
        Self::Peer(e)
    }
}

impl From<Misuse> for CodecError {
    fn from(e: Misuse) -> Self {
        Self::Misuse(e)
    }
}

impl TerminatorCodec {
    /// A codec whose first frame ends with `terminator`; refuses an empty delimiter and a count
    /// over [`DEFAULT_MAX_COUNTED_FRAME`](asynchat_core::DEFAULT_MAX_COUNTED_FRAME). The
    /// encoder's suffix is `terminator` if it is a delimiter, else nothing.
    pub fn new(terminator: impl Into<Terminator>) -> Result<Self, Misuse> {
        let terminator = terminator.into();
        let suffix = match &terminator {
            Terminator::Delimiter(d) => d.clone(),
            Terminator::Count(_) | Terminator::Eof => Bytes::new(),
        };
        Ok(Self {
            framer: Framer::new(terminator)?,
            suffix,
        })
    }

    /// Sets what the encoder writes after every item (empty: nothing), independently of what
    /// the decoder frames by.
    #[must_use]
    pub fn with_suffix(mut self, suffix: impl Into<Bytes>) -> Self {
        self.suffix = suffix.into();
        self
    }

    /// What the encoder writes after every item.
    #[must_use]
    pub fn suffix(&self) -> &[u8] {
        &self.suffix
    }

    /// Sets the largest count [`set_terminator`](Self::set_terminator) accepts.
    #[must_use]
    pub fn with_max_counted_frame(mut self, max: u64) -> Self {
        self.framer.set_max_counted_frame(max);
        self
    }

    /// Changes the largest count [`set_terminator`](Self::set_terminator) accepts.
    pub fn set_max_counted_frame(&mut self, max: u64) {
        self.framer.set_max_counted_frame(max);
    }

    /// Sets the longest frame accepted.
    #[must_use]
    pub fn with_max_frame(mut self, max_frame: usize) -> Self {
        self.framer.set_max_frame(max_frame);
        self
    }

    /// Sets what happens to an over-long frame: fail (default) or skip it and carry on.
    #[must_use]
    pub fn with_over_long_policy(mut self, policy: OverLongPolicy) -> Self {
        self.framer.set_over_long_policy(policy);
        self
    }

    /// Sets what ends the next frame (call between frames, through `Framed::codec_mut`).
    /// Fails with [`Misuse::EmptyDelimiter`] or [`Misuse::CountOverLimit`], changing nothing;
    /// the encoder's suffix is not affected.
    pub fn set_terminator(&mut self, terminator: impl Into<Terminator>) -> Result<(), Misuse> {
        self.framer.set_terminator(terminator)
    }

    /// The framer underneath.
    #[must_use]
    pub fn framer(&self) -> &Framer {
        &self.framer
    }

    /// The framer underneath, mutably (to take its buffered bytes for a protocol upgrade...).
    pub fn framer_mut(&mut self) -> &mut Framer {
        &mut self.framer
    }

    /// Moves what `Framed` read into the framer; without a copy when the framer holds nothing.
    fn take_input(&mut self, src: &mut BytesMut) {
        if !src.is_empty() {
            // Cannot fail: the framer only refuses input after EOF, which `decode_eof` marks last.
            let _ = self.framer.read_with(0, |buf| buf.unsplit(src.split()));
        }
    }
}

impl Decoder for TerminatorCodec {
    type Item = Bytes;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, CodecError> {
        self.take_input(src);
        Ok(self.framer.poll_frame()?)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, CodecError> {
        self.take_input(src);
        if let Some(frame) = self.framer.poll_frame()? {
            return Ok(Some(frame));
        }
        self.framer.feed_eof();
        Ok(self.framer.poll_frame()?)
    }
}

impl TerminatorCodec {
    fn encode_bytes(&self, item: &[u8], dst: &mut BytesMut) {
        dst.reserve(item.len() + self.suffix.len());
        dst.extend_from_slice(item);
        dst.extend_from_slice(&self.suffix);
    }
}

/// Encodes an item and then the codec's [`suffix`](TerminatorCodec::suffix), for each type
/// a frame commonly comes as.
macro_rules! encoders {
    ($($item:ty),*) => {$(
        impl Encoder<$item> for TerminatorCodec {
            type Error = CodecError;

            fn encode(&mut self, item: $item, dst: &mut BytesMut) -> Result<(), CodecError> {
                let bytes: &[u8] = item.as_ref();
                self.encode_bytes(bytes, dst);
                Ok(())
            }
        }
    )*};
}

encoders!(Bytes, &[u8], &str, String, Vec<u8>);

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util_free::{frames_of, write_frames};

    /// Small helpers instead of pulling in `futures` for `StreamExt`/`SinkExt`.
    mod futures_util_free {
        use super::*;
        use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

        pub(super) async fn write_frames(
            mut io: DuplexStream,
            frames: &[&[u8]],
            codec: &mut TerminatorCodec,
        ) {
            let mut out = BytesMut::new();
            for f in frames {
                Encoder::<&[u8]>::encode(codec, f, &mut out).unwrap();
            }
            io.write_all(&out).await.unwrap();
        }

        pub(super) async fn frames_of(
            mut io: DuplexStream,
            codec: &mut TerminatorCodec,
        ) -> Result<Vec<Bytes>, CodecError> {
            let mut buf = BytesMut::new();
            let mut frames = Vec::new();
            loop {
                while let Some(f) = codec.decode(&mut buf)? {
                    frames.push(f);
                }
                let mut chunk = [0u8; 3]; // tiny reads: frames and delimiters split across them
                let n = io.read(&mut chunk).await?;
                if n == 0 {
                    while let Some(f) = codec.decode_eof(&mut buf)? {
                        frames.push(f);
                    }
                    return Ok(frames);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }

    #[tokio::test]
    async fn multi_byte_delimiter_round_trip_through_a_duplex() {
        let (a, b) = tokio::io::duplex(64);
        let mut enc = TerminatorCodec::new("\r\n.\r\n").unwrap();
        let writer = tokio::spawn(async move {
            write_frames(a, &[b"first\r\nline", b"", b"third"], &mut enc).await;
        });
        let mut dec = TerminatorCodec::new("\r\n.\r\n").unwrap();
        let frames = frames_of(b, &mut dec).await.unwrap();
        writer.await.unwrap();
        assert_eq!(frames, [&b"first\r\nline"[..], b"", b"third"]);
    }

    #[test]
    fn max_frame_is_honoured_and_truncation_is_reported() {
        let mut codec = TerminatorCodec::new("\n").unwrap().with_max_frame(4);
        let mut buf = BytesMut::from(&b"abcdefgh"[..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(CodecError::Peer(PeerError::FrameTooLong { limit: 4 }))
        ));

        let mut codec = TerminatorCodec::new("\n").unwrap();
        let mut buf = BytesMut::from(&b"ok\npartial"[..]);
        assert_eq!(
            codec.decode_eof(&mut buf).unwrap().as_deref(),
            Some(&b"ok"[..])
        );
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Err(CodecError::Peer(PeerError::Truncated { .. }))
        ));
    }

    #[test]
    fn the_encoder_suffix_does_not_follow_the_decoder() {
        let mut codec = TerminatorCodec::new("\r\n").unwrap();
        let mut out = BytesMut::new();
        codec.encode("a", &mut out).unwrap();
        // The decoder now reads a counted body; replies still end with the codec's suffix.
        codec.set_terminator(5u64).unwrap();
        codec.encode(String::from("b"), &mut out).unwrap();
        codec.encode(Bytes::from_static(b"c"), &mut out).unwrap();
        codec.encode(&b"d"[..], &mut out).unwrap();
        codec.encode(b"e".to_vec(), &mut out).unwrap();
        assert_eq!(&out[..], b"a\r\nb\r\nc\r\nd\r\ne\r\n");

        let mut raw = TerminatorCodec::new(Terminator::Eof)
            .unwrap()
            .with_suffix("\n");
        let mut out = BytesMut::new();
        raw.encode("x", &mut out).unwrap();
        assert_eq!(&out[..], b"x\n");
        assert_eq!(TerminatorCodec::new(3u64).unwrap().suffix(), b"");
    }

    #[test]
    fn a_count_over_its_bound_is_refused_where_it_is_set() {
        let mut codec = TerminatorCodec::new("\n")
            .unwrap()
            .with_max_counted_frame(1000);
        let refused = codec.set_terminator(70_000u64).map_err(CodecError::from);
        assert!(matches!(
            refused,
            Err(CodecError::Misuse(Misuse::CountOverLimit {
                count: 70_000,
                limit: 1000
            }))
        ));
        // A 70 kB body is fine under the defaults, though the line limit is 64 KiB.
        let mut codec = TerminatorCodec::new("\n").unwrap();
        codec.set_terminator(70_000u64).unwrap();
        let mut buf = BytesMut::from(&vec![b'x'; 70_000][..]);
        assert_eq!(
            codec.decode(&mut buf).unwrap().map(|b| b.len()),
            Some(70_000)
        );
    }

    #[test]
    fn eof_terminated_body_comes_out_at_the_end() {
        let mut codec = TerminatorCodec::new(Terminator::Eof).unwrap();
        let mut buf = BytesMut::from(&b"whole body"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert_eq!(
            codec.decode_eof(&mut buf).unwrap().as_deref(),
            Some(&b"whole body"[..])
        );
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
    }
}
