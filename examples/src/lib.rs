//! `asynchat-examples`: real servers built on asynchat-rs. Each protocol is a sans-IO module,
//! unit-tested with [`asynchat_core::testing`] (the chunking invariant included), and one binary
//! that runs it on any driver.
//!
//! | module | binary | protocol |
//! |---|---|---|
//! | [`echo`] | `echo` | every frame back with its terminator; also over stdin/stdout |
//! | [`chat`] | `chat` | the classic asynchat chat room, broadcasting through the drivers' handle |
//! | [`smtpd`] | `smtpd` | a mail sink in the spirit of Python's `smtpd.SMTPServer` |
//! | [`httpd`] | `httpd` | HTTP/1.1 static files: keep-alive, pipelining, chunked streaming |
//! | [`resp`] | `resp` | an in-memory key–value store speaking the Redis protocol subset |
//! | [`tour`] | `tour` | every example on every driver, checked and measured |
//!
//! What the binaries share: [`run`] serves a protocol factory on mio, tokio or smol and gives
//! each connection a driver-neutral [`run::Link`]; [`cli`] holds the common flags and the Ctrl-C
//! shutdown. The driver benchmarks use [`raw_echo`] (a hand-written mio echo server),
//! [`baselines`] (tokio-util `Framed` and plain smol echo servers) and [`loadgen`].
#![forbid(unsafe_code)]

pub mod baselines;
pub mod chat;
pub mod cli;
pub mod echo;
pub mod httpd;
pub mod loadgen;
pub mod raw_echo;
pub mod resp;
pub mod run;
pub mod smtpd;
pub mod tour;

/// Sets a delimiter the protocol knows to be valid (a non-empty constant).
fn set_delimiter(ctx: &mut asynchat_core::Context<'_>, delimiter: &'static [u8]) {
    ctx.set_delimiter(delimiter)
        .unwrap_or_else(|e| unreachable!("a constant delimiter is valid: {e}"));
}

/// A number in decimal, formatted on the stack: what replies are built from without an
/// allocation.
#[derive(Default)]
pub(crate) struct Decimal([u8; 20]);

impl Decimal {
    /// `n` in decimal, with a `-` if negative.
    pub(crate) fn of(&mut self, n: i64) -> &[u8] {
        let at = self.digits(n.unsigned_abs());
        if n < 0 {
            self.0[at - 1] = b'-';
            return &self.0[at - 1..];
        }
        &self.0[at..]
    }

    /// `n` in decimal.
    pub(crate) fn of_u64(&mut self, n: u64) -> &[u8] {
        let at = self.digits(n);
        &self.0[at..]
    }

    /// Writes the digits of `n` at the end; where they start.
    fn digits(&mut self, mut n: u64) -> usize {
        let mut at = self.0.len();
        loop {
            at -= 1;
            self.0[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                return at;
            }
        }
    }
}
