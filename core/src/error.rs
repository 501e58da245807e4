//! Errors, split by whose fault they are: the peer's ([`PeerError`]), the caller's ([`Misuse`]), or a
//! local resource limit ([`Error::OutboxFull`]).

use std::fmt;

/// The peer sent something this side refuses to process.
///
/// These come from untrusted input: log them, count them, close the offending connection (the
/// [`Chat`](crate::Chat) does), but never treat them as a bug in the program.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerError {
    /// A frame grew past the framer's `max_frame` without its terminator.
    ///
    /// Happens when a peer sends a line longer than the protocol allows, or never sends the
    /// delimiter at all (a slowloris or a confused client). With
    /// [`OverLongPolicy::Fail`](crate::OverLongPolicy::Fail) the framer stays failed; with
    /// [`OverLongPolicy::Skip`](crate::OverLongPolicy::Skip) the rest of the frame, up to and
    /// including its terminator, is discarded and framing carries on.
    FrameTooLong {
        /// The limit that was exceeded, in bytes of frame content (terminator excluded).
        limit: usize,
    },
    /// The stream ended inside a frame (whole-frame API only: the event API reports the same
    /// count in [`Event::End`](crate::Event::End)).
    Truncated {
        /// Bytes of the unfinished frame; those the framer still holds are in
        /// [`Framer::take_unprocessed`](crate::Framer::take_unprocessed).
        unterminated: u64,
    },
    /// The peer's TLS failed: not TLS at all, a handshake it broke off or never finished, a
    /// certificate refused, a fatal alert.
    Tls(TlsError),
}

/// How a peer's TLS failed, as the TLS layer (feature `rustls`) reports it. Always compiled, so
/// code that matches close reasons need not know whether TLS is built in.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsError {
    /// The peer's bytes were not TLS records: plaintext, or garbage instead of a ClientHello.
    NotTls,
    /// The stream ended before the handshake finished.
    TruncatedHandshake,
    /// The handshake did not finish within its timeout.
    HandshakeTimedOut,
    /// The peer sent a fatal alert; its description.
    Alert(String),
    /// The peer's certificate was refused; why.
    BadCertificate(String),
    /// The peer broke the TLS protocol otherwise (an unexpected or corrupt message, no cipher
    /// suite or protocol version in common...); the TLS library's description.
    Protocol(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotTls => f.write_str("the peer did not speak TLS"),
            Self::TruncatedHandshake => f.write_str("the stream ended during the TLS handshake"),
            Self::HandshakeTimedOut => {
                f.write_str("the TLS handshake did not finish within its timeout")
            }
            Self::Alert(alert) => write!(f, "the peer sent a fatal TLS alert: {alert}"),
            Self::BadCertificate(why) => write!(f, "the peer's certificate was refused: {why}"),
            Self::Protocol(why) => write!(f, "TLS failed: {why}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// The API was called in a way that cannot work: a bug in the calling program, not in the peer.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misuse {
    /// `Terminator::Delimiter` with no bytes: it would match everywhere and frame nothing.
    /// Use [`Terminator::Eof`](crate::Terminator::Eof) to read until the peer closes.
    EmptyDelimiter,
    /// Bytes were fed after [`Framer::feed_eof`](crate::Framer::feed_eof): the stream had ended.
    FeedAfterEof,
    /// Output was pushed after `close_when_done()` or `close()`: it could never be sent.
    PushAfterClose,
    /// A count above the counted-frame bound was set for a frame that would be held whole
    /// ([`Framer::set_terminator`](crate::Framer::set_terminator), or the chat's default
    /// collector). Raise the bound (`Config::max_counted_frame`,
    /// `Framer::set_max_counted_frame`, `TerminatorCodec::with_max_counted_frame`), refuse the
    /// length before setting it, or stream the frame.
    CountOverLimit {
        /// The count that was set, in bytes.
        count: u64,
        /// The counted-frame bound, in bytes.
        limit: u64,
    },
    /// The protocol ended this many frames in a row with `Count(0)`, each from its own
    /// callback, and no input was consumed in between: it would deliver empty frames forever
    /// (for instance by setting `Count(0)` in every `found_terminator`). The chat closes the
    /// connection instead of spinning.
    EndlessEmptyFrames {
        /// Empty frames delivered in a row before the connection was closed.
        frames: u32,
    },
    /// [`Context::start_tls`](crate::Context::start_tls) was called with more than 65 534 bytes,
    /// or a producer, queued: the switch to TLS would have to wait for all of it (a producer's
    /// output cannot be told from what was queued behind it), and a STARTTLS reply is a line.
    /// Push the reply, then switch, with the output before it written first.
    StartTlsBehindOutput {
        /// Bytes queued when the switch was asked for.
        queued: usize,
    },
}

/// Any error of this crate.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The peer misbehaved; see [`PeerError`].
    Peer(PeerError),
    /// The API was misused; see [`Misuse`].
    Misuse(Misuse),
    /// Queuing more output would exceed the outbox's hard limit.
    ///
    /// A local resource limit: usually the peer stopped reading while the protocol kept pushing
    /// without checking [`Context::is_writable`](crate::Context::is_writable). The connection is
    /// closed rather than letting memory grow without bound.
    OutboxFull {
        /// The hard limit, in bytes.
        limit: usize,
    },
}

/// Whose fault an [`Error`] is.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The remote peer sent bad input.
    Peer,
    /// The program called the API wrongly.
    Api,
    /// A local resource limit was reached.
    Limit,
}

impl Error {
    /// Whose fault this error is.
    #[must_use]
    pub fn fault(&self) -> Fault {
        match self {
            Self::Peer(_) => Fault::Peer,
            Self::Misuse(_) => Fault::Api,
            Self::OutboxFull { .. } => Fault::Limit,
        }
    }
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FrameTooLong { limit } => {
                write!(
                    f,
                    "peer sent a frame longer than the limit of {limit} bytes"
                )
            }
            Self::Truncated { unterminated } => write!(
                f,
                "stream ended inside a frame ({unterminated} bytes unterminated)"
            ),
            Self::Tls(e) => e.fmt(f),
        }
    }
}

impl fmt::Display for Misuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::EmptyDelimiter => "a delimiter terminator must not be empty",
            Self::FeedAfterEof => "bytes fed after end of stream",
            Self::PushAfterClose => "output pushed after the connection began closing",
            Self::CountOverLimit { count, limit } => {
                return write!(
                    f,
                    "a count of {count} bytes is over the counted-frame bound of {limit} \
                     (max_counted_frame): raise it, check the length first, or stream the frame"
                );
            }
            Self::StartTlsBehindOutput { queued } => {
                return write!(
                    f,
                    "STARTTLS asked for behind {queued} bytes of output, or a producer (at most \
                     65534 bytes, no producer): write the output before it first"
                );
            }
            Self::EndlessEmptyFrames { frames } => {
                return write!(
                    f,
                    "{frames} empty frames in a row ended by Count(0) without consuming input: \
                     the protocol sets Count(0) again in every callback"
                );
            }
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Peer(e) => e.fmt(f),
            Self::Misuse(e) => write!(f, "API misuse: {e}"),
            Self::OutboxFull { limit } => {
                write!(
                    f,
                    "output queue would exceed its hard limit of {limit} bytes"
                )
            }
        }
    }
}

impl std::error::Error for PeerError {}
impl std::error::Error for Misuse {}
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Peer(e) => Some(e),
            Self::Misuse(e) => Some(e),
            Self::OutboxFull { .. } => None,
        }
    }
}

impl From<PeerError> for Error {
    fn from(e: PeerError) -> Self {
        Self::Peer(e)
    }
}

impl From<Misuse> for Error {
    fn from(e: Misuse) -> Self {
        Self::Misuse(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_classified() {
        assert_eq!(
            Error::from(PeerError::FrameTooLong { limit: 3 }).fault(),
            Fault::Peer
        );
        assert_eq!(Error::from(Misuse::EmptyDelimiter).fault(), Fault::Api);
        assert_eq!(Error::OutboxFull { limit: 1 }.fault(), Fault::Limit);
    }

    #[test]
    fn a_count_over_its_bound_names_the_setting() {
        let e = Error::from(Misuse::CountOverLimit {
            count: 70_000,
            limit: 65_536,
        });
        let text = e.to_string();
        assert!(text.contains("70000") && text.contains("65536"), "{text}");
        assert!(text.contains("max_counted_frame"), "{text}");
        assert_eq!(e.fault(), Fault::Api);
    }

    #[test]
    fn messages_name_the_limit() {
        let e = Error::from(PeerError::FrameTooLong { limit: 512 });
        assert!(e.to_string().contains("512"), "{e}");
        assert!(std::error::Error::source(&e).is_some());
    }
}
