//! Unit-testing protocols without sockets.
//!
//! [`Harness`] plays the peer of one [`Chat`]: send bytes, read what the protocol wrote, advance
//! a virtual clock, look at the state. It behaves as a driver does — reads stop under
//! backpressure, a slow or stalled reader can be simulated, writes can be partial — so what
//! passes here passes over a socket.
//!
//! [`Replay`] checks the chunking invariant every protocol must hold: the same input fed whole,
//! byte by byte and in seeded random splits gives the same output every time.
//!
//! ```
//! use std::time::Duration;
//! use asynchat_core::testing::{Harness, Replay};
//! use asynchat_core::{Bytes, Config, Context, Frame, Protocol, State, Terminator};
//!
//! #[derive(Default)]
//! struct Greeter;
//! impl Protocol for Greeter {
//!     fn first_terminator(&self) -> Terminator { "\r\n".into() }
//!     fn found_terminator(&mut self, ctx: &mut Context<'_>, name: Frame<'_>) {
//!         if name.is_empty() {
//!             ctx.close_when_done();
//!             return;
//!         }
//!         ctx.push("hello, ");
//!         ctx.push(name);
//!         ctx.push("\r\n");
//!     }
//! }
//!
//! let mut h = Harness::new(Greeter);
//! h.send("Ada\r\nGrace\r\n");
//! assert_eq!(h.take_output(), "hello, Ada\r\nhello, Grace\r\n");
//! h.send("\r\n");
//! assert_eq!(h.state(), State::Closed);
//!
//! // An idle timeout, on the virtual clock.
//! let config = Config::default().idle_timeout(Some(Duration::from_secs(30)));
//! let mut h = Harness::with_config(Greeter, &config);
//! h.advance(Duration::from_secs(29));
//! assert_eq!(h.state(), State::Open);
//! h.advance(Duration::from_secs(1));
//! assert_eq!(h.state(), State::Closed);
//!
//! // Whole, byte by byte, and in random splits: identical output.
//! let transcript = Replay::new("a\r\nb\r\n\r\n").assert_invariant(|| Greeter);
//! assert_eq!(transcript.output, "hello, a\r\nhello, b\r\n");
//! ```

use std::fmt;
use std::io::{self, IoSlice};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::chat::{Chat, CloseReason, Config, Context, Frame, Interest, Protocol, State};
use crate::error::Misuse;

/// How many slices the harness offers per write, like a driver's `writev`.
const SLICES: usize = 64;

/// A protocol that echoes each line (`\n`-terminated) back, terminator included: the smallest
/// server there is, for driver tests and examples that need a peer to talk to.
#[derive(Debug, Clone, Copy, Default)]
pub struct LineEcho;

impl Protocol for LineEcho {
    fn first_terminator(&self) -> crate::Terminator {
        "\n".into()
    }
    fn found_terminator(&mut self, ctx: &mut Context<'_>, line: Frame<'_>) {
        ctx.push(line);
        ctx.push("\n");
    }
}

/// Plays the peer of one connection, with a virtual clock.
pub struct Harness<P> {
    chat: Chat<P>,
    start: Instant,
    now: Instant,
    /// Bytes the peer sent that the connection has not read yet (it may be under backpressure).
    inbound: BytesMut,
    eof_pending: bool,
    output: BytesMut,
    peer_reading: bool,
    write_chunk: usize,
}

impl<P: fmt::Debug> fmt::Debug for Harness<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Harness")
            .field("chat", &self.chat)
            .field("elapsed", &(self.now - self.start))
            .field("inbound", &self.inbound.len())
            .field("output", &self.output.len())
            .finish()
    }
}

impl<P: Protocol> Harness<P> {
    /// A connected connection with the default [`Config`].
    ///
    /// # Panics
    ///
    /// If the protocol's first terminator is invalid (an empty delimiter): see
    /// [`try_new`](Self::try_new).
    #[must_use]
    pub fn new(protocol: P) -> Self {
        Self::with_config(protocol, &Config::default())
    }

    /// A connected connection with the given limits.
    ///
    /// # Panics
    ///
    /// If the protocol's first terminator is invalid.
    #[must_use]
    pub fn with_config(protocol: P, config: &Config) -> Self {
        match Self::try_new(protocol, config) {
            Ok(h) => h,
            Err(e) => panic!("Harness: the protocol's first terminator is invalid: {e}"),
        }
    }

    /// A connected connection, or the error the protocol's first terminator gives.
    pub fn try_new(protocol: P, config: &Config) -> Result<Self, Misuse> {
        let mut h = Self::try_connecting(protocol, config)?;
        h.connect();
        Ok(h)
    }

    /// A client connection whose connect has not completed: call [`connect`](Self::connect).
    ///
    /// # Panics
    ///
    /// If the protocol's first terminator is invalid.
    #[must_use]
    pub fn connecting(protocol: P) -> Self {
        match Self::try_connecting(protocol, &Config::default()) {
            Ok(h) => h,
            Err(e) => panic!("Harness: the protocol's first terminator is invalid: {e}"),
        }
    }

    fn try_connecting(protocol: P, config: &Config) -> Result<Self, Misuse> {
        // The only clock read: an origin for the virtual clock, which then moves only on demand.
        let start = Instant::now();
        Ok(Self {
            chat: Chat::with_config(protocol, config)?,
            start,
            now: start,
            inbound: BytesMut::new(),
            eof_pending: false,
            output: BytesMut::new(),
            peer_reading: true,
            write_chunk: usize::MAX,
        })
    }

    /// Completes the connect.
    pub fn connect(&mut self) -> &mut Self {
        self.chat.handle_connected(self.now);
        self.pump();
        self
    }

    /// The peer sends `bytes`. They are read as a driver would: in reads of at most
    /// [`Config::read_size`] bytes, and only while the connection wants to read.
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) -> &mut Self {
        self.inbound.extend_from_slice(bytes.as_ref());
        self.pump();
        self
    }

    /// The peer shuts down its write side (EOF after what it sent).
    pub fn send_eof(&mut self) -> &mut Self {
        self.eof_pending = true;
        self.pump();
        self
    }

    /// The socket fails with `error` (connection reset, refused...).
    pub fn fail(&mut self, error: io::Error) -> &mut Self {
        self.chat.handle_error(error);
        self
    }

    /// Moves the virtual clock forward, firing every deadline on the way, in order.
    pub fn advance(&mut self, by: Duration) -> &mut Self {
        let target = self.now + by;
        let mut rounds = 0u32;
        while let Some(at) = self.chat.poll_timeout().filter(|at| *at <= target) {
            rounds += 1;
            assert!(
                rounds < 1_000_000,
                "Harness::advance: a timer keeps re-arming itself at or before now"
            );
            self.now = self.now.max(at);
            self.chat.handle_timeout(self.now);
            self.pump();
        }
        self.now = target;
        self.chat.handle_timeout(self.now);
        self.pump();
        self
    }

    /// Whether the peer reads what the connection writes (default true). A peer that stops
    /// reading lets output pile up, which makes the connection stop reading in turn.
    pub fn set_peer_reading(&mut self, reading: bool) -> &mut Self {
        self.peer_reading = reading;
        self.pump();
        self
    }

    /// The most bytes one write takes (default unlimited): simulates partial writes.
    pub fn set_write_chunk(&mut self, max: usize) -> &mut Self {
        self.write_chunk = max.max(1);
        self.pump();
        self
    }

    /// Runs `f` against the protocol with a context, as a driver's cross-connection handle would.
    pub fn with_context<R>(&mut self, f: impl FnOnce(&mut P, &mut Context<'_>) -> R) -> Option<R> {
        let r = self.chat.with_context(self.now, f);
        self.pump();
        r
    }

    /// Takes everything the connection has written so far.
    pub fn take_output(&mut self) -> Bytes {
        self.output.split().freeze()
    }

    /// What the connection has written and the test has not taken.
    #[must_use]
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Bytes the peer sent that the connection has not read yet.
    #[must_use]
    pub fn unprocessed_len(&self) -> usize {
        self.inbound.len()
    }

    /// The virtual time now.
    #[must_use]
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time elapsed since the harness was made.
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// The connection's state.
    #[must_use]
    pub fn state(&self) -> State {
        self.chat.state()
    }

    /// Why the connection closed, once closed.
    #[must_use]
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.chat.close_reason()
    }

    /// Whether the connection is closed.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.chat.is_closed()
    }

    /// Whether the peer has seen an orderly end of stream: the connection closed gracefully and
    /// all its output has been read.
    #[must_use]
    pub fn peer_saw_eof(&self) -> bool {
        self.chat
            .close_reason()
            .is_some_and(CloseReason::is_graceful)
    }

    /// What the connection waits for.
    #[must_use]
    pub fn interest(&self) -> Interest {
        self.chat.interest()
    }

    /// The protocol.
    #[must_use]
    pub fn protocol(&self) -> &P {
        self.chat.protocol()
    }

    /// The protocol, mutably.
    pub fn protocol_mut(&mut self) -> &mut P {
        self.chat.protocol_mut()
    }

    /// The connection under test.
    #[must_use]
    pub fn chat(&self) -> &Chat<P> {
        &self.chat
    }

    /// The connection under test, mutably.
    pub fn chat_mut(&mut self) -> &mut Chat<P> {
        &mut self.chat
    }

    /// Moves bytes both ways until nothing more can move, as a driver's loop would.
    fn pump(&mut self) {
        loop {
            let wrote = self.flush();
            let interest = self.chat.interest();
            if !self.inbound.is_empty() && interest.readable {
                let n = self.inbound.len().min(self.chat.read_size());
                let chunk = self.inbound.split_to(n);
                self.chat.handle_read(self.now, &chunk);
            } else if self.eof_pending && self.inbound.is_empty() && interest.readable {
                self.eof_pending = false;
                self.chat.handle_eof(self.now);
            } else if !wrote {
                return;
            }
        }
    }

    /// Lets the peer read what the connection wrote; whether anything moved.
    fn flush(&mut self) -> bool {
        let mut moved = false;
        while self.peer_reading && self.chat.interest().writable {
            let mut slices = [IoSlice::new(&[]); SLICES];
            let n = self.chat.poll_transmit(&mut slices);
            let mut budget = self.write_chunk;
            let mut written = 0;
            for slice in &slices[..n] {
                let take = slice.len().min(budget);
                self.output.extend_from_slice(&slice[..take]);
                written += take;
                budget -= take;
                if budget == 0 {
                    break;
                }
            }
            if written == 0 {
                break;
            }
            self.chat.handle_written(written);
            moved = true;
        }
        moved
    }
}

/// The outcome of feeding one input to a fresh connection: what the peer received and how the
/// connection ended.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Transcript {
    /// Everything the connection wrote.
    pub output: Bytes,
    /// The state at the end.
    pub state: State,
    /// Why it closed, if it did.
    pub close_reason: Option<CloseReason>,
}

/// Two ways of chunking the same input gave different transcripts.
#[derive(Debug, Clone)]
pub struct ChunkingMismatch {
    /// How the differing run was chunked (e.g. `"byte by byte"`, `"random splits, seed 3"`).
    pub chunking: String,
    /// The transcript of the input fed whole.
    pub expected: Transcript,
    /// The transcript of the differing run.
    pub actual: Transcript,
}

impl fmt::Display for ChunkingMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, b) = (&self.expected.output, &self.actual.output);
        let at = a
            .iter()
            .zip(b.iter())
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        let around = |s: &Bytes| {
            let lo = at.saturating_sub(16);
            let hi = (at + 16).min(s.len());
            String::from_utf8_lossy(&s[lo.min(hi)..hi]).into_owned()
        };
        write!(
            f,
            "output differs when fed {}: first difference at byte {at} \
             (whole: {} bytes, {:?}, {:?}; this run: {} bytes, {:?}, {:?}); \
             around it, whole: {:?}, this run: {:?}",
            self.chunking,
            a.len(),
            self.expected.state,
            self.expected.close_reason,
            b.len(),
            self.actual.state,
            self.actual.close_reason,
            around(a),
            around(b),
        )
    }
}

impl std::error::Error for ChunkingMismatch {}

/// Replays one input against fresh connections, chunked in many ways, and checks the transcripts
/// are identical: the chunking invariant.
///
/// The input is fed whole, byte by byte, and in [`seeds`](Self::seeds) seeded random splits; by
/// default the peer then closes ([`eof`](Self::eof)).
#[derive(Debug, Clone)]
pub struct Replay {
    input: Bytes,
    eof: bool,
    seeds: u64,
    config: Config,
}

impl Replay {
    /// A replay of `input`, followed by EOF, with 16 random splits and the default [`Config`].
    pub fn new(input: impl Into<Bytes>) -> Self {
        Self {
            input: input.into(),
            eof: true,
            seeds: 16,
            config: Config::default(),
        }
    }

    /// Whether the peer closes after the input (default true).
    #[must_use]
    pub fn eof(mut self, eof: bool) -> Self {
        self.eof = eof;
        self
    }

    /// How many random splits to try (default 16); seeds are `0..n`, so runs are reproducible.
    #[must_use]
    pub fn seeds(mut self, n: u64) -> Self {
        self.seeds = n;
        self
    }

    /// The configuration of every connection.
    #[must_use]
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Feeds the input in `chunks` to a fresh connection made by `make`.
    pub fn run<P: Protocol>(&self, make: impl FnOnce() -> P, chunks: &[&[u8]]) -> Transcript {
        let mut h = Harness::with_config(make(), &self.config);
        for chunk in chunks {
            h.send(chunk);
        }
        if self.eof {
            h.send_eof();
        }
        Transcript {
            output: h.take_output(),
            state: h.state(),
            close_reason: h.close_reason().cloned(),
        }
    }

    /// Runs every chunking; the transcript of the whole input, or the first mismatch.
    pub fn check<P: Protocol>(
        &self,
        mut make: impl FnMut() -> P,
    ) -> Result<Transcript, Box<ChunkingMismatch>> {
        let input = &self.input[..];
        let expected = self.run(&mut make, &[input]);
        let compare = |chunking: String, actual: Transcript| {
            if actual == expected {
                Ok(())
            } else {
                Err(Box::new(ChunkingMismatch {
                    chunking,
                    expected: expected.clone(),
                    actual,
                }))
            }
        };
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        compare("byte by byte".into(), self.run(&mut make, &bytes))?;
        for seed in 0..self.seeds {
            let chunks = random_chunks(input, seed);
            compare(
                format!("in random splits, seed {seed}"),
                self.run(&mut make, &chunks),
            )?;
        }
        Ok(expected)
    }

    /// As [`check`](Self::check), panicking with a description of the first difference.
    ///
    /// # Panics
    ///
    /// When two chunkings give different transcripts.
    pub fn assert_invariant<P: Protocol>(&self, make: impl FnMut() -> P) -> Transcript {
        match self.check(make) {
            Ok(t) => t,
            Err(mismatch) => panic!("chunking invariant broken: {mismatch}"),
        }
    }
}

/// Splits `input` into pieces of seeded random sizes: mostly small (1–8 bytes), some medium and
/// some large, so delimiters land across boundaries in every way. Same seed, same split.
#[must_use]
pub fn random_chunks(input: &[u8], seed: u64) -> Vec<&[u8]> {
    let mut rng = SplitMix64(seed);
    let mut chunks = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let r = rng.next_u64();
        let max = match r % 4 {
            0 | 1 => 8,
            2 => 256,
            _ => 8192,
        };
        let n = (1 + (r >> 8) % max) as usize;
        let (head, tail) = rest.split_at(n.min(rest.len()));
        chunks.push(head);
        rest = tail;
    }
    chunks
}

/// A small, fast, seedable generator (Steele, Lea and Flood's SplitMix64), so that the harness
/// needs no dependency.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next pseudo-random number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_chunks_cover_the_input_and_depend_on_the_seed() {
        let input: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let a = random_chunks(&input, 1);
        assert_eq!(a.concat(), input);
        assert_eq!(a, random_chunks(&input, 1));
        assert_ne!(a, random_chunks(&input, 2));
        assert!(a.iter().any(|c| c.len() <= 8) && a.iter().any(|c| c.len() > 256));
    }

    /// A protocol that breaks the invariant: it reacts to how data arrives, not to frames.
    struct CountsReads;
    impl Protocol for CountsReads {
        fn first_terminator(&self) -> crate::Terminator {
            crate::Terminator::Eof
        }
        fn collect_incoming_data(&mut self, ctx: &mut Context<'_>, _data: Frame<'_>) {
            ctx.push("r");
        }
        fn found_terminator(&mut self, _ctx: &mut Context<'_>, _frame: Frame<'_>) {}
    }

    #[test]
    fn replay_catches_a_chunking_dependent_protocol() {
        let err = Replay::new("abcdef").check(|| CountsReads).unwrap_err();
        assert_eq!(err.chunking, "byte by byte");
        assert_eq!(err.expected.output, "r");
        assert_eq!(err.actual.output, "rrrrrr");
        assert!(err.to_string().contains("byte by byte"), "{err}");
    }
}
