//! A `Chat` under random driver events, with a protocol that echoes its frames and, steered by
//! their first byte, changes terminators, arms timers, pauses, closes, pushes producers and
//! large buffers. Checked after every event:
//!
//! - no callback runs once the connection is closed, and `closed` runs exactly once, as soon as
//!   the state is `Closed`;
//! - callbacks run only in the states the module docs give them (input callbacks while `Open`,
//!   not paused and not under backpressure; timeouts while `Open` or `Closing`);
//! - the state moves only along the documented diagram (never back to `Open` or `Connecting`);
//! - what the driver wrote is a prefix of what the protocol pushed while the connection took
//!   output, and all of it after a graceful close;
//! - a `Closing` connection always has output to write (otherwise nothing would ever finish it);
//! - once closed, it wants nothing: no interest, no deadline, nothing to transmit.
#![no_main]

use std::io::{self, IoSlice};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use asynchat_core::producer::SimpleProducer;
use asynchat_core::{
    Chat, CloseReason, Config, Context, Frame, Interest, Misuse, OverLongPolicy, Protocol, State,
    Terminator, Timer,
};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum First {
    Newline,
    CrLf,
    Pair,
    Count(u8),
    Eof,
}

impl First {
    fn terminator(self) -> Terminator {
        match self {
            Self::Newline => "\n".into(),
            Self::CrLf => "\r\n".into(),
            Self::Pair => "ab".into(),
            Self::Count(n) => Terminator::Count(u64::from(n % 16)),
            Self::Eof => Terminator::Eof,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Settings {
    first: First,
    /// Collect each piece as given (a lent frame is then only noted), else an owned copy.
    borrowed: bool,
    /// Stay open after the peer's EOF (a half-closed connection that keeps writing).
    half_close: bool,
    start_connecting: bool,
    max_frame: Option<u8>,
    skip_over_long: bool,
    marks: Option<(u16, u16)>,
    limit: Option<u16>,
    read_size: Option<u8>,
    idle_ms: Option<u8>,
    coalesce: u8,
}

#[derive(Arbitrary, Debug)]
enum Ev {
    Connected,
    Read(Vec<u8>),
    ReadWith(Vec<u8>),
    /// One write of at most `max` bytes, through `transmit_with` or `poll_transmit`.
    Write {
        max: u16,
        with: bool,
    },
    /// Writes until the connection has nothing more to write.
    Flush,
    Advance(u16),
    /// Jumps to the next deadline and fires it.
    FireDue,
    Eof,
    CloseWhenDone,
    Close,
    Error,
    Resume,
    Push(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    settings: Settings,
    events: Vec<Ev>,
}

/// The protocol under test; everything it saw is kept for the checks.
#[derive(Debug, Default)]
struct Fuzzy {
    first: Option<Terminator>,
    borrowed: bool,
    half_close: bool,
    /// Bytes pushed while the connection took output: what the peer must receive, in order.
    accepted: Vec<u8>,
    /// The driver called `close_when_done` before the connect completed: output pushed from
    /// then on is dropped, even in `connected` (which runs while `Open`).
    closed_early: bool,
    paused: bool,
    closed: u32,
    reason: Option<CloseReason>,
}

impl Fuzzy {
    fn enter(&self, ctx: &Context<'_>, allowed: &[State], what: &str) {
        assert_eq!(self.closed, 0, "{what} after closed");
        assert!(
            allowed.contains(&ctx.state()),
            "{what} in state {:?}",
            ctx.state()
        );
    }

    /// An input callback: only while frames may be delivered.
    fn input(&self, ctx: &Context<'_>, what: &str) {
        self.enter(ctx, &[State::Open], what);
        assert!(!self.paused, "{what} while paused");
        assert!(ctx.is_writable(), "{what} under backpressure");
    }

    fn takes_output(&self, ctx: &Context<'_>) -> bool {
        matches!(ctx.state(), State::Open | State::Connecting) && !self.closed_early
    }

    fn push(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        if self.takes_output(ctx) {
            self.accepted.extend_from_slice(data);
        }
        ctx.push(data.to_vec());
    }

    fn command(&mut self, ctx: &mut Context<'_>, frame: &[u8]) {
        let Some((&verb, args)) = frame.split_first() else {
            return;
        };
        let arg = |i: usize| args.get(i).copied().unwrap_or(0);
        match verb {
            b'd' => {
                let delim = &args[..args.len().min(4)];
                let before = ctx.terminator();
                match ctx.set_terminator(delim.to_vec()) {
                    Ok(()) => assert_eq!(ctx.terminator(), Terminator::from(delim.to_vec())),
                    Err(e) => {
                        assert!(delim.is_empty());
                        assert_eq!(e, Misuse::EmptyDelimiter);
                        assert_eq!(ctx.terminator(), before, "a refused terminator changed it");
                    }
                }
            }
            b'n' => ctx
                .set_terminator(Terminator::Count(u64::from(arg(0) % 32)))
                .expect("a count is valid"),
            b'e' => ctx.set_terminator(Terminator::Eof).expect("Eof is valid"),
            b'l' => ctx.set_terminator("\n").expect("valid"),
            b'c' => ctx.close_when_done(),
            b'x' => ctx.close(),
            b'q' => ctx.close_because(CloseReason::TimedOut),
            b't' => {
                let at = ctx.now() + Duration::from_millis(u64::from(arg(1)));
                ctx.set_timer(u32::from(arg(0) % 8), at);
            }
            b'k' => ctx.cancel_timer(u32::from(arg(0) % 8)),
            b'i' => match arg(0) {
                0 => ctx.set_idle_timeout(None),
                ms => ctx.set_idle_timeout(Some(Duration::from_millis(u64::from(ms)))),
            },
            b'p' => {
                ctx.pause_reading();
                self.paused = true;
            }
            b'u' => {
                let rest = ctx.take_unprocessed();
                self.push(ctx, b"<");
                self.push(ctx, &rest);
                self.push(ctx, b">");
            }
            b'm' => ctx.set_max_frame(usize::from(arg(0))),
            b'r' => {
                // `arg(0)` chunks of `arg(1) + 1` bytes: how many chunks a producer gives, against
                // how many slices a write offers, decides where the outbox stops pulling.
                let chunk = 1 + usize::from(arg(1));
                let data: Vec<u8> = (0..usize::from(arg(0)) * chunk).map(|i| i as u8).collect();
                if self.takes_output(ctx) {
                    self.accepted.extend_from_slice(&data);
                }
                ctx.push_producer(SimpleProducer::new(data, chunk));
            }
            b'b' => {
                let data: Vec<u8> = (0..usize::from(arg(0)) * 1000).map(|i| i as u8).collect();
                self.push(ctx, &data);
            }
            b's' => {
                let parts: [&[u8]; 3] = [b"(", args, b")"];
                if self.takes_output(ctx) {
                    self.accepted.extend(parts.concat());
                }
                ctx.push_slices(&parts);
            }
            _ => {}
        }
    }
}

impl Protocol for Fuzzy {
    fn first_terminator(&self) -> Terminator {
        self.first.clone().unwrap_or_else(|| "\n".into())
    }

    fn connected(&mut self, ctx: &mut Context<'_>) {
        self.enter(ctx, &[State::Open], "connected");
        self.push(ctx, b"hi\n");
    }

    fn collect_incoming_data(&mut self, ctx: &mut Context<'_>, data: Frame<'_>) {
        self.input(ctx, "collect_incoming_data");
        assert!(!data.is_empty(), "empty data");
        if self.borrowed {
            ctx.collect(data);
        } else {
            // Collected as an owned copy: the collector must not take it for the lent frame.
            ctx.collect(Frame::from(data.to_vec()));
        }
    }

    fn found_terminator(&mut self, ctx: &mut Context<'_>, frame: Frame<'_>) {
        self.input(ctx, "found_terminator");
        self.push(ctx, b"[");
        self.push(ctx, &frame);
        self.push(ctx, b"]");
        self.command(ctx, &frame);
    }

    fn peer_closed(&mut self, ctx: &mut Context<'_>, unterminated: u64) {
        self.input(ctx, "peer_closed");
        let rest = ctx.take_incoming();
        assert_eq!(rest.len() as u64, unterminated, "unterminated count");
        self.push(ctx, b"{eof ");
        self.push(ctx, &rest);
        self.push(ctx, b"}");
        if !self.half_close {
            ctx.close_when_done();
        }
    }

    fn frame_too_long(&mut self, ctx: &mut Context<'_>, limit: usize) {
        self.input(ctx, "frame_too_long");
        self.push(ctx, format!("{{too long {limit}}}").as_bytes());
    }

    fn timeout(&mut self, ctx: &mut Context<'_>, timer: Timer) {
        self.enter(ctx, &[State::Open, State::Closing], "timeout");
        match timer {
            Timer::Idle => {
                self.push(ctx, b"{idle}");
                ctx.close_when_done();
            }
            Timer::Custom(id) => {
                self.push(ctx, format!("{{timer {id}}}").as_bytes());
                if id % 3 == 0 {
                    ctx.resume_reading();
                    self.paused = false;
                }
            }
            _ => {}
        }
    }

    fn closed(&mut self, reason: &CloseReason) {
        assert_eq!(self.closed, 0, "closed twice");
        self.closed += 1;
        self.reason = Some(reason.clone());
    }
}

struct Driver {
    chat: Chat<Fuzzy>,
    now: Instant,
    written: Vec<u8>,
}

impl Driver {
    fn p(&self) -> &Fuzzy {
        self.chat.protocol()
    }

    /// One write of at most `max` bytes; whether anything was written.
    fn write(&mut self, max: usize, with: bool) -> bool {
        let mut took = Vec::new();
        let n = if with {
            let taken = self.chat.transmit_with(|slices| {
                for s in slices {
                    took.extend(s.iter().take(max - took.len()));
                }
                took.len()
            });
            match taken {
                Some(n) => n,
                None => return false,
            }
        } else {
            let mut slices = [IoSlice::new(&[]); 8];
            let k = self.chat.poll_transmit(&mut slices);
            for s in &slices[..k] {
                took.extend(s.iter().take(max - took.len()));
            }
            if k == 0 {
                return false;
            }
            took.len()
        };
        self.written.extend_from_slice(&took);
        self.chat.handle_written(n);
        n > 0
    }

    fn flush(&mut self) {
        for _ in 0..10_000 {
            if !self.chat.interest().writable || !self.write(usize::MAX, true) {
                return;
            }
        }
        panic!("flush never ends");
    }

    fn check(&self, before: State, event: &str) {
        let state = self.chat.state();
        let allowed = match before {
            State::Connecting => true,
            State::Open => state != State::Connecting,
            State::Closing => matches!(state, State::Closing | State::Closed),
            State::Closed => state == State::Closed,
        };
        assert!(allowed, "{before:?} -> {state:?} on {event}");
        let p = self.p();
        assert_eq!(
            self.chat.is_closed(),
            p.closed == 1,
            "closed() ran {} times with state {state:?}",
            p.closed
        );
        assert!(
            p.accepted.starts_with(&self.written),
            "wrote {} bytes that were never pushed (accepted {})",
            self.written.len(),
            p.accepted.len()
        );
        match state {
            State::Closed => {
                assert_eq!(self.chat.interest(), Interest::default());
                assert_eq!(self.chat.poll_timeout(), None);
                assert_eq!(self.chat.queued_bytes(), 0);
                let reason = self.chat.close_reason().expect("a reason once closed");
                assert_eq!(Some(reason), p.reason.as_ref());
                if reason.is_graceful() {
                    assert_eq!(
                        self.written.len(),
                        p.accepted.len(),
                        "graceful close ({reason:?}) before everything was written"
                    );
                }
            }
            State::Closing => assert!(
                self.chat.interest().writable,
                "Closing with nothing left to write: nothing would ever finish it (on {event})"
            ),
            State::Open | State::Connecting => assert!(self.chat.close_reason().is_none()),
        }
    }

    fn apply(&mut self, ev: &Ev) {
        let before = self.chat.state();
        match ev {
            Ev::Connected => self.chat.handle_connected(self.now),
            Ev::Read(data) => self.chat.handle_read(self.now, data),
            Ev::ReadWith(data) => {
                let took = self.chat.handle_read_with(self.now, |buf| {
                    buf.extend_from_slice(data);
                    data.len()
                });
                // Only a connection that takes no input refuses to read.
                if took.is_none() {
                    assert!(!self.chat.interest().readable);
                }
            }
            Ev::Write { max, with } => {
                self.write(usize::from(*max), *with);
            }
            Ev::Flush => self.flush(),
            Ev::Advance(ms) => {
                self.now += Duration::from_millis(u64::from(*ms));
                self.chat.handle_timeout(self.now);
            }
            Ev::FireDue => {
                if let Some(at) = self.chat.poll_timeout() {
                    self.now = self.now.max(at);
                    self.chat.handle_timeout(self.now);
                }
            }
            Ev::Eof => self.chat.handle_eof(self.now),
            Ev::CloseWhenDone => {
                if before == State::Connecting {
                    self.chat.protocol_mut().closed_early = true;
                }
                self.chat.close_when_done();
            }
            Ev::Close => self.chat.close(),
            Ev::Error => self
                .chat
                .handle_error(io::Error::from(io::ErrorKind::ConnectionReset)),
            Ev::Resume => {
                self.chat.with_context(self.now, |p, ctx| {
                    ctx.resume_reading();
                    p.paused = false;
                });
            }
            Ev::Push(data) => {
                self.chat.with_context(self.now, |p, ctx| {
                    assert_eq!(p.closed, 0, "with_context after closed");
                    p.push(ctx, data);
                });
            }
        }
        self.check(before, &format!("{ev:?}"));
    }
}

fuzz_target!(|input: Input| {
    if input.events.len() > 128 {
        return;
    }
    let s = &input.settings;
    let mut config = Config::default().coalesce_below(usize::from(s.coalesce));
    if let Some(m) = s.max_frame {
        config = config.max_frame(usize::from(m));
    }
    if s.skip_over_long {
        config = config.over_long(OverLongPolicy::Skip);
    }
    if let Some((low, high)) = s.marks {
        config = config.water_marks(usize::from(low), usize::from(high));
    }
    if let Some(limit) = s.limit {
        config = config.outbox_limit(usize::from(limit));
    }
    if let Some(r) = s.read_size {
        config = config.read_size(usize::from(r));
    }
    if let Some(ms) = s.idle_ms {
        config = config.idle_timeout(Some(Duration::from_millis(u64::from(ms))));
    }
    let protocol = Fuzzy {
        first: Some(s.first.terminator()),
        borrowed: s.borrowed,
        half_close: s.half_close,
        ..Fuzzy::default()
    };
    let mut d = Driver {
        chat: Chat::with_config(protocol, &config).expect("valid first terminator"),
        now: Instant::now(),
        written: Vec::new(),
    };
    if !s.start_connecting {
        d.apply(&Ev::Connected);
    }
    let mut total = 0usize;
    for ev in &input.events {
        if let Ev::Read(data) | Ev::ReadWith(data) | Ev::Push(data) = ev {
            total += data.len();
        }
        if total > 64 << 10 {
            return;
        }
        d.apply(ev);
    }
    // The peer goes away politely: the connection must then finish, writing all it accepted.
    for ev in [
        Ev::Connected,
        Ev::Resume,
        Ev::Flush,
        Ev::Eof,
        Ev::Flush,
        Ev::Resume,
        Ev::Flush,
        Ev::CloseWhenDone,
        Ev::Flush,
    ] {
        d.apply(&ev);
    }
    assert!(
        d.chat.is_closed(),
        "still {:?} after EOF and close_when_done",
        d.chat.state()
    );
});
