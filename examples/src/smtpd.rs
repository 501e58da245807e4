//! A mail sink in the spirit of Python's `smtpd.SMTPServer`: it speaks enough SMTP (RFC 5321)
//! for any client to hand it mail, and gives every message to a [`Mailbox`].
//!
//! Commands: `HELO`/`EHLO` (advertising `SIZE` and `8BITMIME`), `MAIL FROM`, `RCPT TO`, `DATA`,
//! `RSET`, `NOOP`, `VRFY`, `QUIT`. Out-of-order commands get `503`, malformed ones `501`,
//! unknown ones `500`; a command line over [`MAX_LINE`] bytes ([`MAX_MAIL_LINE`] for `MAIL`) gets
//! `500` and the session goes on; a message over the size limit is read to its end and refused
//! with `552`, one that finds the [`DataBudget`] shared by all connections spent with `452`; an
//! idle session is closed with `421`.
//!
//! `DATA` switches the terminator from `\r\n` to `\r\n.\r\n`, the end-of-data marker, so a
//! message body is found by one substring search rather than line by line. The `\r\n` that ends
//! the `DATA` command is the first half of that marker for an empty message (`DATA\r\n.\r\n`)
//! and for one whose first line is empty; those few bytes are matched one at a time (a
//! `Count(1)` terminator) until no part of the marker is pending, then the delimiter takes over.
//! Lines are dot-unstuffed once the message is complete.
//!
//! ```
//! use asynchat_core::testing::Harness;
//! use asynchat_examples::smtpd::{Memory, Smtp};
//!
//! let mailbox = Memory::default();
//! let mut h = Harness::new(Smtp::new(mailbox.clone()));
//! h.send("EHLO me\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
//! h.send("Subject: hi\r\n\r\n..dot-stuffed\r\n.\r\nQUIT\r\n");
//! let message = &mailbox.messages()[0];
//! assert_eq!(message.data, "Subject: hi\r\n\r\n.dot-stuffed\r\n");
//! assert!(String::from_utf8_lossy(&h.take_output()).ends_with("221 Bye\r\n"));
//! ```

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::set_delimiter;
use asynchat_core::{
    Bytes, BytesMut, CloseReason, Config, Context, Frame, OverLongPolicy, Protocol, Terminator,
    Timer,
};

/// The longest command line accepted, in bytes, `\r\n` included: the 512 octets RFC 5321
/// §4.5.3.1.4 requires a server to take. `MAIL` has [`MAX_MAIL_LINE`].
pub const MAX_LINE: usize = 512;

/// The longest `MAIL` command line accepted, in bytes, `\r\n` included: [`MAX_LINE`], plus the
/// 26 octets RFC 1870 §3 (5) adds for ` SIZE=` and its 20 digits, plus 14 for ` BODY=8BITMIME`,
/// the longest `BODY` parameter, as 8BITMIME is advertised too. The framer lets every line grow
/// to this length; lines of other commands over [`MAX_LINE`] are refused once read.
pub const MAX_MAIL_LINE: usize = MAX_LINE + 26 + 14;

/// The default message size limit, in bytes (advertised as `SIZE`).
pub const DEFAULT_MAX_SIZE: usize = 10 << 20;

/// The default [`DataBudget`] limit: message data all connections together may hold at once.
pub const DEFAULT_DATA_BUDGET: usize = 64 << 20;

/// The most recipients one message may have.
pub const MAX_RECIPIENTS: usize = 100;

/// How long a session may stay silent before it is closed with `421`.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long one command line may take from its first byte, however steadily it trickles in
/// (each byte re-arms the idle timeout, not this one): RFC 5321 §4.5.3.2 gives a client 5
/// minutes per command; a line needs far less. `421` then.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a message (DATA to the final `.`) may take: RFC 5321 §4.5.3.2.6's 10 minutes.
/// (A timer of its own: the message is read in many small frames, which the frame timeout
/// would time one by one.)
pub const DATA_TIMEOUT: Duration = Duration::from_secs(600);

/// The id of the [`DATA_TIMEOUT`] timer.
const DATA_TIMER: u32 = 1;

/// The end-of-data marker, its leading `\r\n` being the end of the previous line.
const END_OF_DATA: &[u8] = b"\r\n.\r\n";

/// The connection limits the server expects: command lines up to [`MAX_MAIL_LINE`], a longer one
/// skipped and answered (not a reason to drop the session), and the idle timeout.
#[must_use]
pub fn config() -> Config {
    Config::default()
        .max_frame(MAX_MAIL_LINE - 2)
        .over_long(OverLongPolicy::Skip)
        .idle_timeout(Some(IDLE_TIMEOUT))
        .frame_timeout(Some(COMMAND_TIMEOUT))
}

/// One message, as the client handed it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The client's address, when known.
    pub peer: Option<SocketAddr>,
    /// What the client called itself in `HELO`/`EHLO`.
    pub helo: String,
    /// The reverse path (`MAIL FROM`), empty for a bounce.
    pub mail_from: String,
    /// The forward paths (`RCPT TO`), in order.
    pub rcpt_to: Vec<String>,
    /// The content, dot-unstuffed, each line ending with `\r\n`.
    pub data: Bytes,
}

/// Where accepted messages go.
pub trait Mailbox: Send + Sync {
    /// Stores `message`, returning an id for the `250` reply.
    ///
    /// # Errors
    ///
    /// The message could not be stored: the client gets a `451` and may retry.
    fn deliver(&self, message: Message) -> io::Result<String>;
}

/// Keeps messages in memory: for tests and the tour.
#[derive(Debug, Clone, Default)]
pub struct Memory(Arc<Mutex<Vec<Message>>>);

impl Memory {
    /// The messages delivered so far.
    #[must_use]
    pub fn messages(&self) -> Vec<Message> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Mailbox for Memory {
    fn deliver(&self, message: Message) -> io::Result<String> {
        let mut messages = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        messages.push(message);
        Ok(format!("mem-{}", messages.len()))
    }
}

/// Writes each message as one file in a directory (`ID.eml`, written under a temporary name then
/// renamed, so a reader never sees half a message), with `X-Peer`, `X-Mail-From` and `X-Rcpt-To`
/// lines first, as Python's `smtpd.DebuggingServer` shows them.
///
/// Writing happens on the event loop's thread: fine for a sink, not for a busy server.
#[derive(Debug)]
pub struct Maildir {
    dir: PathBuf,
    next: AtomicU64,
}

impl Maildir {
    /// Stores into `dir`, creating it if needed.
    ///
    /// # Errors
    ///
    /// The directory cannot be created.
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            next: AtomicU64::new(0),
        })
    }
}

/// `text` fit for a header line: every control character becomes `?`. [`Smtp`] refuses them
/// in paths; a [`Message`] built by hand could still hold a CR or LF, which would end the line
/// and start a header the sender chose.
fn header_text(text: &str) -> Cow<'_, str> {
    if text.bytes().any(|b| b.is_ascii_control()) {
        Cow::Owned(text.replace(|c: char| c.is_ascii_control(), "?"))
    } else {
        Cow::Borrowed(text)
    }
}

fn envelope(message: &Message) -> String {
    let peer = message
        .peer
        .map_or_else(|| "-".to_owned(), |p| p.to_string());
    format!(
        "X-Peer: {peer}\r\nX-Mail-From: <{}>\r\nX-Rcpt-To: {}\r\n",
        header_text(&message.mail_from),
        message
            .rcpt_to
            .iter()
            .map(|r| format!("<{}>", header_text(r)))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

impl Mailbox for Maildir {
    fn deliver(&self, message: Message) -> io::Result<String> {
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros();
        let id = format!(
            "{stamp}.{}.{}",
            std::process::id(),
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let partial = self.dir.join(format!(".{id}.tmp"));
        let mut file = std::fs::File::create(&partial)?;
        file.write_all(envelope(&message).as_bytes())?;
        file.write_all(&message.data)?;
        file.sync_all()?;
        std::fs::rename(&partial, self.dir.join(format!("{id}.eml")))?;
        Ok(id)
    }
}

/// Prints each message to stdout between separator lines (Python's `DebuggingServer`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Print;

impl Mailbox for Print {
    fn deliver(&self, message: Message) -> io::Result<String> {
        let mut out = io::stdout().lock();
        writeln!(out, "---------- MESSAGE FOLLOWS ----------")?;
        out.write_all(envelope(&message).as_bytes())?;
        out.write_all(&message.data)?;
        writeln!(out, "------------ END MESSAGE ------------")?;
        out.flush()?;
        Ok("printed".to_owned())
    }
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No `HELO`/`EHLO` yet.
    Greeted,
    /// Greeted by the client; `extended` after `EHLO`.
    Ready { extended: bool },
    /// Reading a message, in a session greeted with `EHLO` if `extended`.
    Data { extended: bool },
}

/// A bound on the message data buffered by all the connections sharing it, so that many
/// concurrent `DATA` transfers cannot hold more memory than this, whatever
/// [`Smtp::max_size`] allows each one. Clones share one count.
///
/// A connection takes from it as message bytes arrive and gives them back once the message is
/// delivered or refused, or the connection closes. A message that finds it spent is read to
/// its end without being kept, and refused with `452 4.3.1 Insufficient system storage`
/// (RFC 5321 §4.2.3; 4.3.1 is RFC 3463's "mail system full"): a temporary failure, which the
/// client retries later. The connection goes on.
#[derive(Debug, Clone)]
pub struct DataBudget(Arc<Budget>);

#[derive(Debug)]
struct Budget {
    limit: usize,
    used: AtomicUsize,
}

impl DataBudget {
    /// A budget of `limit` bytes, for the connections given a clone of it.
    #[must_use]
    pub fn new(limit: usize) -> Self {
        Self(Arc::new(Budget {
            limit,
            used: AtomicUsize::new(0),
        }))
    }

    /// The budget of every [`Smtp`] not given another: [`DEFAULT_DATA_BUDGET`] bytes, shared by
    /// all of them in the process, so a server bounds its connections together without asking.
    #[must_use]
    pub fn process_wide() -> Self {
        static SHARED: OnceLock<DataBudget> = OnceLock::new();
        SHARED
            .get_or_init(|| Self::new(DEFAULT_DATA_BUDGET))
            .clone()
    }

    /// The most bytes the connections may hold together.
    #[must_use]
    pub fn limit(&self) -> usize {
        self.0.limit
    }

    /// The bytes the connections hold now.
    #[must_use]
    pub fn in_use(&self) -> usize {
        self.0.used.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes if they fit, all or nothing.
    fn try_take(&self, n: usize) -> bool {
        self.0
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(n).filter(|&total| total <= self.0.limit)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.0.used.fetch_sub(n, Ordering::Relaxed);
    }
}

/// Bytes taken from a [`DataBudget`], given back when released or dropped: an [`Smtp`] dropped
/// without its `closed` callback gives its share back all the same.
#[derive(Debug, Default)]
struct Charge {
    budget: Option<DataBudget>,
    bytes: usize,
}

impl Charge {
    fn release(&mut self) {
        if let Some(budget) = &self.budget {
            budget.give_back(self.bytes);
        }
        self.bytes = 0;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.release();
    }
}

/// The message being read after `DATA`.
#[derive(Debug, Default)]
struct Incoming {
    data: BytesMut,
    /// Bytes received, kept or not.
    received: usize,
    /// How much of [`END_OF_DATA`] the bytes so far end with (while byte-at-a-time).
    matched: usize,
    /// What `data` holds of the data budget.
    charge: Charge,
    /// The data budget had no room: the message is counted, not kept, and refused at its end.
    starved: bool,
}

impl Incoming {
    /// Counts `bytes` of the message, and keeps them while the message is within `max_size`
    /// and `budget` has room for them.
    fn take(&mut self, bytes: &[u8], max_size: usize, budget: &DataBudget) {
        self.received = self.received.saturating_add(bytes.len());
        if self.starved {
            return;
        }
        // Keep a few bytes past the limit so the marker bytes matched one at a time are there
        // to trim; past that the message is refused whatever follows, so nothing is kept.
        if self.received > max_size + END_OF_DATA.len() {
            self.discard();
            return;
        }
        if budget.try_take(bytes.len()) {
            self.charge.budget.get_or_insert_with(|| budget.clone());
            self.charge.bytes += bytes.len();
            self.data.extend_from_slice(bytes);
        } else {
            self.starved = true;
            self.discard();
        }
    }

    /// Frees what is kept, and gives its share of the budget back.
    fn discard(&mut self) {
        self.data = BytesMut::new();
        self.charge.release();
    }
}

/// The SMTP session of one connection.
pub struct Smtp {
    mailbox: Arc<dyn Mailbox>,
    hostname: String,
    max_size: usize,
    peer: Option<SocketAddr>,
    phase: Phase,
    helo: String,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
    incoming: Incoming,
    budget: DataBudget,
    tls: TlsPolicy,
    /// The session switched to TLS with `STARTTLS`.
    in_tls: bool,
}

/// Whether a session offers `STARTTLS` (RFC 3207), and whether mail must wait for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsPolicy {
    /// No `STARTTLS` (plaintext only, or TLS from the first byte).
    #[default]
    Off,
    /// `STARTTLS` is advertised after `EHLO` and accepted.
    Offer,
    /// As `Offer`, and `MAIL` is refused (`530`) until the session is in TLS.
    Require,
}

impl fmt::Debug for Smtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Smtp")
            .field("phase", &self.phase)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Smtp {
    /// A session delivering to `mailbox`, with the default size limit and host name.
    pub fn new(mailbox: impl Mailbox + 'static) -> Self {
        Self::shared(Arc::new(mailbox))
    }

    /// A session delivering to a mailbox shared with other sessions.
    #[must_use]
    pub fn shared(mailbox: Arc<dyn Mailbox>) -> Self {
        Self {
            mailbox,
            hostname: "localhost".to_owned(),
            max_size: DEFAULT_MAX_SIZE,
            peer: None,
            phase: Phase::Greeted,
            helo: String::new(),
            mail_from: None,
            rcpt_to: Vec::new(),
            incoming: Incoming::default(),
            budget: DataBudget::process_wide(),
            tls: TlsPolicy::Off,
            in_tls: false,
        }
    }

    /// Offers (or requires) `STARTTLS`; the server must run over a stream that can switch
    /// (`serve_starttls`).
    #[must_use]
    pub fn starttls(mut self, policy: TlsPolicy) -> Self {
        self.tls = policy;
        self
    }

    /// Refuses messages over `bytes` bytes (`552`), and advertises it.
    #[must_use]
    pub fn max_size(mut self, bytes: usize) -> Self {
        self.max_size = bytes;
        self
    }

    /// Holds this connection's message data against `budget`, shared with the other connections
    /// given it, instead of [`DataBudget::process_wide`].
    #[must_use]
    pub fn data_budget(mut self, budget: DataBudget) -> Self {
        self.budget = budget;
        self
    }

    /// The name the server gives itself in its replies.
    #[must_use]
    pub fn hostname(mut self, name: impl Into<String>) -> Self {
        self.hostname = name.into();
        self
    }

    /// The client's address, recorded in delivered messages.
    #[must_use]
    pub fn peer(mut self, peer: SocketAddr) -> Self {
        self.peer = Some(peer);
        self
    }

    fn reset_transaction(&mut self) {
        self.mail_from = None;
        self.rcpt_to.clear();
        self.incoming = Incoming::default();
    }

    fn command(&mut self, ctx: &mut Context<'_>, raw: &[u8]) {
        let line = String::from_utf8_lossy(raw);
        let (verb, arg) = match line.split_once(' ') {
            Some((verb, arg)) => (verb, arg.trim()),
            None => (line.as_ref(), ""),
        };
        // The framer lets every line reach MAIL's longer limit; only MAIL may use the room.
        if raw.len() + 2 > MAX_LINE && !verb.eq_ignore_ascii_case("MAIL") {
            ctx.push("500 Error: line too long\r\n");
            return;
        }
        let reply = match verb.to_ascii_uppercase().as_str() {
            "HELO" | "EHLO" if arg.is_empty() || arg.bytes().any(|b| b.is_ascii_control()) => {
                format!("501 Syntax: {verb} hostname")
            }
            "HELO" => {
                self.greet(arg, false);
                format!("250 {}", self.hostname)
            }
            "EHLO" => {
                self.greet(arg, true);
                let starttls = if self.tls != TlsPolicy::Off && !self.in_tls {
                    "250-STARTTLS\r\n"
                } else {
                    ""
                };
                format!(
                    "250-{}\r\n250-SIZE {}\r\n250-8BITMIME\r\n{starttls}250 HELP",
                    self.hostname, self.max_size
                )
            }
            "STARTTLS" if self.tls == TlsPolicy::Off => "502 Command not implemented".to_owned(),
            "STARTTLS" if self.in_tls => "503 TLS already active".to_owned(),
            "STARTTLS" if !arg.is_empty() => "501 Syntax: STARTTLS".to_owned(),
            "STARTTLS" => {
                // RFC 3207: the reply, then TLS; whatever the client sent behind the command
                // in plaintext is discarded by the chat, never run.
                ctx.push("220 Ready to start TLS\r\n");
                ctx.start_tls();
                return;
            }
            "NOOP" if arg.is_empty() => "250 OK".to_owned(),
            "NOOP" => "501 Syntax: NOOP".to_owned(),
            "RSET" if arg.is_empty() => {
                self.reset_transaction();
                "250 OK".to_owned()
            }
            "RSET" => "501 Syntax: RSET".to_owned(),
            "VRFY" if arg.is_empty() => "501 Syntax: VRFY <address>".to_owned(),
            "VRFY" => {
                "252 Cannot VRFY user, but will accept message and attempt delivery".to_owned()
            }
            "QUIT" => {
                ctx.push("221 Bye\r\n");
                ctx.close_when_done();
                return;
            }
            "MAIL" => self.mail(arg),
            "RCPT" => self.rcpt(arg),
            "DATA" => self.data(ctx, arg),
            _ => format!("500 Error: command \"{}\" not recognized", printable(verb)),
        };
        ctx.push(reply);
        ctx.push("\r\n");
    }

    fn greet(&mut self, name: &str, extended: bool) {
        name.clone_into(&mut self.helo);
        self.phase = Phase::Ready { extended };
        self.reset_transaction();
    }

    fn mail(&mut self, arg: &str) -> String {
        let Phase::Ready { extended } = self.phase else {
            return "503 Error: send HELO first".to_owned();
        };
        if self.tls == TlsPolicy::Require && !self.in_tls {
            return "530 Must issue a STARTTLS command first".to_owned();
        }
        if self.mail_from.is_some() {
            return "503 Error: nested MAIL command".to_owned();
        }
        let Some((address, params)) = path(arg, "FROM:") else {
            return "501 Syntax: MAIL FROM:<address>".to_owned();
        };
        if !params.is_empty() && !extended {
            return "501 Syntax: MAIL FROM:<address> (parameters need EHLO)".to_owned();
        }
        for param in params.split_whitespace() {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            match key.to_ascii_uppercase().as_str() {
                "SIZE" => match value.parse::<usize>() {
                    Ok(size) if size > self.max_size => {
                        return "552 Error: message size exceeds fixed maximum message size"
                            .to_owned()
                    }
                    Ok(_) => {}
                    Err(_) => return "501 Syntax: SIZE=<number>".to_owned(),
                },
                "BODY" if ["7BIT", "8BITMIME"].contains(&value.to_ascii_uppercase().as_str()) => {}
                "BODY" => return "501 Error: BODY can only be one of 7BIT, 8BITMIME".to_owned(),
                _ => {
                    return "555 MAIL FROM parameters not recognized or not implemented".to_owned()
                }
            }
        }
        self.mail_from = Some(address.to_owned());
        "250 OK".to_owned()
    }

    fn rcpt(&mut self, arg: &str) -> String {
        if matches!(self.phase, Phase::Greeted) {
            return "503 Error: send HELO first".to_owned();
        }
        if self.mail_from.is_none() {
            return "503 Error: need MAIL command".to_owned();
        }
        match path(arg, "TO:") {
            Some((address, "")) if !address.is_empty() => {
                if self.rcpt_to.len() >= MAX_RECIPIENTS {
                    return "452 Error: too many recipients".to_owned();
                }
                self.rcpt_to.push(address.to_owned());
                "250 OK".to_owned()
            }
            Some((_, params)) if !params.is_empty() => {
                "555 RCPT TO parameters not recognized or not implemented".to_owned()
            }
            _ => "501 Syntax: RCPT TO:<address>".to_owned(),
        }
    }

    fn data(&mut self, ctx: &mut Context<'_>, arg: &str) -> String {
        let Phase::Ready { extended } = self.phase else {
            return "503 Error: send HELO first".to_owned();
        };
        if self.rcpt_to.is_empty() {
            return "503 Error: need RCPT command".to_owned();
        }
        if !arg.is_empty() {
            return "501 Syntax: DATA".to_owned();
        }
        self.phase = Phase::Data { extended };
        // The `\r\n` that ended this command counts towards the end-of-data marker.
        self.incoming = Incoming {
            matched: 2,
            ..Incoming::default()
        };
        ctx.set_max_frame(usize::MAX);
        ctx.set_count(1);
        ctx.set_frame_timeout(None);
        let deadline = ctx.now().checked_add(DATA_TIMEOUT);
        if let Some(at) = deadline {
            ctx.set_timer(DATA_TIMER, at);
        }
        "354 End data with <CR><LF>.<CR><LF>".to_owned()
    }

    /// The message ended (at `data.len()`, the marker not included).
    fn end_of_data(&mut self, ctx: &mut Context<'_>) {
        let Phase::Data { extended } = self.phase else {
            return;
        };
        let reply = if self.incoming.received > self.max_size {
            "552 Error: Too much mail data".to_owned()
        } else if self.incoming.starved {
            "452 4.3.1 Insufficient system storage".to_owned()
        } else {
            let message = Message {
                peer: self.peer,
                helo: self.helo.clone(),
                mail_from: self.mail_from.take().unwrap_or_default(),
                rcpt_to: std::mem::take(&mut self.rcpt_to),
                data: unstuff(&self.incoming.data),
            };
            match self.mailbox.deliver(message) {
                Ok(id) => format!("250 OK: queued as {id}"),
                Err(e) => format!("451 Error: local error in processing: {e}"),
            }
        };
        self.phase = Phase::Ready { extended };
        self.reset_transaction();
        ctx.set_max_frame(MAX_MAIL_LINE - 2);
        set_delimiter(ctx, b"\r\n");
        ctx.cancel_timer(DATA_TIMER);
        ctx.set_frame_timeout(Some(COMMAND_TIMEOUT));
        ctx.push(reply);
        ctx.push("\r\n");
    }
}

/// `text` with its control characters as `?`: a client's bytes echoed in a reply must not end
/// the reply line early (a bare LF or CR inside a line is not a line end to the framer, but
/// is one to many clients).
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Parses `FROM:<address> params` (or `TO:`), case-insensitively, a space after the colon
/// tolerated. Returns the address and the parameters; `None` for a control character anywhere:
/// a bare CR, LF or NUL in a path would reach the stored message's header lines.
fn path<'a>(arg: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    if arg.bytes().any(|b| b.is_ascii_control()) {
        return None;
    }
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let (address, params) = rest.split_once('>')?;
    if address.contains(['<', ' ']) {
        return None;
    }
    Some((address, params.trim()))
}

/// Removes the leading dot of every line that starts with one (RFC 5321 §4.5.2).
fn unstuff(data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len());
    let mut at_line_start = true;
    for line in data.split_inclusive(|&b| b == b'\n') {
        let line = if at_line_start {
            line.strip_prefix(b".").unwrap_or(line)
        } else {
            line
        };
        out.extend_from_slice(line);
        at_line_start = line.ends_with(b"\r\n") || line.is_empty();
    }
    out.freeze()
}

/// How much of [`END_OF_DATA`] the stream ends with after `byte`, given that it ended with
/// `matched` bytes of it before.
fn advance(matched: usize, byte: u8) -> usize {
    let mut tail = END_OF_DATA[..matched].to_vec();
    tail.push(byte);
    (1..=tail.len().min(END_OF_DATA.len()))
        .rev()
        .find(|&n| tail.ends_with(&END_OF_DATA[..n]))
        .unwrap_or(0)
}

impl Protocol for Smtp {
    fn first_terminator(&self) -> Terminator {
        "\r\n".into()
    }

    fn connected(&mut self, ctx: &mut Context<'_>) {
        ctx.push(format!("220 {} asynchat-rs smtpd ready\r\n", self.hostname));
    }

    fn collect_incoming_data(&mut self, ctx: &mut Context<'_>, data: Frame<'_>) {
        if !matches!(self.phase, Phase::Data { .. }) {
            ctx.collect(data);
            return;
        }
        let incoming = &mut self.incoming;
        incoming.take(&data, self.max_size, &self.budget);
        if incoming.matched > 0 {
            for &byte in data.iter() {
                incoming.matched = advance(incoming.matched, byte);
            }
        }
    }

    /// RFC 3207 §4.2: the server discards what it knew of the client from before TLS, its
    /// greeting included.
    fn tls_started(&mut self, _: &mut Context<'_>) {
        self.in_tls = true;
        self.phase = Phase::Greeted;
        self.helo.clear();
        self.reset_transaction();
    }

    fn found_terminator(&mut self, ctx: &mut Context<'_>, line: Frame<'_>) {
        if !matches!(self.phase, Phase::Data { .. }) {
            self.command(ctx, &line);
            return;
        }
        let incoming = &mut self.incoming;
        match ctx.terminator() {
            Terminator::Count(_) => match incoming.matched {
                5 => {
                    // The marker's `.\r\n` came in as data; its `\r\n` ends the last line.
                    let keep = incoming.data.len().saturating_sub(3);
                    incoming.data.truncate(keep);
                    incoming.received = incoming.received.saturating_sub(3);
                    self.end_of_data(ctx);
                }
                0 => set_delimiter(ctx, END_OF_DATA),
                // A count is spent once reached (as in Python): ask for the next byte again.
                _ => ctx.set_count(1),
            },
            _ => {
                // The marker's first `\r\n` ends the last line.
                incoming.take(b"\r\n", self.max_size, &self.budget);
                self.end_of_data(ctx);
            }
        }
    }

    fn peer_closed(&mut self, ctx: &mut Context<'_>, _unterminated: u64) {
        // A message cut short is not delivered (RFC 5321 §4.1.1.4).
        ctx.close_when_done();
    }

    fn frame_too_long(&mut self, ctx: &mut Context<'_>, _limit: usize) {
        ctx.push("500 Error: line too long\r\n");
    }

    fn timeout(&mut self, ctx: &mut Context<'_>, timer: Timer) {
        if matches!(
            timer,
            Timer::Idle | Timer::Frame | Timer::Custom(DATA_TIMER)
        ) {
            ctx.push("421 Error: timeout exceeded, closing connection\r\n");
            ctx.close_when_done();
        }
    }

    fn closed(&mut self, _reason: &CloseReason) {
        self.reset_transaction();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use asynchat_core::testing::{Harness, Replay};
    use asynchat_core::State;

    fn session() -> (Harness<Smtp>, Memory) {
        let mailbox = Memory::default();
        let mut h = Harness::with_config(Smtp::new(mailbox.clone()).max_size(1000), &config());
        assert_eq!(h.take_output(), "220 localhost asynchat-rs smtpd ready\r\n");
        (h, mailbox)
    }

    fn replies(h: &mut Harness<Smtp>) -> Vec<String> {
        String::from_utf8_lossy(&h.take_output())
            .split_terminator("\r\n")
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn ehlo_advertises_size_and_8bitmime() {
        let (mut h, _) = session();
        h.send("EHLO client.example\r\n");
        assert_eq!(
            replies(&mut h),
            ["250-localhost", "250-SIZE 1000", "250-8BITMIME", "250 HELP"]
        );
    }

    #[test]
    fn a_message_to_two_recipients_is_unstuffed_and_delivered() {
        let (mut h, mailbox) = session();
        h.send("HELO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nrcpt to: <c@z>\r\nDATA\r\n");
        h.send("Subject: t\r\n\r\n..one\r\n..\r\nlast.\r\n.\r\n");
        assert_eq!(
            replies(&mut h),
            [
                "250 localhost",
                "250 OK",
                "250 OK",
                "250 OK",
                "354 End data with <CR><LF>.<CR><LF>",
                "250 OK: queued as mem-1"
            ]
        );
        let m = &mailbox.messages()[0];
        assert_eq!(m.helo, "c");
        assert_eq!(m.mail_from, "a@x");
        assert_eq!(m.rcpt_to, ["b@y", "c@z"]);
        assert_eq!(m.data, "Subject: t\r\n\r\n.one\r\n.\r\nlast.\r\n");
    }

    #[test]
    fn the_end_marker_right_after_data_is_seen() {
        let (mut h, mailbox) = session();
        for body in [
            "",
            "\r\n",
            "\r\n\r\n",
            "..\r\n",
            "x\r\n",
            ".x\r\n",
            "\r\n..\r\n",
        ] {
            h.send("HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
            h.send(format!("{body}.\r\nNOOP\r\n"));
            let r = replies(&mut h);
            assert_eq!(
                r[r.len() - 2..],
                [
                    "250 OK: queued as mem-".to_owned() + &mailbox.messages().len().to_string(),
                    "250 OK".into()
                ],
                "{body:?}"
            );
            let expected = unstuff(body.as_bytes());
            assert_eq!(
                mailbox.messages().last().unwrap().data,
                expected,
                "{body:?}"
            );
        }
    }

    #[test]
    fn out_of_order_commands_get_503() {
        let (mut h, _) = session();
        h.send("MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nHELO c\r\nRCPT TO:<b@y>\r\nDATA\r\n");
        h.send("MAIL FROM:<a@x>\r\nMAIL FROM:<a@x>\r\nDATA\r\n");
        assert_eq!(
            replies(&mut h),
            [
                "503 Error: send HELO first",
                "503 Error: send HELO first",
                "503 Error: send HELO first",
                "250 localhost",
                "503 Error: need MAIL command",
                "503 Error: need RCPT command",
                "250 OK",
                "503 Error: nested MAIL command",
                "503 Error: need RCPT command"
            ]
        );
    }

    #[test]
    fn malformed_and_unknown_commands() {
        let (mut h, _) = session();
        h.send("HELO\r\nEHLO c\r\nMAIL <a@x>\r\nMAIL FROM:a@x\r\nMAIL FROM:<a@x> SIZE=big\r\n");
        h.send("MAIL FROM:<a@x> FOO=1\r\nMAIL FROM:<a@x> BODY=8BITMIME\r\nRCPT TO:<>\r\n");
        h.send("VRFY\r\nVRFY bob\r\nNOOP x\r\nRSET\r\nHELP\r\n");
        let r = replies(&mut h);
        assert_eq!(r[0], "501 Syntax: HELO hostname");
        assert_eq!(
            r[5..],
            [
                "501 Syntax: MAIL FROM:<address>",
                "501 Syntax: MAIL FROM:<address>",
                "501 Syntax: SIZE=<number>",
                "555 MAIL FROM parameters not recognized or not implemented",
                "250 OK",
                "501 Syntax: RCPT TO:<address>",
                "501 Syntax: VRFY <address>",
                "252 Cannot VRFY user, but will accept message and attempt delivery",
                "501 Syntax: NOOP",
                "250 OK",
                "500 Error: command \"HELP\" not recognized"
            ]
        );
    }

    #[test]
    fn control_characters_in_paths_are_refused_and_never_stored() {
        let (mut h, mailbox) = session();
        h.send("EHLO c\rX-Evil:1\r\nEHLO c\r\n");
        for bad in [
            "MAIL FROM:<a@x\nBcc:victim@z>",
            "MAIL FROM:<a@x\rBcc:victim@z>",
            "MAIL FROM:<a\0@x>",
            "MAIL FROM:<a@x\x1b>",
            "MAIL FROM:<a@x\x7f>",
            "MAIL FROM:<a@x> BODY=7BIT\nX:1",
        ] {
            h.send(format!("{bad}\r\n"));
        }
        h.send("MAIL FROM:<a@x>\r\n");
        for bad in [
            "RCPT TO:<b@y\nBcc:victim@z>",
            "RCPT TO:<b@y\r>",
            "RCPT TO:<b\0@y>",
        ] {
            h.send(format!("{bad}\r\n"));
        }
        h.send("RCPT TO:<b@y>\r\nDATA\r\nhi\r\n.\r\n");
        let r = replies(&mut h);
        assert_eq!(r[0], "501 Syntax: EHLO hostname");
        assert_eq!(r[5..11], ["501 Syntax: MAIL FROM:<address>"; 6]);
        assert_eq!(r[11], "250 OK");
        assert_eq!(r[12..15], ["501 Syntax: RCPT TO:<address>"; 3]);
        assert_eq!(
            r[15..],
            [
                "250 OK",
                "354 End data with <CR><LF>.<CR><LF>",
                "250 OK: queued as mem-1"
            ]
        );
        let messages = mailbox.messages();
        assert_eq!(messages.len(), 1);
        let m = &messages[0];
        assert_eq!((m.helo.as_str(), m.mail_from.as_str()), ("c", "a@x"));
        assert_eq!(m.rcpt_to, ["b@y"]);
        assert_eq!(
            envelope(m),
            "X-Peer: -\r\nX-Mail-From: <a@x>\r\nX-Rcpt-To: <b@y>\r\n"
        );
    }

    #[test]
    fn the_envelope_never_holds_a_control_character() {
        let message = Message {
            peer: None,
            helo: "c".into(),
            mail_from: "a@x\r\nBcc: victim@z".into(),
            rcpt_to: vec!["b@y\n\0".into(), "c@z".into()],
            data: Bytes::new(),
        };
        assert_eq!(
            envelope(&message),
            "X-Peer: -\r\nX-Mail-From: <a@x??Bcc: victim@z>\r\nX-Rcpt-To: <b@y??>, <c@z>\r\n"
        );
    }

    #[test]
    fn an_unknown_verb_is_echoed_on_one_line() {
        let (mut h, _) = session();
        h.send("X\nY\rZ\x01\r\n");
        assert_eq!(
            h.take_output(),
            "500 Error: command \"X?Y?Z?\" not recognized\r\n"
        );
    }

    #[test]
    fn parameters_need_ehlo() {
        let (mut h, _) = session();
        h.send("HELO c\r\nMAIL FROM:<a@x> SIZE=10\r\n");
        assert_eq!(
            replies(&mut h)[1],
            "501 Syntax: MAIL FROM:<address> (parameters need EHLO)"
        );
    }

    #[test]
    fn size_limits_are_enforced_and_the_session_goes_on() {
        let (mut h, mailbox) = session();
        h.send("EHLO c\r\nMAIL FROM:<a@x> SIZE=1001\r\n");
        assert_eq!(
            replies(&mut h).last().unwrap(),
            "552 Error: message size exceeds fixed maximum message size"
        );
        h.send("MAIL FROM:<a@x> SIZE=1000\r\nRCPT TO:<b@y>\r\nDATA\r\n");
        h.send("y".repeat(2000) + "\r\n.\r\n");
        assert_eq!(
            replies(&mut h).last().unwrap(),
            "552 Error: Too much mail data"
        );
        assert!(mailbox.messages().is_empty());
        // Exactly at the limit (998 bytes and the line's CRLF) is accepted.
        h.send("MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
        h.send("z".repeat(998) + "\r\n.\r\n");
        assert_eq!(replies(&mut h).last().unwrap(), "250 OK: queued as mem-1");
        assert_eq!(mailbox.messages()[0].data.len(), 1000);
    }

    #[test]
    fn the_data_budget_bounds_what_all_connections_hold_together() {
        let budget = DataBudget::new(100);
        let mailbox = Memory::default();
        let transaction = "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n";
        let open = || {
            let smtp = Smtp::new(mailbox.clone()).data_budget(budget.clone());
            let mut h = Harness::with_config(smtp, &config());
            h.send(format!("EHLO c\r\n{transaction}"));
            h.take_output();
            h
        };
        let (mut a, mut b) = (open(), open());
        a.send("a".repeat(60));
        assert_eq!(budget.in_use(), 60);
        b.send("b".repeat(60) + "\r\n.\r\n");
        assert_eq!(replies(&mut b), ["452 4.3.1 Insufficient system storage"]);
        assert_eq!(budget.in_use(), 60, "what b sent was dropped, not kept");
        b.send("NOOP\r\n");
        assert_eq!(replies(&mut b), ["250 OK"]);
        a.send("\r\n.\r\n");
        assert_eq!(replies(&mut a), ["250 OK: queued as mem-1"]);
        assert_eq!(mailbox.messages()[0].data, "a".repeat(60) + "\r\n");
        assert_eq!(
            budget.in_use(),
            0,
            "a delivered message gives its share back"
        );
        // Now b's message fits.
        b.send(format!("{transaction}{}\r\n.\r\n", "b".repeat(60)));
        assert_eq!(replies(&mut b).last().unwrap(), "250 OK: queued as mem-2");
        assert_eq!(mailbox.messages().len(), 2);
        // A refused message gives its share back too.
        a.send(format!("{transaction}{}\r\n.\r\n", "a".repeat(99)));
        assert_eq!(
            replies(&mut a).last().unwrap(),
            "452 4.3.1 Insufficient system storage"
        );
        assert_eq!(budget.in_use(), 0);
        // So does a connection that fails mid-message, or is dropped without being closed.
        a.send(format!("{transaction}{}", "a".repeat(90)));
        assert_eq!(budget.in_use(), 90);
        a.fail(io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(a.is_closed());
        assert_eq!(budget.in_use(), 0);
        b.send(format!("{transaction}{}", "b".repeat(50)));
        assert_eq!(budget.in_use(), 50);
        drop(b);
        assert_eq!(budget.in_use(), 0);
        assert_eq!(mailbox.messages().len(), 2);
        // Connections given no budget share one.
        assert_eq!(DataBudget::process_wide().limit(), DEFAULT_DATA_BUDGET);
        assert!(Arc::ptr_eq(
            &Smtp::new(Memory::default()).budget.0,
            &DataBudget::process_wide().0
        ));
    }

    #[test]
    fn a_message_over_the_size_limit_is_not_kept_while_it_is_read() {
        let budget = DataBudget::new(1000);
        let smtp = Smtp::new(Memory::default())
            .max_size(50)
            .data_budget(budget.clone());
        let mut h = Harness::with_config(smtp, &config());
        h.send("HELO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
        h.send("x".repeat(200));
        assert_eq!(budget.in_use(), 0);
        h.send("\r\n.\r\n");
        assert_eq!(
            replies(&mut h).last().unwrap(),
            "552 Error: Too much mail data"
        );
    }

    #[test]
    fn an_over_long_line_is_refused_and_the_session_goes_on() {
        let (mut h, _) = session();
        h.send("x".repeat(MAX_LINE * 3) + "\r\nNOOP\r\n");
        assert_eq!(replies(&mut h), ["500 Error: line too long", "250 OK"]);
        assert_eq!(h.state(), State::Open);
    }

    #[test]
    fn command_lines_are_taken_up_to_512_octets_and_mail_up_to_its_extended_limit() {
        // A command padded, inside its address, to `len` octets with its CRLF.
        let padded = |head: &str, tail: &str, len: usize| {
            let fill = len - head.len() - tail.len() - 2;
            format!("{head}{}{tail}\r\n", "u".repeat(fill))
        };
        let params = " SIZE=00000000000000000100 BODY=8BITMIME";
        let mail_at_limit = padded("MAIL FROM:<", &format!("@x>{params}"), MAX_MAIL_LINE);
        let rcpt_at_limit = padded("RCPT TO:<", "@y>", MAX_LINE);
        let input = [
            "EHLO c\r\n".to_owned(),
            mail_at_limit.clone(),
            rcpt_at_limit.clone(),
            padded("RCPT TO:<", "@z>", MAX_LINE + 1),
            padded("VRFY ", "", MAX_LINE),
            padded("VRFY ", "", MAX_LINE + 1),
            "DATA\r\nhi\r\n.\r\nRSET\r\n".to_owned(),
            padded("MAIL FROM:<", &format!("@x>{params}"), MAX_MAIL_LINE + 1),
            "NOOP\r\n".to_owned(),
        ]
        .concat();
        assert_eq!(mail_at_limit.len(), 552);
        assert_eq!(rcpt_at_limit.len(), 512);
        // Whole, byte by byte and in random splits: the limits do not depend on the chunking.
        let t = Replay::new(input.clone())
            .config(config())
            .assert_invariant(|| Smtp::new(Memory::default()).max_size(1000));
        let replies: Vec<&str> = std::str::from_utf8(&t.output)
            .unwrap()
            .split_terminator("\r\n")
            .filter(|r| !r.starts_with("250-"))
            .collect();
        assert_eq!(
            replies[1..],
            [
                "250 HELP",
                "250 OK",
                "250 OK",
                "500 Error: line too long",
                "252 Cannot VRFY user, but will accept message and attempt delivery",
                "500 Error: line too long",
                "354 End data with <CR><LF>.<CR><LF>",
                "250 OK: queued as mem-1",
                "250 OK",
                "500 Error: line too long",
                "250 OK",
            ]
        );
        // The long paths are stored whole.
        let mailbox = Memory::default();
        let mut h = Harness::with_config(Smtp::new(mailbox.clone()), &config());
        h.send(&input);
        let m = &mailbox.messages()[0];
        assert_eq!(
            m.mail_from.len(),
            MAX_MAIL_LINE - "MAIL FROM:<>\r\n".len() - params.len()
        );
        assert_eq!(m.rcpt_to, [&rcpt_at_limit[9..MAX_LINE - 3]]);
    }

    #[test]
    fn too_many_recipients() {
        let (mut h, _) = session();
        h.send("HELO c\r\nMAIL FROM:<a@x>\r\n");
        for i in 0..=MAX_RECIPIENTS {
            h.send(format!("RCPT TO:<u{i}@y>\r\n"));
        }
        assert_eq!(
            replies(&mut h).last().unwrap(),
            "452 Error: too many recipients"
        );
    }

    #[test]
    fn rset_forgets_the_transaction_and_quit_closes() {
        let (mut h, mailbox) = session();
        h.send("HELO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRSET\r\nDATA\r\nQUIT\r\n");
        assert_eq!(
            replies(&mut h)[3..],
            ["250 OK", "503 Error: need RCPT command", "221 Bye"]
        );
        assert_eq!(h.state(), State::Closed);
        assert!(mailbox.messages().is_empty());
    }

    #[test]
    fn a_silent_session_is_closed_with_421() {
        let (mut h, _) = session();
        h.advance(IDLE_TIMEOUT - Duration::from_secs(1));
        assert_eq!(h.state(), State::Open);
        h.advance(Duration::from_secs(2));
        assert_eq!(
            replies(&mut h),
            ["421 Error: timeout exceeded, closing connection"]
        );
        assert_eq!(h.state(), State::Closed);
    }

    #[test]
    fn a_command_trickled_in_gets_421_at_the_command_timeout_and_data_has_its_own() {
        let (mut h, _) = session();
        // A byte every 10 s: the idle timeout (300 s) never fires, the command timeout does.
        let mut sent = 0;
        while h.state() == State::Open {
            h.send("N").advance(Duration::from_secs(10));
            sent += 1;
            assert!(sent < 30, "never closed");
        }
        assert_eq!(h.elapsed(), COMMAND_TIMEOUT);
        assert_eq!(
            replies(&mut h),
            ["421 Error: timeout exceeded, closing connection"]
        );
        // In DATA, lines may come slowly (each is its own frame), but the message as a whole
        // has DATA_TIMEOUT.
        let (mut h, mailbox) = session();
        h.send("HELO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
        let _ = h.take_output();
        let minutes = DATA_TIMEOUT.as_secs() / 60;
        for _ in 0..minutes - 1 {
            h.send("a line\r\n").advance(Duration::from_secs(60));
        }
        assert_eq!(h.state(), State::Open);
        h.send("a line\r\n").advance(Duration::from_secs(60));
        assert_eq!(
            replies(&mut h),
            ["421 Error: timeout exceeded, closing connection"]
        );
        assert!(mailbox.messages().is_empty());
        // A message finished in time restores the command timeout.
        let (mut h, mailbox) = session();
        h.send("HELO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
        h.advance(Duration::from_secs(120));
        h.send("hi\r\n.\r\n");
        assert_eq!(mailbox.messages().len(), 1);
        h.send("NO").advance(COMMAND_TIMEOUT);
        assert_ne!(h.state(), State::Open, "closing after the 421");
        assert!(replies(&mut h).last().unwrap().starts_with("421"));
    }

    #[test]
    fn a_message_cut_by_eof_is_not_delivered() {
        let (mut h, mailbox) = session();
        h.send("HELO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nhalf a mess");
        h.send_eof();
        assert!(mailbox.messages().is_empty());
        assert_eq!(h.state(), State::Closed);
    }

    #[test]
    fn sessions_are_chunking_invariant() {
        let input = "EHLO c\r\nMAIL FROM:<a@x> SIZE=20\r\nRCPT TO:<b@y>\r\nDATA\r\n\
                     \r\n.\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n..a\r\n\r\n.\r\n\
                     MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n.\r\nQUIT\r\n";
        let t = Replay::new(input)
            .config(config())
            .assert_invariant(|| Smtp::new(Memory::default()));
        assert!(String::from_utf8_lossy(&t.output).contains("queued as mem-3"));
    }

    #[test]
    fn the_marker_matcher_tracks_partial_matches() {
        assert_eq!(advance(2, b'.'), 3);
        assert_eq!(advance(2, b'\r'), 1);
        assert_eq!(advance(3, b'\r'), 4);
        assert_eq!(advance(4, b'\n'), 5);
        assert_eq!(advance(4, b'\r'), 1);
        assert_eq!(advance(1, b'x'), 0);
        assert_eq!(advance(0, b'\r'), 1);
    }

    #[test]
    fn maildir_writes_one_file_per_message() {
        let dir = std::env::temp_dir().join(format!("asynchat-smtpd-{}", std::process::id()));
        let maildir = Maildir::new(&dir).unwrap();
        let message = Message {
            peer: None,
            helo: "c".into(),
            mail_from: "a@x".into(),
            rcpt_to: vec!["b@y".into(), "c@z".into()],
            data: Bytes::from_static(b"Subject: s\r\n\r\nbody\r\n"),
        };
        let id = maildir.deliver(message.clone()).unwrap();
        maildir.deliver(message).unwrap();
        let text = std::fs::read_to_string(dir.join(format!("{id}.eml"))).unwrap();
        assert_eq!(
            text,
            "X-Peer: -\r\nX-Mail-From: <a@x>\r\nX-Rcpt-To: <b@y>, <c@z>\r\nSubject: s\r\n\r\nbody\r\n"
        );
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
