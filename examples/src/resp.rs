//! An in-memory key–value server speaking a subset of the Redis protocol (RESP2), enough for
//! `redis-cli` and `redis-benchmark`.
//!
//! Framing is the asynchat switch again: a request line ends with `\n`, `\r\n` in RESP (an inline
//! command, or
//! an array header `*N`, then one `$LEN` line per argument), and each argument's bytes are read
//! with `Count(LEN + 2)`, so a value is never scanned for delimiters.
//!
//! Commands: `PING`, `ECHO`, `SET` (with `EX`/`PX`/`NX`/`XX`), `GET`, `DEL`, `EXISTS`, `INCR`,
//! `DECR`, `MGET`, `MSET`, `DBSIZE`, `FLUSHALL`, lists (`LPUSH`, `RPUSH`, `LPOP`, `RPOP`, with
//! or without a count, `LRANGE`, `LLEN`), sets (`SADD`, `SPOP`, `SCARD`), hashes (`HSET`,
//! `HGET`), `COMMAND` (an empty reply, as redis-cli needs), `CONFIG GET` (empty, for
//! redis-benchmark), `SELECT 0`, `QUIT`: what `redis-benchmark`'s default suite runs but for
//! sorted sets and streams. Errors are in Redis's own words, `WRONGTYPE` included.
//! A list is packed as Redis packs one: its elements side by side in buffers of 4 KiB, with
//! no allocation per element (a million three-byte elements take about 5 MB), and `LRANGE`
//! writes them from there straight into the reply.
//! Keys with a deadline are dropped when touched after it, and by the store's active expiry
//! cycle, run on the timers of connections that set deadlines and after any command
//! ([`EXPIRE_EVERY`], see [`Store`]).
//! A protocol error (a bad header, a bulk over [`MAX_BULK`], an array over [`MAX_ARGS`], an inline
//! request over [`MAX_INLINE`]) is answered and closes that connection only.
//!
//! ```
//! use asynchat_core::testing::Harness;
//! use asynchat_examples::resp::{Resp, Store};
//!
//! let store = Store::new();
//! let mut h = Harness::new(Resp::new(store.clone()));
//! h.send("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\nGET k\r\n");
//! assert_eq!(h.take_output(), "+OK\r\n$5\r\nhello\r\n");
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod list;
mod store;

use store::{Cycle, Entry, Hashed, Shard, Value};
pub use store::{Store, EXPIRE_EVERY, EXPIRE_PER_CYCLE, MAX_SHARDS};

use crate::{set_delimiter, Decimal};
use asynchat_core::{
    Bytes, CloseReason, Config, Context, Frame, OverLongPolicy, Protocol, Terminator, Timer,
};

/// The largest bulk string accepted, in bytes.
pub const MAX_BULK: u64 = 8 << 20;

/// The most arguments one command may have.
pub const MAX_ARGS: u64 = 1 << 20;

/// The most argument bytes one command may carry in total.
pub const MAX_COMMAND: u64 = 64 << 20;

/// The longest inline command or header line, in bytes (Redis's own limit).
pub const MAX_INLINE: usize = 64 << 10;

/// The connection limits the server expects: request lines up to [`MAX_INLINE`], a longer one
/// answered with a protocol error before the connection closes.
#[must_use]
pub fn config() -> Config {
    Config::default()
        .max_frame(MAX_INLINE)
        .max_counted_frame(MAX_BULK + 2)
        .over_long(OverLongPolicy::Skip)
}

/// The timer id of the expiry cycle.
const EXPIRY_TIMER: u32 = 1;

/// What the connection is reading.
#[derive(Debug)]
enum Reading {
    /// A request's first line.
    Request,
    /// `$LEN` of argument `args.len()` of `total`.
    BulkHeader { total: u64 },
    /// The bytes of an argument (and its `\r\n`).
    Bulk { total: u64 },
}

/// A reply, written in RESP2.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Ok,
    Simple(&'static str),
    Error(String),
    Integer(i64),
    Bulk(Bytes),
    Nil,
    /// RESP2's null array: what a pop with a count answers for a missing key.
    NilArray,
    Array(Vec<Self>),
    /// Already written to the output buffer (a value copied while the store was locked).
    Sent,
}

impl Reply {
    /// Writes the reply straight into the connection's output buffer: no allocation, a long
    /// value pushed as it is.
    fn write(self, ctx: &mut Context<'_>) {
        let mut digits = Decimal::default();
        match self {
            Self::Ok => ctx.push_slice(b"+OK\r\n"),
            Self::Simple(s) => ctx.push_slices(&[b"+", s.as_bytes(), b"\r\n"]),
            // An error may quote the client's arguments: a line break in it would end the reply
            // early and make the client read the rest as another (Redis turns them into spaces).
            Self::Error(e) => ctx.push(format!("-{}\r\n", e.replace(['\r', '\n'], " "))),
            Self::Integer(n) => ctx.push_slices(&[b":", digits.of(n), b"\r\n"]),
            Self::Nil => ctx.push_slice(b"$-1\r\n"),
            Self::NilArray => ctx.push_slice(b"*-1\r\n"),
            Self::Bulk(b) => Self::bulk(ctx, &b),
            Self::Array(items) => {
                Self::array_header(ctx, items.len());
                for item in items {
                    item.write(ctx);
                }
            }
            Self::Sent => {}
        }
    }

    /// Writes the header of an array of `len` replies (the replies follow).
    fn array_header(ctx: &mut Context<'_>, len: usize) {
        let mut digits = Decimal::default();
        ctx.push_slices(&[b"*", digits.of(len as i64), b"\r\n"]);
    }

    /// Writes a bulk string held in two pieces, one after the other, copied.
    fn bulk_copied(ctx: &mut Context<'_>, first: &[u8], second: &[u8]) {
        let mut digits = Decimal::default();
        let len = digits.of((first.len() + second.len()) as i64);
        ctx.push_slices(&[b"$", len, b"\r\n", first, second, b"\r\n"]);
    }

    /// Writes a bulk string: a short one copied, a long one as a slice shared with the store.
    fn bulk(ctx: &mut Context<'_>, value: &Bytes) {
        if value.len() < asynchat_core::outbox::DEFAULT_COALESCE_BELOW {
            Self::bulk_copied(ctx, value, &[]);
        } else {
            let mut digits = Decimal::default();
            let len = digits.of(value.len() as i64);
            ctx.push_slices(&[b"$", len, b"\r\n"]);
            ctx.push(value.clone());
            ctx.push_slice(b"\r\n");
        }
    }
}

fn arity(name: &str) -> Reply {
    Reply::Error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

fn wrong_type() -> Reply {
    Reply::Error("WRONGTYPE Operation against a key holding the wrong kind of value".into())
}

fn not_integer() -> Reply {
    Reply::Error("ERR value is not an integer or out of range".into())
}

/// An integer as `str::parse::<i64>` reads one (an optional sign, then decimal digits), read
/// from the bytes without checking them as UTF-8 first: every header of a request is one.
fn parse_int(b: &[u8]) -> Option<i64> {
    let (negative, digits) = match b {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, b),
    };
    if digits.is_empty() {
        return None;
    }
    // Accumulated towards the sign, so that i64::MIN is read as well as i64::MAX.
    digits.iter().try_fold(0i64, |n, &d| {
        let digit = i64::from(d.wrapping_sub(b'0'));
        if digit > 9 {
            return None;
        }
        let n = n.checked_mul(10)?;
        if negative {
            n.checked_sub(digit)
        } else {
            n.checked_add(digit)
        }
    })
}

/// An integer written as Redis writes one: Redis refuses "+1", " 1" and "01"; so does this.
fn parse_strict_int(b: &[u8]) -> Option<i64> {
    parse_int(b).filter(|&n| Decimal::default().of(n) == b)
}

/// What [`Shard::put`] takes of an argument: a shared one as it is (no copy), else nothing.
fn shared(arg: &Frame<'_>) -> Option<Bytes> {
    (!arg.is_lent()).then(|| owned(arg))
}

/// The arguments of the command being read: short ones copied back to back into one buffer
/// (no allocation per argument), long ones kept as the shared frames they came in.
#[derive(Debug, Default)]
struct Args {
    bytes: Vec<u8>,
    spans: Vec<Span>,
}

#[derive(Debug)]
enum Span {
    Copied(std::ops::Range<usize>),
    Shared(Bytes),
}

/// Arguments handed to a command on the stack (`SET key value EX n NX` has six); more (an
/// `MSET` of many pairs) take a `Vec`. Every slot is made and dropped for each command, so the
/// array is no longer than the common commands need.
const ARGS_ON_STACK: usize = 6;

/// The buffer kept between commands: what is over it is given back once the command ran.
const ARGS_KEPT: usize = 16 << 10;

impl Args {
    fn len(&self) -> usize {
        self.spans.len()
    }

    fn push(&mut self, arg: &[u8], shared: Option<Bytes>) {
        match shared {
            Some(bytes) => self.spans.push(Span::Shared(bytes)),
            None => {
                let start = self.bytes.len();
                self.bytes.extend_from_slice(arg);
                self.spans.push(Span::Copied(start..self.bytes.len()));
            }
        }
    }

    fn clear(&mut self) {
        self.spans.clear();
        self.bytes.clear();
        if self.bytes.capacity() > ARGS_KEPT {
            self.bytes = Vec::new();
        }
        if self.spans.capacity() > ARGS_KEPT {
            self.spans = Vec::new();
        }
    }

    /// Runs `f` on the arguments, each a [`Frame`]: lent from the buffer, or shared.
    fn with<R>(&self, f: impl FnOnce(&[Frame<'_>]) -> R) -> R {
        let frame = |span: &Span| match span {
            Span::Copied(range) => Frame::lent(&self.bytes[range.clone()]),
            Span::Shared(bytes) => Frame::from(bytes.clone()),
        };
        if self.spans.len() <= ARGS_ON_STACK {
            let mut on_stack = [const { Frame::new() }; ARGS_ON_STACK];
            for (slot, span) in on_stack.iter_mut().zip(&self.spans) {
                *slot = frame(span);
            }
            f(&on_stack[..self.spans.len()])
        } else {
            f(&self.spans.iter().map(frame).collect::<Vec<_>>())
        }
    }
}

/// An argument as the store keeps it: a copy of a lent one, a shared one as it is.
fn owned(arg: &Frame<'_>) -> Bytes {
    arg.clone().into_bytes()
}

/// The Redis-protocol server side of one connection.
#[derive(Debug)]
pub struct Resp {
    store: Arc<Store>,
    clock: fn() -> SystemTime,
    reading: Reading,
    args: Args,
    command_bytes: u64,
    closing: bool,
    /// The expiry cycle's timer is set.
    expiry_armed: std::cell::Cell<bool>,
}

impl Resp {
    /// A connection on `store`.
    #[must_use]
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            clock: SystemTime::now,
            reading: Reading::Request,
            args: Args::default(),
            command_bytes: 0,
            closing: false,
            expiry_armed: std::cell::Cell::new(false),
        }
    }

    /// Reads the wall clock from `clock` instead of [`SystemTime::now`]. It bounds `EX`/`PX` as
    /// Redis does (the deadline in Unix milliseconds must fit an `i64`); expiry itself follows
    /// the connection's monotonic clock.
    #[must_use]
    pub fn clock(mut self, clock: fn() -> SystemTime) -> Self {
        self.clock = clock;
        self
    }

    /// Answers a protocol error and closes the connection once the reply is written.
    fn protocol_error(&mut self, ctx: &mut Context<'_>, what: &str) {
        Reply::Error(format!("ERR Protocol error: {what}")).write(ctx);
        self.closing = true;
        ctx.close_when_done();
    }

    fn request_line(&mut self, ctx: &mut Context<'_>, line: &[u8]) {
        let Some(header) = line.strip_prefix(b"*") else {
            self.args.clear();
            for arg in line
                .split(|b| b.is_ascii_whitespace())
                .filter(|a| !a.is_empty())
            {
                self.args.push(arg, None);
            }
            if self.args.len() > 0 {
                self.execute(ctx);
            }
            return;
        };
        match parse_int(header) {
            // As Redis does: an empty or null array is no command at all.
            Some(n) if n <= 0 => {}
            Some(n) if n.unsigned_abs() <= MAX_ARGS => {
                let total = n.unsigned_abs();
                self.args.clear();
                self.command_bytes = 0;
                self.reading = Reading::BulkHeader { total };
            }
            _ => self.protocol_error(ctx, "invalid multibulk length"),
        }
    }

    fn bulk_header(&mut self, ctx: &mut Context<'_>, line: &[u8], total: u64) {
        let Some(len) = line.strip_prefix(b"$") else {
            let got = line
                .first()
                .map_or(String::new(), |&b| (b as char).to_string());
            return self.protocol_error(ctx, &format!("expected '$', got '{got}'"));
        };
        match parse_int(len) {
            Some(len) if (0..=MAX_BULK as i64).contains(&len) => {
                let len = len.unsigned_abs();
                self.command_bytes += len;
                if self.command_bytes > MAX_COMMAND {
                    return self.protocol_error(ctx, "command too large");
                }
                self.reading = Reading::Bulk { total };
                // Already checked against MAX_BULK, under the chat's counted-frame bound.
                ctx.set_count(len + 2);
            }
            _ => self.protocol_error(ctx, "invalid bulk length"),
        }
    }

    fn bulk(&mut self, ctx: &mut Context<'_>, data: Frame<'_>, total: u64) {
        if !data.ends_with(b"\r\n") {
            return self.protocol_error(ctx, "bulk string not ended by CRLF");
        }
        let len = data.len() - 2;
        if data.is_lent() {
            self.args.push(&data[..len], None);
        } else {
            let mut value = data.into_bytes();
            value.truncate(len);
            self.args.push(&[], Some(value));
        }
        set_delimiter(ctx, b"\n");
        if self.args.len() as u64 == total {
            self.reading = Reading::Request;
            self.execute(ctx);
        } else {
            self.reading = Reading::BulkHeader { total };
        }
    }

    /// Runs the command whose arguments were read, and forgets them.
    fn execute(&mut self, ctx: &mut Context<'_>) {
        let now = ctx.now();
        let (reply, quit) = self.args.with(|args| {
            // Command names are short and ASCII: lower-cased on the stack.
            let mut lower = [0u8; 16];
            let owned_name;
            let name = match lower.get_mut(..args[0].len()) {
                Some(lower) => {
                    lower.copy_from_slice(&args[0]);
                    lower.make_ascii_lowercase();
                    std::str::from_utf8(lower).unwrap_or("\u{fffd}")
                }
                None => {
                    owned_name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
                    &owned_name
                }
            };
            if name == "quit" {
                return (Reply::Ok, true);
            }
            (self.command(name, args, now, ctx), false)
        });
        self.args.clear();
        reply.write(ctx);
        // The store's cycle, if no connection's timer ran it in time (all that set deadlines
        // may have closed).
        if self.store.cycle_due(now) {
            self.store.run_cycle_if_due(now);
        }
        if quit {
            self.closing = true;
            ctx.close_when_done();
        }
    }

    fn command(
        &self,
        name: &str,
        args: &[Frame<'_>],
        now: Instant,
        ctx: &mut Context<'_>,
    ) -> Reply {
        let rest = &args[1..];
        match (name, rest.len()) {
            ("ping", 0) => Reply::Simple("PONG"),
            ("ping", 1) | ("echo", 1) => Reply::Bulk(owned(&rest[0])),
            ("ping" | "echo", _) => arity(name),
            ("get", 1) => {
                let key = self.store.key(&rest[0]);
                match self.store.shard(&key).live(key, now).map(|e| &e.value) {
                    None => Reply::Nil,
                    // Written under the lock: no reference count taken on the value.
                    Some(Value::Str(v)) => {
                        Reply::bulk(ctx, v);
                        Reply::Sent
                    }
                    Some(_) => wrong_type(),
                }
            }
            ("set", 2..) => self.set(rest, now, ctx),
            ("del", 1..) => {
                let keys = self.keys(rest);
                let mut locked = self.store.lock_for(&keys);
                // Removed as counted, so a key named twice counts once, as in Redis; an expired
                // key is removed but not counted.
                let n = keys
                    .iter()
                    .filter(|&&k| locked.shard(&k).remove(k).is_some_and(|e| e.live(now)))
                    .count();
                Reply::Integer(n as i64)
            }
            ("exists", 1..) => {
                let keys = self.keys(rest);
                let mut locked = self.store.lock_for(&keys);
                Reply::Integer(
                    keys.iter()
                        .filter(|&&k| locked.shard(&k).live(k, now).is_some())
                        .count() as i64,
                )
            }
            ("incr", 1) => self.add(&rest[0], 1, now),
            ("decr", 1) => self.add(&rest[0], -1, now),
            ("mget", 1..) => {
                let keys = self.keys(rest);
                let mut locked = self.store.lock_for(&keys);
                Reply::Array(
                    keys.iter()
                        // A key of another type reads as missing, as in Redis.
                        .map(|&k| match locked.shard(&k).live(k, now).map(|e| &e.value) {
                            Some(Value::Str(v)) => Reply::Bulk(v.clone()),
                            _ => Reply::Nil,
                        })
                        .collect(),
                )
            }
            ("mset", n) if n > 0 && n % 2 == 0 => {
                let keys: Vec<Hashed<'_>> =
                    rest.iter().step_by(2).map(|k| self.store.key(k)).collect();
                let mut locked = self.store.lock_for(&keys);
                for (&key, pair) in keys.iter().zip(rest.chunks_exact(2)) {
                    locked
                        .shard(&key)
                        .put(key, &pair[1], shared(&pair[1]), None);
                }
                Reply::Ok
            }
            ("lpush" | "rpush", 2..) => self.push(rest, now, name == "lpush"),
            ("lpop" | "rpop" | "spop", 1 | 2) => self.pop(name, rest, now),
            ("lrange", 3) => self.lrange(ctx, rest, now),
            ("llen", 1) => {
                self.with_aggregate(&rest[0], now, None, Reply::Integer(0), |v| match v {
                    Value::List(l) => Reply::Integer(l.len() as i64),
                    _ => wrong_type(),
                })
            }
            ("sadd", 2..) => self.sadd(rest, now),
            ("scard", 1) => {
                self.with_aggregate(&rest[0], now, None, Reply::Integer(0), |v| match v {
                    Value::Set(s) => Reply::Integer(s.len() as i64),
                    _ => wrong_type(),
                })
            }
            ("hset", n) if n >= 3 && n % 2 == 1 => self.hset(rest, now),
            ("hget", 2) => self.with_aggregate(&rest[0], now, None, Reply::Nil, |v| match v {
                Value::Hash(h) => h.get(&rest[1][..]).cloned().map_or(Reply::Nil, Reply::Bulk),
                _ => wrong_type(),
            }),
            ("dbsize", 0) => {
                let mut all = self.store.lock_all();
                Reply::Integer(all.shards().map(|s| s.live_len(now)).sum::<usize>() as i64)
            }
            ("flushall" | "flushdb", 0) => {
                self.store.lock_all().shards().for_each(Shard::clear);
                Reply::Ok
            }
            ("flushall" | "flushdb", 1)
                if [&b"ASYNC"[..], b"SYNC"]
                    .iter()
                    .any(|m| rest[0].eq_ignore_ascii_case(m)) =>
            {
                self.store.lock_all().shards().for_each(Shard::clear);
                Reply::Ok
            }
            // redis-cli asks for command docs on start-up; an empty answer is allowed.
            ("command", _) => Reply::Array(Vec::new()),
            ("config", 2) if rest[0].eq_ignore_ascii_case(b"get") => Reply::Array(Vec::new()),
            ("select", 1) if rest[0][..] == b"0"[..] => Reply::Ok,
            ("select", 1) => Reply::Error("ERR DB index is out of range".into()),
            (
                "get" | "set" | "del" | "exists" | "incr" | "decr" | "mget" | "mset" | "dbsize"
                | "flushall" | "flushdb" | "config" | "select" | "lpush" | "rpush" | "lpop"
                | "rpop" | "spop" | "lrange" | "llen" | "sadd" | "scard" | "hset" | "hget",
                _,
            ) => arity(name),
            _ => {
                let mut message = format!(
                    "ERR unknown command '{}', with args beginning with: ",
                    String::from_utf8_lossy(&args[0])
                );
                for arg in rest.iter().take(8) {
                    message.push_str(&format!("'{}' ", String::from_utf8_lossy(arg)));
                }
                Reply::Error(message)
            }
        }
    }

    fn set(&self, rest: &[Frame<'_>], now: Instant, ctx: &mut Context<'_>) -> Reply {
        let (key, value) = (&rest[0], &rest[1]);
        let (mut ttl, mut nx, mut xx) = (None, false, false);
        let mut options = rest[2..].iter();
        // Every option is read before the time to live is checked: Redis reports a syntax error
        // ahead of a bad expire time.
        while let Some(option) = options.next() {
            let option = option.to_ascii_uppercase();
            match &option[..] {
                b"NX" if !xx => nx = true,
                b"XX" if !nx => xx = true,
                // Repeating the same unit is allowed, the last one counting, as in Redis.
                b"EX" | b"PX" if ttl.is_none_or(|(ex, _)| ex == (option[..] == b"EX"[..])) => {
                    let Some(amount) = options.next() else {
                        return Reply::Error("ERR syntax error".into());
                    };
                    ttl = Some((option[..] == b"EX"[..], amount));
                }
                _ => return Reply::Error("ERR syntax error".into()),
            }
        }
        let expires = match ttl {
            None => None,
            Some((seconds, amount)) => match self.expiry(seconds, amount, now) {
                Ok(at) => Some(at),
                Err(reply) => return reply,
            },
        };
        let hashed = self.store.key(key);
        let mut shard = self.store.shard(&hashed);
        if nx || xx {
            let exists = shard.live(hashed, now).is_some();
            if (nx && exists) || (xx && !exists) {
                return Reply::Nil;
            }
        }
        shard.put(hashed, value, shared(value), expires);
        if let Some(at) = expires {
            shard.add_deadline(at, hashed);
            drop(shard);
            self.store.schedule_cycle(now);
            if !self.expiry_armed.replace(true) {
                ctx.set_timer(EXPIRY_TIMER, now + EXPIRE_EVERY);
            }
        }
        Reply::Ok
    }

    /// The expiry timer: runs the store's cycle if it is due, and comes back while any deadline
    /// is left (at once if more were due than one cycle drops, when the cycle is next due if
    /// another connection ran it).
    fn expiry_timer(&self, ctx: &mut Context<'_>) {
        let now = ctx.now();
        match self.store.run_cycle_if_due(now) {
            Cycle::Ran { more_due: true, .. } => ctx.set_timer(EXPIRY_TIMER, now),
            Cycle::Ran { any_left: true, .. } => ctx.set_timer(EXPIRY_TIMER, now + EXPIRE_EVERY),
            Cycle::Ran { .. } => self.expiry_armed.set(false),
            Cycle::NotDue(next) => ctx.set_timer(EXPIRY_TIMER, next),
        }
    }

    /// When a key set with `EX amount` (`seconds`) or `PX amount` expires, by Redis's rules: a
    /// strict integer (else "not an integer"), positive, and an absolute Unix time in milliseconds
    /// that fits an `i64` (else "invalid expire time").
    fn expiry(&self, seconds: bool, amount: &[u8], now: Instant) -> Result<Instant, Reply> {
        let invalid = || Reply::Error("ERR invalid expire time in 'set' command".into());
        let amount = parse_strict_int(amount).ok_or_else(not_integer)?;
        if amount <= 0 {
            return Err(invalid());
        }
        let millis = if seconds {
            amount.checked_mul(1000).ok_or_else(invalid)?
        } else {
            amount
        };
        // Redis stores the deadline as Unix milliseconds and refuses one past i64::MAX; the wall
        // clock matters only for that bound, the deadline itself runs on the monotonic `now`.
        let unix_millis = (self.clock)()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        unix_millis.checked_add(millis).ok_or_else(invalid)?;
        now.checked_add(Duration::from_millis(millis.unsigned_abs()))
            .ok_or_else(invalid)
    }

    fn add(&self, key: &Frame<'_>, by: i64, now: Instant) -> Reply {
        let key = self.store.key(key);
        let mut shard = self.store.shard(&key);
        let (current, expires) = match shard.live(key, now) {
            None => (0, None),
            Some(Entry {
                value: Value::Str(v),
                expires,
            }) => match parse_strict_int(v) {
                Some(n) => (n, *expires),
                None => return not_integer(),
            },
            Some(_) => return wrong_type(),
        };
        let Some(next) = current.checked_add(by) else {
            return Reply::Error("ERR increment or decrement would overflow".into());
        };
        shard.put(key, Decimal::default().of(next), None, expires);
        Reply::Integer(next)
    }

    /// The keys a command names, hashed.
    fn keys<'k>(&self, args: &'k [Frame<'_>]) -> Vec<Hashed<'k>> {
        args.iter().map(|k| self.store.key(k)).collect()
    }

    /// Runs `f` on the aggregate at `key` (made by `new` if missing; `None` if it may not be
    /// made, for reads and pops), `WRONGTYPE` for a key of another type. An aggregate left empty
    /// is removed.
    fn with_aggregate(
        &self,
        key: &Frame<'_>,
        now: Instant,
        new: Option<fn() -> Value>,
        missing: Reply,
        f: impl FnOnce(&mut Value) -> Reply,
    ) -> Reply {
        let key = self.store.key(key);
        let mut shard = self.store.shard(&key);
        let entry = match new {
            Some(new) => shard.live_or_insert(key, now, new),
            None => match shard.live(key, now) {
                Some(entry) => entry,
                None => return missing,
            },
        };
        if let Value::Str(_) = entry.value {
            return wrong_type();
        }
        let reply = f(&mut entry.value);
        if entry.value.is_empty_aggregate() {
            shard.remove(key);
        }
        reply
    }

    /// `LPUSH` / `RPUSH`: the list's length after.
    fn push(&self, rest: &[Frame<'_>], now: Instant, front: bool) -> Reply {
        let new: fn() -> Value = || Value::List(Box::default());
        self.with_aggregate(&rest[0], now, Some(new), Reply::Nil, |value| {
            let Value::List(list) = value else {
                return wrong_type();
            };
            for item in &rest[1..] {
                if front {
                    list.push_front(item);
                } else {
                    list.push_back(item);
                }
            }
            Reply::Integer(list.len() as i64)
        })
    }

    /// `LPOP` / `RPOP` / `SPOP`, with or without a count: one bulk (nil if missing), or an
    /// array of up to `count`.
    fn pop(&self, name: &str, rest: &[Frame<'_>], now: Instant) -> Reply {
        let count = match rest.get(1) {
            None => None,
            Some(n) => match parse_strict_int(n) {
                Some(n) if n >= 0 => Some(n.unsigned_abs()),
                _ => return Reply::Error("ERR value is out of range, must be positive".into()),
            },
        };
        // Redis's own asymmetry: a list pop with a count answers a missing key with a null
        // array, a set pop with an empty one.
        let missing = match (count, name) {
            (None, _) => Reply::Nil,
            (Some(_), "spop") => Reply::Array(Vec::new()),
            (Some(_), _) => Reply::NilArray,
        };
        self.with_aggregate(&rest[0], now, None, missing, |value| {
            let kind_fits = matches!(
                (name, &*value),
                ("lpop" | "rpop", Value::List(_)) | ("spop", Value::Set(_))
            );
            if !kind_fits {
                return wrong_type();
            }
            let mut take = || match (name, &mut *value) {
                ("lpop", Value::List(l)) => l.pop_front(),
                ("rpop", Value::List(l)) => l.pop_back(),
                ("spop", Value::Set(s)) => {
                    let member = s.iter().next().cloned()?;
                    let taken = s.take(&member);
                    // A set emptied from its first buckets would make each next pop scan the
                    // emptied ones: shrunk as it drains (amortised, under the store's lock).
                    if s.len() < s.capacity() / 4 {
                        s.shrink_to_fit();
                    }
                    taken
                }
                _ => None,
            };
            match count {
                None => take().map_or(Reply::Nil, Reply::Bulk),
                Some(n) => Reply::Array(
                    std::iter::from_fn(&mut take)
                        .take(usize::try_from(n).unwrap_or(usize::MAX))
                        .map(Reply::Bulk)
                        .collect(),
                ),
            }
        })
    }

    /// `LRANGE key start stop`, indices from the end when negative, as Redis reads them.
    fn lrange(&self, ctx: &mut Context<'_>, rest: &[Frame<'_>], now: Instant) -> Reply {
        let (Some(start), Some(stop)) = (parse_strict_int(&rest[1]), parse_strict_int(&rest[2]))
        else {
            return not_integer();
        };
        self.with_aggregate(&rest[0], now, None, Reply::Array(Vec::new()), |value| {
            let Value::List(list) = value else {
                return wrong_type();
            };
            let len = list.len() as i64;
            let from_end = |i: i64| if i < 0 { len + i } else { i };
            let (start, stop) = (from_end(start).max(0), from_end(stop).min(len - 1));
            if start > stop {
                return Reply::Array(Vec::new());
            }
            // Written under the lock, from the list's packs: no copy of each element made first.
            Reply::array_header(ctx, (stop - start + 1) as usize);
            list.each_in(start as usize, stop as usize, |a, b| {
                Reply::bulk_copied(ctx, a, b);
                // Past the output limit the connection has closed: the rest would be dropped.
                ctx.state() != asynchat_core::State::Closed
            });
            Reply::Sent
        })
    }

    /// `SADD key member...`: how many were not members yet.
    fn sadd(&self, rest: &[Frame<'_>], now: Instant) -> Reply {
        let new: fn() -> Value = || Value::Set(Box::default());
        self.with_aggregate(&rest[0], now, Some(new), Reply::Nil, |value| {
            let Value::Set(set) = value else {
                return wrong_type();
            };
            let added = rest[1..].iter().filter(|m| set.insert(owned(m))).count();
            Reply::Integer(added as i64)
        })
    }

    /// `HSET key field value...`: how many fields are new.
    fn hset(&self, rest: &[Frame<'_>], now: Instant) -> Reply {
        let new: fn() -> Value = || Value::Hash(Box::default());
        self.with_aggregate(&rest[0], now, Some(new), Reply::Nil, |value| {
            let Value::Hash(hash) = value else {
                return wrong_type();
            };
            let added = rest[1..]
                .chunks_exact(2)
                .filter(|pair| hash.insert(owned(&pair[0]), owned(&pair[1])).is_none())
                .count();
            Reply::Integer(added as i64)
        })
    }
}

impl Protocol for Resp {
    fn first_terminator(&self) -> Terminator {
        "\n".into()
    }

    fn timeout(&mut self, ctx: &mut Context<'_>, timer: Timer) {
        match timer {
            Timer::Custom(EXPIRY_TIMER) => self.expiry_timer(ctx),
            Timer::Idle => ctx.close_because(CloseReason::TimedOut),
            Timer::Frame => ctx.close_because(CloseReason::FrameTimedOut),
            _ => {}
        }
    }

    fn found_terminator(&mut self, ctx: &mut Context<'_>, frame: Frame<'_>) {
        if self.closing {
            return;
        }
        // Lines end with `\r\n` in RESP; Redis also takes a bare `\n` (typed inline commands).
        let line = || frame.strip_suffix(b"\r").unwrap_or(&frame);
        match self.reading {
            Reading::Request => self.request_line(ctx, line()),
            Reading::BulkHeader { total } => self.bulk_header(ctx, line(), total),
            Reading::Bulk { total } => self.bulk(ctx, frame, total),
        }
    }

    fn frame_too_long(&mut self, ctx: &mut Context<'_>, _limit: usize) {
        self.protocol_error(ctx, "too big inline request");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use asynchat_core::testing::{Harness, Replay};
    use asynchat_core::State;

    fn command(args: &[&str]) -> String {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        out
    }

    /// A connection on a store in several shards, so that commands on several keys lock
    /// several.
    fn session() -> (Harness<Resp>, Arc<Store>) {
        let store = Store::with_shards(8);
        (
            Harness::with_config(Resp::new(store.clone()), &config()),
            store,
        )
    }

    fn ask(h: &mut Harness<Resp>, args: &[&str]) -> String {
        h.send(command(args));
        String::from_utf8_lossy(&h.take_output()).into_owned()
    }

    #[test]
    fn the_expiry_cycle_drops_keys_never_read_again_on_the_virtual_clock() {
        let (mut h, store) = session();
        ask(&mut h, &["SET", "soon", "1", "PX", "150"]);
        ask(&mut h, &["SET", "later", "1", "PX", "10000"]);
        ask(&mut h, &["SET", "kept", "1"]);
        // A deadline overwritten by a plain SET, and one moved later: neither may drop its key.
        ask(&mut h, &["SET", "persisted", "1", "PX", "50"]);
        ask(&mut h, &["SET", "persisted", "2"]);
        ask(&mut h, &["SET", "moved", "1", "PX", "50"]);
        ask(&mut h, &["SET", "moved", "1", "PX", "5000"]);
        assert_eq!(store.held(), 5);
        h.advance(Duration::from_millis(120));
        assert_eq!(store.held(), 5, "nothing due at the first cycle");
        h.advance(Duration::from_millis(100));
        assert_eq!(store.held(), 4, "`soon` dropped without being read");
        assert_eq!(ask(&mut h, &["GET", "persisted"]), "$1\r\n2\r\n");
        assert_eq!(ask(&mut h, &["GET", "moved"]), "$1\r\n1\r\n");
        h.advance(Duration::from_secs(10));
        assert_eq!(store.held(), 2, "`later` and `moved` dropped");
        assert_eq!(store.deadlines(), 0, "every deadline consumed");
        // No deadline left: the cycle stopped, and a new one starts it again.
        assert!(!h.protocol().expiry_armed.get());
        ask(&mut h, &["SET", "again", "1", "PX", "10"]);
        h.advance(Duration::from_millis(200));
        assert_eq!(store.held(), 2);
        assert_eq!(h.chat().close_reason(), None, "the timer is not a timeout");
    }

    #[test]
    fn the_cycle_runs_after_another_connections_command_once_the_setter_closed() {
        let store = Store::with_shards(8);
        let mut setter = Harness::with_config(Resp::new(store.clone()), &config());
        for i in 0..10 {
            ask(&mut setter, &["SET", &format!("k{i}"), "v", "PX", "50"]);
        }
        ask(&mut setter, &["SET", "kept", "v"]);
        drop(setter);
        let mut other = Harness::with_config(Resp::new(store.clone()), &config());
        assert_eq!(ask(&mut other, &["PING"]), "+PONG\r\n");
        assert_eq!(store.held(), 11, "nothing due yet");
        other.advance(EXPIRE_EVERY * 2);
        assert_eq!(
            store.held(),
            11,
            "a connection that set no deadline keeps no timer"
        );
        assert_eq!(ask(&mut other, &["PING"]), "+PONG\r\n");
        assert_eq!(store.held(), 1, "the keys due dropped after a command");
        assert!(!other.protocol().expiry_armed.get());
    }

    #[test]
    fn one_cycle_for_the_store_however_many_connections_set_deadlines() {
        let store = Store::new();
        let mut a = Harness::with_config(Resp::new(store.clone()), &config());
        let mut b = Harness::with_config(Resp::new(store.clone()), &config());
        ask(&mut a, &["SET", "a", "v", "PX", "10"]);
        ask(&mut b, &["SET", "b", "v", "PX", "10000"]);
        let now = a.now().max(b.now()) + EXPIRE_EVERY;
        assert!(matches!(
            store.run_cycle_if_due(now),
            Cycle::Ran {
                more_due: false,
                any_left: true
            }
        ));
        // Claimed: at the same instant, the other connection finds it not due, and when next.
        assert_eq!(
            store.run_cycle_if_due(now),
            Cycle::NotDue(now + EXPIRE_EVERY)
        );
        assert_eq!(store.held(), 1, "`a` dropped, `b` kept");
    }

    #[test]
    fn a_key_made_again_after_its_deadline_passed_has_none() {
        let (mut h, _) = session();
        for key in ["list", "set", "mset"] {
            ask(&mut h, &["SET", key, "v", "PX", "50"]);
        }
        // Past the deadlines, before any cycle dropped the keys.
        h.advance(Duration::from_millis(60));
        assert_eq!(ask(&mut h, &["LPUSH", "list", "a"]), ":1\r\n");
        assert_eq!(ask(&mut h, &["SET", "set", "w"]), "+OK\r\n");
        assert_eq!(ask(&mut h, &["MSET", "mset", "w"]), "+OK\r\n");
        h.advance(Duration::from_secs(10));
        assert_eq!(ask(&mut h, &["LLEN", "list"]), ":1\r\n");
        assert_eq!(ask(&mut h, &["GET", "set"]), "$1\r\nw\r\n");
        assert_eq!(ask(&mut h, &["GET", "mset"]), "$1\r\nw\r\n");
    }

    #[test]
    fn deadlines_set_again_and_again_on_one_key_hold_bounded_memory() {
        let (mut h, store) = session();
        for i in 0..3 * EXPIRE_PER_CYCLE {
            ask(&mut h, &["SET", "k", &i.to_string(), "EX", "1000"]);
        }
        let deadlines = store.deadlines();
        assert!(
            deadlines <= 2 + EXPIRE_PER_CYCLE,
            "{deadlines} deadlines for one key"
        );
    }

    #[test]
    fn more_keys_due_than_one_cycle_drops_are_dropped_by_the_cycles_right_after() {
        let (mut h, store) = session();
        let n = EXPIRE_PER_CYCLE * 5 / 2;
        for i in 0..n {
            ask(&mut h, &["SET", &format!("k{i}"), "v", "PX", "10"]);
        }
        assert_eq!(store.held(), n);
        h.advance(EXPIRE_EVERY);
        assert_eq!(store.held(), 0, "three cycles at the same instant");
    }

    #[test]
    fn commands_on_keys_in_two_shards_are_atomic_against_another_thread() {
        let store = Store::with_shards(8);
        let second = (0..)
            .map(|i| format!("k{i}"))
            .find(|k| store.shard_of(k.as_bytes()) != store.shard_of(b"k"))
            .expect("a key in another shard");
        let rounds = 2000;
        // Two writers naming the keys in opposite orders: a lock order that followed the
        // command's would deadlock them.
        let writers: Vec<_> = [true, false]
            .into_iter()
            .map(|forward| {
                let (store, second) = (store.clone(), second.clone());
                std::thread::spawn(move || {
                    let mut h = Harness::new(Resp::new(store));
                    for i in 0..rounds {
                        let v = i.to_string();
                        let (a, b) = if forward {
                            ("k", &second[..])
                        } else {
                            (&second[..], "k")
                        };
                        assert_eq!(ask(&mut h, &["MSET", a, &v, b, &v]), "+OK\r\n");
                    }
                })
            })
            .collect();
        let mut h = Harness::new(Resp::new(store.clone()));
        let mut seen = 0;
        while !writers.iter().all(|w| w.is_finished()) {
            let reply = ask(&mut h, &["MGET", "k", &second]);
            let values: Vec<&str> = reply.split("\r\n").skip(1).skip(1).step_by(2).collect();
            assert!(
                reply == "*2\r\n$-1\r\n$-1\r\n" || values[0] == values[1],
                "MSET seen half done: {reply:?}"
            );
            seen += 1;
        }
        for w in writers {
            w.join().expect("a writer panicked");
        }
        assert!(seen > 0);
        let last = (rounds - 1).to_string();
        assert_eq!(
            ask(&mut h, &["MGET", "k", &second]),
            format!(
                "*2\r\n${}\r\n{last}\r\n${}\r\n{last}\r\n",
                last.len(),
                last.len()
            )
        );
        assert_eq!(ask(&mut h, &["DEL", &second, "k", "k"]), ":2\r\n");
        assert_eq!(ask(&mut h, &["DBSIZE"]), ":0\r\n");
    }

    proptest::proptest! {
        #[test]
        fn integers_are_read_as_str_parse_reads_them(
            text in "[-+]?[0-9]{0,25}|[-+0-9 a]{0,6}|-?9223372036854775(80[0-9]|79[0-9])"
        ) {
            proptest::prop_assert_eq!(parse_int(text.as_bytes()), text.parse::<i64>().ok());
        }

        #[test]
        fn any_bytes_read_as_an_integer_only_as_str_parse_would(bytes: Vec<u8>) {
            let expected = std::str::from_utf8(&bytes).ok().and_then(|t| t.parse::<i64>().ok());
            proptest::prop_assert_eq!(parse_int(&bytes), expected);
        }
    }

    #[test]
    fn strings_and_counters() {
        let (mut h, _) = session();
        assert_eq!(ask(&mut h, &["PING"]), "+PONG\r\n");
        assert_eq!(ask(&mut h, &["ping", "hi"]), "$2\r\nhi\r\n");
        assert_eq!(ask(&mut h, &["ECHO", "a\r\nb"]), "$4\r\na\r\nb\r\n");
        assert_eq!(ask(&mut h, &["GET", "k"]), "$-1\r\n");
        assert_eq!(ask(&mut h, &["SET", "k", ""]), "+OK\r\n");
        assert_eq!(ask(&mut h, &["GET", "k"]), "$0\r\n\r\n");
        assert_eq!(ask(&mut h, &["INCR", "n"]), ":1\r\n");
        assert_eq!(ask(&mut h, &["DECR", "n"]), ":0\r\n");
        assert_eq!(ask(&mut h, &["DECR", "n"]), ":-1\r\n");
        assert_eq!(
            ask(&mut h, &["INCR", "k"]),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            ask(&mut h, &["SET", "big", &i64::MAX.to_string()]),
            "+OK\r\n"
        );
        assert_eq!(
            ask(&mut h, &["INCR", "big"]),
            "-ERR increment or decrement would overflow\r\n"
        );
        assert_eq!(ask(&mut h, &["SET", "sp", " 1"]), "+OK\r\n");
        assert_eq!(
            ask(&mut h, &["INCR", "sp"]),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(ask(&mut h, &["MSET", "a", "1", "b", "2"]), "+OK\r\n");
        assert_eq!(
            ask(&mut h, &["MGET", "a", "zz", "b"]),
            "*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n"
        );
        assert_eq!(ask(&mut h, &["EXISTS", "a", "a", "zz"]), ":2\r\n");
        assert_eq!(ask(&mut h, &["DEL", "a", "zz", "b"]), ":2\r\n");
        assert_eq!(ask(&mut h, &["DBSIZE"]), ":4\r\n");
        assert_eq!(ask(&mut h, &["FLUSHALL"]), "+OK\r\n");
        assert_eq!(ask(&mut h, &["DBSIZE"]), ":0\r\n");
    }

    #[test]
    fn set_options_and_expiry_on_the_virtual_clock() {
        let (mut h, _) = session();
        assert_eq!(ask(&mut h, &["SET", "k", "v", "NX"]), "+OK\r\n");
        assert_eq!(ask(&mut h, &["SET", "k", "w", "NX"]), "$-1\r\n");
        assert_eq!(ask(&mut h, &["SET", "j", "w", "XX"]), "$-1\r\n");
        assert_eq!(
            ask(&mut h, &["SET", "k", "w", "XX", "PX", "1500"]),
            "+OK\r\n"
        );
        assert_eq!(ask(&mut h, &["SET", "e", "x", "ex", "2"]), "+OK\r\n");
        h.advance(Duration::from_millis(1499));
        assert_eq!(ask(&mut h, &["GET", "k"]), "$1\r\nw\r\n");
        h.advance(Duration::from_millis(1));
        assert_eq!(ask(&mut h, &["GET", "k"]), "$-1\r\n");
        assert_eq!(ask(&mut h, &["DBSIZE"]), ":1\r\n");
        h.advance(Duration::from_millis(500));
        assert_eq!(ask(&mut h, &["EXISTS", "e"]), ":0\r\n");
        // INCR keeps the time to live.
        assert_eq!(ask(&mut h, &["SET", "n", "1", "EX", "1"]), "+OK\r\n");
        assert_eq!(ask(&mut h, &["INCR", "n"]), ":2\r\n");
        h.advance(Duration::from_secs(1));
        assert_eq!(ask(&mut h, &["GET", "n"]), "$-1\r\n");
        for (args, reply) in [
            (&["SET", "k", "v", "NX", "XX"][..], "-ERR syntax error\r\n"),
            (&["SET", "k", "v", "EX"], "-ERR syntax error\r\n"),
            (
                &["SET", "k", "v", "EX", "soon"],
                "-ERR value is not an integer or out of range\r\n",
            ),
            (
                &["SET", "k", "v", "EX", "0"],
                "-ERR invalid expire time in 'set' command\r\n",
            ),
            (
                &["SET", "k", "v", "PX", "-5"],
                "-ERR invalid expire time in 'set' command\r\n",
            ),
            (
                &["SET", "k", "v", "EX", "1", "PX", "1"],
                "-ERR syntax error\r\n",
            ),
            (&["SET", "k", "v", "KEEP"], "-ERR syntax error\r\n"),
        ] {
            assert_eq!(ask(&mut h, args), reply, "{args:?}");
        }
    }

    #[test]
    fn del_counts_a_key_named_twice_once() {
        let (mut h, _) = session();
        assert_eq!(ask(&mut h, &["SET", "k", "v"]), "+OK\r\n");
        assert_eq!(ask(&mut h, &["SET", "j", "v"]), "+OK\r\n");
        // EXISTS counts every mention, DEL every key it removed.
        assert_eq!(ask(&mut h, &["EXISTS", "k", "k", "j"]), ":3\r\n");
        assert_eq!(ask(&mut h, &["DEL", "k", "k"]), ":1\r\n");
        assert_eq!(ask(&mut h, &["DEL", "j", "zz", "j", "k"]), ":1\r\n");
        assert_eq!(ask(&mut h, &["DBSIZE"]), ":0\r\n");
        // An expired key is not counted as deleted.
        assert_eq!(ask(&mut h, &["SET", "e", "v", "PX", "10"]), "+OK\r\n");
        h.advance(Duration::from_millis(10));
        assert_eq!(ask(&mut h, &["DEL", "e", "e"]), ":0\r\n");
    }

    /// A fixed wall-clock reading, in Unix milliseconds.
    const NOW_MILLIS: i64 = 1_700_000_000_000;

    fn fixed_clock() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(NOW_MILLIS.unsigned_abs())
    }

    #[test]
    fn expire_times_are_checked_as_redis_checks_them() {
        let store = Store::new();
        let mut h = Harness::with_config(Resp::new(store).clock(fixed_clock), &config());
        let invalid = "-ERR invalid expire time in 'set' command\r\n";
        let not_integer = "-ERR value is not an integer or out of range\r\n";
        let last_px = (i64::MAX - NOW_MILLIS).to_string();
        let first_bad_px = (i64::MAX - NOW_MILLIS + 1).to_string();
        let first_bad_ex = (i64::MAX / 1000 + 1).to_string();
        let max = i64::MAX.to_string();
        for (option, amount, reply) in [
            ("EX", "0", invalid),
            ("PX", "0", invalid),
            ("EX", "-1", invalid),
            ("PX", &i64::MIN.to_string(), invalid),
            // Seconds that overflow i64 milliseconds.
            ("EX", &first_bad_ex, invalid),
            ("EX", &max, invalid),
            // Milliseconds that overflow once added to the Unix time now.
            ("PX", &first_bad_px, invalid),
            ("PX", &max, invalid),
            ("EX", "1.5", not_integer),
            ("EX", "+5", not_integer),
            ("PX", "05", not_integer),
            ("PX", " 5", not_integer),
            ("EX", "-0", not_integer),
            ("EX", "99999999999999999999", not_integer),
            ("PX", "", not_integer),
            ("PX", &last_px, "+OK\r\n"),
            ("EX", "1", "+OK\r\n"),
        ] {
            assert_eq!(
                ask(&mut h, &["SET", "k", "v", option, amount]),
                reply,
                "{option} {amount:?}"
            );
        }
        // A refused expire time leaves the key as it was; the last one set applies.
        assert_eq!(ask(&mut h, &["SET", "k", "w", "EX", "0"]), invalid);
        assert_eq!(ask(&mut h, &["GET", "k"]), "$1\r\nv\r\n");
        h.advance(Duration::from_secs(1));
        assert_eq!(ask(&mut h, &["GET", "k"]), "$-1\r\n");
        assert_eq!(
            ask(&mut h, &["SET", "k", "v", "EX", "0", "EX", "2"]),
            "+OK\r\n"
        );
        h.advance(Duration::from_millis(1999));
        assert_eq!(ask(&mut h, &["GET", "k"]), "$1\r\nv\r\n");
        h.advance(Duration::from_millis(1));
        assert_eq!(ask(&mut h, &["GET", "k"]), "$-1\r\n");
        // Options are read before the time: a syntax error comes first, as in Redis.
        assert_eq!(
            ask(&mut h, &["SET", "k", "v", "EX", "0", "KEEP"]),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            ask(&mut h, &["SET", "k", "v", "EX", "soon", "NX", "XX"]),
            "-ERR syntax error\r\n"
        );
        assert_eq!(h.state(), State::Open);
    }

    #[test]
    fn errors_in_redis_words() {
        let (mut h, _) = session();
        assert_eq!(
            ask(&mut h, &["GET"]),
            "-ERR wrong number of arguments for 'get' command\r\n"
        );
        assert_eq!(
            ask(&mut h, &["MSET", "a"]),
            "-ERR wrong number of arguments for 'mset' command\r\n"
        );
        assert_eq!(
            ask(&mut h, &["ZADD", "z", "1", "m"]),
            "-ERR unknown command 'ZADD', with args beginning with: 'z' '1' 'm' \r\n"
        );
        assert_eq!(
            ask(&mut h, &["HSET", "h", "f"]),
            "-ERR wrong number of arguments for 'hset' command\r\n"
        );
        assert_eq!(ask(&mut h, &["COMMAND", "DOCS"]), "*0\r\n");
        assert_eq!(
            ask(&mut h, &["SELECT", "1"]),
            "-ERR DB index is out of range\r\n"
        );
        assert_eq!(h.state(), State::Open);
    }

    #[test]
    fn inline_commands_and_empty_arrays() {
        let (mut h, _) = session();
        h.send("SET a 1\nset b 2\r\n\r\n*0\r\n*-1\r\nMGET a b\r\n");
        assert_eq!(
            h.take_output(),
            "+OK\r\n+OK\r\n*2\r\n$1\r\n1\r\n$1\r\n2\r\n"
        );
    }

    #[test]
    fn protocol_errors_close_only_this_connection() {
        for (input, error) in [
            ("*x\r\n".to_owned(), "invalid multibulk length"),
            (format!("*{}\r\n", MAX_ARGS + 1), "invalid multibulk length"),
            ("*1\r\n+GET\r\n".to_owned(), "expected '$', got '+'"),
            ("*1\r\n$-3\r\n".to_owned(), "invalid bulk length"),
            (
                format!("*1\r\n${}\r\n", MAX_BULK + 1),
                "invalid bulk length",
            ),
            (
                "*1\r\n$3\r\nGETxx".to_owned(),
                "bulk string not ended by CRLF",
            ),
            ("x".repeat(MAX_INLINE + 1), "too big inline request"),
        ] {
            let (mut h, store) = session();
            h.send(&input);
            h.send(command(&["SET", "after", "1"]));
            assert_eq!(
                String::from_utf8_lossy(&h.take_output()),
                format!("-ERR Protocol error: {error}\r\n"),
                "{input:.40}"
            );
            assert_eq!(h.state(), State::Closed);
            assert_eq!(store.held(), 0, "nothing after the error ran");
        }
    }

    #[test]
    fn values_larger_than_an_inline_request_go_through() {
        let (mut h, _) = session();
        let value = "v".repeat(MAX_INLINE * 3);
        assert_eq!(ask(&mut h, &["SET", "big", &value]), "+OK\r\n");
        assert_eq!(
            ask(&mut h, &["GET", "big"]),
            format!("${}\r\n{value}\r\n", value.len())
        );
        // ... and the inline limit is back afterwards.
        h.send("x".repeat(MAX_INLINE + 1));
        assert_eq!(
            String::from_utf8_lossy(&h.take_output()),
            "-ERR Protocol error: too big inline request\r\n"
        );
    }

    #[test]
    fn an_error_quoting_a_line_break_stays_one_reply() {
        let mut h = Harness::new(Resp::new(Store::new()));
        h.send(command(&["A\r\nB", "c\nd"]));
        assert_eq!(
            h.take_output(),
            "-ERR unknown command 'A  B', with args beginning with: 'c d' \r\n"
        );
    }

    #[test]
    fn the_store_is_shared_between_connections() {
        let store = Store::new();
        let mut a = Harness::new(Resp::new(store.clone()));
        let mut b = Harness::new(Resp::new(store.clone()));
        a.send(command(&["SET", "k", "from a"]));
        b.send("GET k\r\nQUIT\r\n");
        assert_eq!(b.take_output(), "$6\r\nfrom a\r\n+OK\r\n");
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn a_pipeline_is_chunking_invariant() {
        let mut input = String::new();
        for args in [
            &["SET", "k", "a\r\nb"][..],
            &["GET", "k"],
            &["INCR", "n"],
            &["MGET", "k", "n"],
            &["DEL", "k"],
        ] {
            input.push_str(&command(args));
        }
        input.push_str("PING\r\nECHO x\n");
        let t = Replay::new(input)
            .config(config())
            .assert_invariant(|| Resp::new(Store::new()));
        assert_eq!(
            t.output,
            "+OK\r\n$4\r\na\r\nb\r\n:1\r\n*2\r\n$4\r\na\r\nb\r\n$1\r\n1\r\n:1\r\n+PONG\r\n$1\r\nx\r\n"
        );
    }
}
