//! The protocol the suite runs on every driver: echoes frames and obeys a few commands, and
//! records what happened to it in a shared log the test can read.

use std::sync::{Arc, Mutex};

use asynchat_core::{Bytes, CloseReason, Context, Frame, Protocol, Terminator, Timer};

/// What a probe saw.
#[derive(Debug, Default)]
pub struct Log {
    /// Why each probe closed, in order.
    pub closed: Vec<CloseReason>,
    /// The most bytes any probe had queued after a callback.
    pub max_queued: usize,
    /// Frames received, across all probes.
    pub frames: usize,
}

/// A shared [`Log`].
pub type SharedLog = Arc<Mutex<Log>>;

/// The deterministic byte pattern of `big` replies: byte `i` of a reply.
#[must_use]
pub fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 11)) as u8
}

/// Echoes each frame followed by `\n`, except these commands:
/// `count N` (the next N bytes are one frame), `until-eof` (the rest of the stream is one frame),
/// `big N` (replies N pattern bytes), `bigq N` (the same, then closes when done), `later MS`
/// (replies `tick` once MS milliseconds have passed), `bye`.
#[derive(Debug)]
pub struct Probe {
    first: Terminator,
    log: SharedLog,
}

impl Probe {
    /// A probe whose frames end with `terminator`.
    pub fn new(terminator: impl Into<Terminator>, log: &SharedLog) -> Self {
        Self {
            first: terminator.into(),
            log: log.clone(),
        }
    }

    fn big(n: usize) -> Bytes {
        (0..n).map(pattern).collect::<Vec<u8>>().into()
    }
}

impl Protocol for Probe {
    fn first_terminator(&self) -> Terminator {
        self.first.clone()
    }

    fn found_terminator(&mut self, ctx: &mut Context<'_>, frame: Frame<'_>) {
        self.log.lock().unwrap().frames += 1;
        let text = std::str::from_utf8(&frame).unwrap_or("");
        let (command, arg) = text.split_once(' ').unwrap_or((text, ""));
        let n = arg.parse::<usize>().ok();
        let in_command_frame = ctx.terminator() == self.first;
        match (command, n) {
            ("count", Some(n)) if in_command_frame => ctx.set_terminator(n).unwrap(),
            ("until-eof", _) if in_command_frame => ctx.set_terminator(Terminator::Eof).unwrap(),
            ("big", Some(n)) if in_command_frame => ctx.push(Self::big(n)),
            ("bigq", Some(n)) if in_command_frame => {
                ctx.push(Self::big(n));
                ctx.close_when_done();
            }
            ("later", Some(ms)) if in_command_frame => {
                let at = ctx.now() + std::time::Duration::from_millis(ms as u64);
                ctx.set_timer(LATER, at);
            }
            ("bye", _) if in_command_frame => {
                ctx.push("bye\n");
                ctx.close_when_done();
            }
            _ => {
                ctx.push(frame);
                ctx.push("\n");
                if !in_command_frame {
                    ctx.set_terminator(self.first.clone()).unwrap();
                }
            }
        }
        let queued = ctx.queued_bytes();
        let mut log = self.log.lock().unwrap();
        log.max_queued = log.max_queued.max(queued);
    }

    fn timeout(&mut self, ctx: &mut Context<'_>, timer: Timer) {
        match timer {
            Timer::Custom(LATER) => ctx.push("tick\n"),
            Timer::Idle => ctx.close_because(CloseReason::TimedOut),
            _ => {}
        }
    }

    fn closed(&mut self, reason: &CloseReason) {
        self.log.lock().unwrap().closed.push(reason.clone());
    }
}

/// The deadline `later` arms.
const LATER: u32 = 1;
