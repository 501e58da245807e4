//! HTTP/1.1 static files (RFC 9110, RFC 9112): `GET` and `HEAD` from a root directory.
//!
//! The head of a request is framed by `\r\n\r\n`; a `Content-Length` body then by
//! `Count(len)`, exactly the switch Python's asynchat HTTP servers made. Keep-alive is the
//! HTTP/1.1 default; pipelined requests are answered in order because every response, file
//! contents included, goes through the connection's producer FIFO.
//!
//! Small files are read whole. Files of [`Httpd::stream_above`] bytes or more are streamed from a
//! producer, opened only when the response reaches the front of the queue and read 64 KiB at a
//! time as the socket drains, sent with chunked transfer coding (HTTP/1.1) or a length and a
//! closing connection (HTTP/1.0). Memory per connection stays bounded whatever the file size.
//!
//! A server's connections share one [`Files`]: what a request target resolved to, its length and
//! a small file's contents are trusted for [`FILE_CACHE_VALID`] (as nginx's `open_file_cache`),
//! so a file asked for again costs no file-system call; the `Date` field is formatted once per
//! second; response heads are copied into the output buffer from their pieces.
//!
//! Targets in origin form (`/path?query`) and in absolute form (`http://host/path`, `https://`
//! too) are served; the authority of an absolute-form target stands for the `Host` field.
//!
//! Refused: any `..` segment, encoded or not (`400`); a path leaving the root through a symlink
//! (`403`); other methods (`405`, with `Allow`); bodies over the limit (`413`); request lines over
//! [`MAX_REQUEST_LINE`] (`414`); heads over [`MAX_HEAD`] (`431`); other HTTP versions (`505`);
//! an HTTP/1.1 request without `Host`, a second `Host`, an invalid `Host`, a control character
//! in a field value or the target, an absolute-form target of another scheme, and anything else
//! malformed (`400`). After an error that leaves the stream's framing in doubt, the
//! connection is closed once the reply is written.
//!
//! ```
//! use asynchat_core::testing::Harness;
//! use asynchat_examples::httpd::Httpd;
//!
//! let root = std::env::temp_dir().join(format!("httpd-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&root)?;
//! std::fs::write(root.join("hello.txt"), "hi!\n")?;
//! let mut h = Harness::new(Httpd::new(&root)?);
//! h.send("GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n");
//! let reply = String::from_utf8_lossy(&h.take_output()).into_owned();
//! assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"));
//! assert!(reply.contains("Content-Type: text/plain; charset=utf-8\r\n"));
//! assert!(reply.ends_with("\r\n\r\nhi!\n"));
//! # std::fs::remove_dir_all(&root)?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Read as _};
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::set_delimiter;
use asynchat_core::producer::{ChunkedProducer, Producer};
use asynchat_core::{
    Bytes, BytesMut, CloseReason, Config, Context, Frame, OverLongPolicy, Protocol, Terminator,
    Timer,
};

/// The longest request line accepted, in bytes (`414` beyond).
pub const MAX_REQUEST_LINE: usize = 8 << 10;

/// The largest request head accepted, request line and fields, in bytes (`431` beyond).
pub const MAX_HEAD: usize = 16 << 10;

/// The largest request body accepted, in bytes (`413` beyond). Bodies are read and discarded:
/// only `GET` and `HEAD` are served.
pub const MAX_BODY: u64 = 1 << 20;

/// Files this large or larger are streamed by default.
pub const DEFAULT_STREAM_ABOVE: u64 = 256 << 10;

/// The size of each read of a streamed file.
const FILE_CHUNK: usize = 64 << 10;

/// How long a keep-alive connection may stay silent.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a request (its head, and any body, which is read and discarded) may take from its
/// first byte, however steadily it trickles in: `408` then (a slow-loris client re-arms the
/// idle timeout with every byte, never this one). Apache's `mod_reqtimeout` gives a head 20 s
/// as well.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// The connection limits the server expects: heads up to [`MAX_HEAD`] (a longer one is answered,
/// then the connection closed), the keep-alive idle timeout and the [`REQUEST_TIMEOUT`].
#[must_use]
pub fn config() -> Config {
    Config::default()
        .max_frame(MAX_HEAD)
        .over_long(OverLongPolicy::Skip)
        .idle_timeout(Some(IDLE_TIMEOUT))
        .frame_timeout(Some(REQUEST_TIMEOUT))
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, as sent (methods are case-sensitive).
    pub method: String,
    /// The request target, as sent.
    pub target: String,
    /// `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub minor: u8,
    /// Header fields in order, names as sent.
    pub fields: Vec<(String, String)>,
}

impl Request {
    /// The first field named `name` (case-insensitively).
    #[must_use]
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The host the request is for: the authority of an absolute-form target, which takes the
    /// place of the `Host` field (RFC 9112 §3.2.2), else the `Host` field.
    #[must_use]
    pub fn host(&self) -> Option<&str> {
        match absolute_form(&self.target) {
            Some((authority, _)) => Some(authority),
            None => self.field("host"),
        }
    }

    /// The path and query asked for: the target itself in origin form, what follows the
    /// authority in absolute form (`/` if nothing does).
    #[must_use]
    pub fn path(&self) -> Cow<'_, str> {
        match absolute_form(&self.target) {
            Some((_, "")) => Cow::Borrowed("/"),
            Some((_, rest)) if !rest.starts_with('/') => Cow::Owned(format!("/{rest}")),
            Some((_, rest)) => Cow::Borrowed(rest),
            None => Cow::Borrowed(&self.target),
        }
    }

    /// Whether the connection stays open after the response (RFC 9112 §9.3).
    #[must_use]
    pub fn keep_alive(&self) -> bool {
        let has = |token: &str| {
            self.fields
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
                .flat_map(|(_, v)| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        if self.minor >= 1 {
            !has("close")
        } else {
            has("keep-alive")
        }
    }
}

/// An error status with its reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u16);

impl Status {
    /// The reason phrase.
    #[must_use]
    pub fn reason(self) -> &'static str {
        match self.0 {
            200 => "OK",
            400 => "Bad Request",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            413 => "Content Too Large",
            414 => "URI Too Long",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            505 => "HTTP Version Not Supported",
            _ => "Unknown",
        }
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `b` is a control character no field value may hold: RFC 9110 §5.5 allows only
/// visible characters, SP, HTAB and obs-text, and a bare CR, LF or NUL is how one field or
/// message gets smuggled into another.
fn is_forbidden_control(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// The scheme of a target written `scheme://...`, if it has that shape (RFC 3986 §3.1).
fn scheme(target: &str) -> Option<&str> {
    let (scheme, _) = target.split_once("://")?;
    let mut chars = scheme.bytes();
    let valid = chars.next().is_some_and(|b| b.is_ascii_alphabetic())
        && chars.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    valid.then_some(scheme)
}

/// An `http` or `https` absolute-form target (RFC 9112 §3.2.2) split into its authority and
/// the rest (path, query); `None` for a target of any other form.
fn absolute_form(target: &str) -> Option<(&str, &str)> {
    let scheme = scheme(target)?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let rest = &target[scheme.len() + 3..];
    Some(rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len())))
}

/// The host part of `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2-3), or `None` if
/// the value is not one: the host a reg-name (which IPv4 addresses are too) or a bracketed IPv6
/// or IPvFuture literal; the port, if there is a colon, digits worth at most 65535 (an empty
/// port is refused although RFC 3986 allows it: no client sends one on purpose).
fn host_of(value: &str) -> Option<&str> {
    let (host, port) = match value.strip_prefix('[') {
        Some(rest) => {
            let (literal, after) = rest.split_once(']')?;
            if !is_ip_literal(literal) {
                return None;
            }
            let host = &value[..literal.len() + 2];
            match after {
                "" => (host, None),
                after => (host, Some(after.strip_prefix(':')?)),
            }
        }
        None => match value.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (value, None),
        },
    };
    if !host.starts_with('[') && !is_reg_name(host) {
        return None;
    }
    if let Some(port) = port {
        let significant = port.trim_start_matches('0');
        let valid = !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && (significant.is_empty() || significant.parse::<u16>().is_ok());
        if !valid {
            return None;
        }
    }
    Some(host)
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )` (RFC 3986 §3.2.2).
fn is_reg_name(host: &str) -> bool {
    let bytes = host.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                if !bytes
                    .get(i + 1..i + 3)
                    .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
                {
                    return false;
                }
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b) => i += 1,
            _ => return false,
        }
    }
    true
}

/// What may stand between the brackets of an IP literal: an IPv6 address, or `IPvFuture`
/// (`"v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )`, RFC 3986 §3.2.2).
fn is_ip_literal(literal: &str) -> bool {
    if literal.parse::<Ipv6Addr>().is_ok() {
        return true;
    }
    let Some(future) = literal.strip_prefix(['v', 'V']) else {
        return false;
    };
    let Some((version, address)) = future.split_once('.') else {
        return false;
    };
    !version.is_empty()
        && version.bytes().all(|b| b.is_ascii_hexdigit())
        && !address.is_empty()
        && address
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:".contains(&b))
}

/// Parses a request head (without its final `\r\n\r\n`).
///
/// # Errors
///
/// The status to answer: `400` malformed, `414` request line too long, `505` version.
pub fn parse_head(head: &[u8]) -> Result<Request, Status> {
    let head = std::str::from_utf8(head).map_err(|_| Status(400))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    if request_line.len() > MAX_REQUEST_LINE {
        return Err(Status(414));
    }
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Status(400));
    };
    // A target is URI characters only (RFC 9112 §3.2): no control, TAB and bare CR included.
    if !is_token(method) || target.is_empty() || target.bytes().any(|b| b.is_ascii_control()) {
        return Err(Status(400));
    }
    let minor = match version {
        "HTTP/1.1" => 1,
        "HTTP/1.0" => 0,
        v if v.len() == 8
            && v.starts_with("HTTP/")
            && v.as_bytes()[5].is_ascii_digit()
            && v.as_bytes()[6] == b'.'
            && v.as_bytes()[7].is_ascii_digit() =>
        {
            return Err(Status(505))
        }
        _ => return Err(Status(400)),
    };
    let mut fields = Vec::new();
    for line in lines {
        // Obsolete line folding and whitespace before the colon are refused (RFC 9112 §5).
        let (name, value) = line.split_once(':').ok_or(Status(400))?;
        if !is_token(name) || value.bytes().any(is_forbidden_control) {
            return Err(Status(400));
        }
        fields.push((name.to_owned(), value.trim_matches([' ', '\t']).to_owned()));
    }
    let request = Request {
        method: method.to_owned(),
        target: target.to_owned(),
        minor,
        fields,
    };
    // RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, and for any request with more
    // than one Host line or an invalid one. Two Hosts could name two different origins.
    let mut hosts = request
        .fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v);
    match (hosts.next(), hosts.next()) {
        (None, _) if minor == 1 => return Err(Status(400)),
        (Some(host), None) if host_of(host).is_none() => return Err(Status(400)),
        (_, Some(_)) => return Err(Status(400)),
        _ => {}
    }
    // The authority of an absolute-form target must name a host (RFC 9110 §4.2.1, §4.2.4:
    // empty hosts and userinfo are invalid); no other scheme is served.
    match (scheme(target), absolute_form(target)) {
        (_, Some((authority, _))) if host_of(authority).is_none_or(str::is_empty) => {
            return Err(Status(400))
        }
        (Some(_), None) => return Err(Status(400)),
        _ => {}
    }
    Ok(request)
}

/// The body length a request announces.
///
/// # Errors
///
/// `400` for a malformed or conflicting length or any `Transfer-Encoding` (not supported in
/// requests here), `413` over [`MAX_BODY`].
pub fn body_length(request: &Request) -> Result<u64, Status> {
    if request.field("transfer-encoding").is_some() {
        return Err(Status(400));
    }
    let mut length = None;
    for (_, value) in request
        .fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Status(400));
        }
        let n: u64 = value.parse().map_err(|_| Status(413))?;
        if length.is_some_and(|l| l != n) {
            return Err(Status(400));
        }
        length = Some(n);
    }
    match length.unwrap_or(0) {
        n if n > MAX_BODY => Err(Status(413)),
        n => Ok(n),
    }
}

/// Decodes `%XX` escapes of a path.
///
/// # Errors
///
/// `400` for a bad escape, invalid UTF-8 or a NUL byte.
fn percent_decode(path: &str) -> Result<String, Status> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(Status(400))?;
            let hex = std::str::from_utf8(hex).map_err(|_| Status(400))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| Status(400))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    if out.contains(&0) {
        return Err(Status(400));
    }
    String::from_utf8(out).map_err(|_| Status(400))
}

/// Maps a request target to a path under `root`, refusing every way out of it.
///
/// # Errors
///
/// `400` for a target that is not an absolute path or holds a `..` segment (encoded or not),
/// `404` for a missing file, `403` for one that leaves the root (a symlink).
pub fn resolve(root: &Path, target: &str) -> Result<PathBuf, Status> {
    let path = target.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') {
        return Err(Status(400));
    }
    let decoded = percent_decode(path)?;
    let mut resolved = root.to_path_buf();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err(Status(400)),
            // A backslash is a separator elsewhere; refuse it rather than guess.
            s if s.contains('\\') => return Err(Status(400)),
            s => resolved.push(s),
        }
    }
    let mut real = resolved.canonicalize().map_err(|_| Status(404))?;
    if !real.starts_with(root) {
        return Err(Status(403));
    }
    if real.is_dir() {
        real.push("index.html");
        if !real.is_file() {
            return Err(Status(404));
        }
    }
    Ok(real)
}

/// Formats a time as an HTTP date (IMF-fixdate, RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
#[must_use]
pub fn http_date(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01, in 400-year eras of 146 097 days starting on March 1.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// The media type served for a file name.
#[must_use]
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("xml") => "application/xml",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("pdf") => "application/pdf",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// Reads a file 64 KiB at a time, opening it on the first pull. Stops at `len` bytes even if
/// the file grew; a file that shrank or failed ends the output early, which the framing
/// (a missing last chunk, or a short body on a closing connection) lets the client detect.
#[derive(Debug)]
struct FileProducer {
    path: Arc<Path>,
    file: Option<File>,
    left: u64,
}

impl Producer for FileProducer {
    fn more(&mut self) -> Option<Bytes> {
        if self.left == 0 {
            return None;
        }
        if self.file.is_none() {
            self.file = Some(File::open(&self.path).ok()?);
        }
        let want = usize::try_from(self.left).map_or(FILE_CHUNK, |left| left.min(FILE_CHUNK));
        let mut buf = BytesMut::zeroed(want);
        let n = self.file.as_mut()?.read(&mut buf).ok()?;
        if n == 0 {
            self.left = 0;
            return None;
        }
        buf.truncate(n);
        self.left -= n as u64;
        Some(buf.freeze())
    }
}

/// Where the connection is in its current request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Reading a head.
    Head,
    /// Reading (and discarding) the body of `request`.
    Body(Box<Request>),
    /// A reply that ends the connection is queued: nothing more is read.
    Done,
}

/// How long [`Files`] trusts what it learnt of a file (as nginx's `open_file_cache_valid`, which
/// defaults to a minute): a file changed on disk is served as it was for at most this long.
pub const FILE_CACHE_VALID: Duration = Duration::from_secs(1);

/// The most request targets [`Files`] remembers at once; past it, it starts afresh.
pub const FILE_CACHE_ENTRIES: usize = 1024;

/// The most file contents [`Files`] keeps in memory, in bytes, all files together.
pub const FILE_CACHE_BYTES: usize = 16 << 20;

/// The largest file whose contents [`Files`] keeps ([`DEFAULT_STREAM_ABOVE`]: by default,
/// larger files are streamed from disk anyway).
pub const FILE_CACHE_LARGEST: usize = FILE_CACHE_BYTES / 64;

/// The files a server serves, shared by its connections: the root, and what was learnt of the
/// files served in the last [`FILE_CACHE_VALID`] (where a target resolves, its length and, for a
/// file read whole, its contents), so that a file asked for again costs no file-system call; and
/// the `Date` field, formatted once per second.
///
/// What that trust costs, as with nginx's cache: for up to [`FILE_CACHE_VALID`] a file deleted,
/// changed or made unreadable is served as it was learnt, and a streamed file is opened at the
/// path resolved then (a directory on it swapped for a symlink out of the root in that time is
/// followed). Targets that failed are not remembered.
#[derive(Debug)]
pub struct Files {
    root: Arc<Path>,
    cache: std::sync::Mutex<FileCache>,
    date: std::sync::Mutex<(u64, String)>,
}

#[derive(Debug, Default)]
struct FileCache {
    entries: std::collections::HashMap<String, Known>,
    bytes: usize,
}

/// A target that resolved to a file, as it was at `at`.
#[derive(Debug, Clone)]
struct Known {
    at: std::time::Instant,
    /// Shared: every request served from the cache takes it.
    path: Arc<Path>,
    len: u64,
    /// The whole file, when it is read whole.
    contents: Option<Bytes>,
}

impl Files {
    /// The files under `root`.
    ///
    /// # Errors
    ///
    /// `root` does not exist or cannot be resolved.
    pub fn new(root: impl AsRef<Path>) -> io::Result<Arc<Self>> {
        Ok(Self::canonical(root.as_ref().canonicalize()?.into()))
    }

    /// The files under `root`, which must already be canonical (see [`Path::canonicalize`]).
    #[must_use]
    pub fn canonical(root: Arc<Path>) -> Arc<Self> {
        Arc::new(Self {
            root,
            cache: std::sync::Mutex::default(),
            date: std::sync::Mutex::new((u64::MAX, String::new())),
        })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, FileCache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What is known of `target`, if learnt within [`FILE_CACHE_VALID`] of `now`.
    fn known(&self, target: &str, now: std::time::Instant) -> Option<Known> {
        let cache = self.cache();
        let known = cache.entries.get(target)?;
        (now.saturating_duration_since(known.at) < FILE_CACHE_VALID).then(|| known.clone())
    }

    fn learn(&self, target: &str, known: Known) {
        let size = known.contents.as_ref().map_or(0, Bytes::len);
        if size > FILE_CACHE_LARGEST {
            // Read whole by a server that streams only larger files: not worth the room.
            return;
        }
        let mut cache = self.cache();
        if cache.entries.len() >= FILE_CACHE_ENTRIES || cache.bytes + size > FILE_CACHE_BYTES {
            *cache = FileCache::default();
        }
        if let Some(old) = cache.entries.insert(target.to_owned(), known) {
            cache.bytes -= old.contents.as_ref().map_or(0, Bytes::len);
        }
        cache.bytes += size;
    }

    /// The `Date` field's value for `time`, formatted once per second.
    fn date(&self, time: SystemTime, out: &mut [u8; 29]) {
        let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut date = self
            .date
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if date.0 != secs {
            *date = (secs, http_date(time));
        }
        let n = date.1.len().min(out.len());
        out[..n].copy_from_slice(&date.1.as_bytes()[..n]);
    }
}

/// The HTTP server side of one connection.
#[derive(Debug)]
pub struct Httpd {
    files: Arc<Files>,
    stream_above: u64,
    clock: fn() -> SystemTime,
    phase: Phase,
    /// The head being read has shown a line end (to tell `414` from `431`).
    head_has_line_end: bool,
    last_was_cr: bool,
}

impl Httpd {
    /// Serves the files under `root`.
    ///
    /// # Errors
    ///
    /// `root` does not exist or cannot be resolved.
    pub fn new(root: impl AsRef<Path>) -> io::Result<Self> {
        Ok(Self::shared(Files::new(root)?))
    }

    /// Serves `files`, shared by every connection of a server (so is what it learnt of them).
    #[must_use]
    pub fn shared(files: Arc<Files>) -> Self {
        Self {
            files,
            stream_above: DEFAULT_STREAM_ABOVE,
            clock: SystemTime::now,
            phase: Phase::Head,
            head_has_line_end: false,
            last_was_cr: false,
        }
    }

    /// Streams files of `bytes` bytes or more instead of reading them whole.
    #[must_use]
    pub fn stream_above(mut self, bytes: u64) -> Self {
        self.stream_above = bytes;
        self
    }

    /// Reads the wall clock for `Date` fields from `clock` instead of [`SystemTime::now`]: a
    /// sans-IO protocol takes its time from outside, so tests can be exact.
    #[must_use]
    pub fn clock(mut self, clock: fn() -> SystemTime) -> Self {
        self.clock = clock;
        self
    }

    /// Queues an error reply; unless `keep`, closes the connection once it is written.
    fn error(&mut self, ctx: &mut Context<'_>, status: Status, minor: u8, keep: bool) {
        let body = format!("{} {}\n", status.0, status.reason());
        let mut head = format!(
            "HTTP/1.{minor} {} {}\r\nServer: asynchat-rs\r\nDate: {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n",
            status.0,
            status.reason(),
            http_date((self.clock)()),
            body.len()
        );
        if status.0 == 405 {
            head.push_str("Allow: GET, HEAD\r\n");
        }
        if !keep {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        ctx.push(head);
        ctx.push(body);
        if !keep {
            self.finish(ctx);
        }
    }

    fn finish(&mut self, ctx: &mut Context<'_>) {
        self.phase = Phase::Done;
        ctx.close_when_done();
    }

    fn head(&mut self, ctx: &mut Context<'_>, head: &[u8]) {
        self.head_has_line_end = false;
        self.last_was_cr = false;
        let request = match parse_head(head) {
            Ok(request) => request,
            Err(status) => return self.error(ctx, status, 1, false),
        };
        match body_length(&request) {
            Err(status) => self.error(ctx, status, request.minor, false),
            // A zero-length body is an empty frame at once, like any other body.
            Ok(n) => {
                self.phase = Phase::Body(Box::new(request));
                ctx.set_count(n);
            }
        }
    }

    /// Resolves `target` and reads its length from the file system (what [`Files`] spares
    /// while it trusts what it learnt). A file read whole is learnt once its contents are read.
    fn look_up(&self, target: &str, now: std::time::Instant) -> Result<Known, Status> {
        let path: Arc<Path> = resolve(&self.files.root, target)?.into();
        let len = std::fs::metadata(&path).map_err(|_| Status(404))?.len();
        let known = Known {
            at: now,
            path,
            len,
            contents: None,
        };
        if len >= self.stream_above {
            self.files.learn(target, known.clone());
        }
        Ok(known)
    }

    fn respond(&mut self, ctx: &mut Context<'_>, request: &Request) {
        self.phase = Phase::Head;
        set_delimiter(ctx, b"\r\n\r\n");
        let keep = request.keep_alive();
        let head_only = match request.method.as_str() {
            "GET" => false,
            "HEAD" => true,
            _ => return self.error(ctx, Status(405), request.minor, keep),
        };
        let target = request.path();
        // What follows `?` or `#` names no other file: one entry for every query of a file.
        let key = target.split(['?', '#']).next().unwrap_or_default();
        let mut known = match self.files.known(key, ctx.now()) {
            Some(known) => known,
            None => match self.look_up(key, ctx.now()) {
                Ok(known) => known,
                Err(status) => return self.error(ctx, status, request.minor, keep),
            },
        };
        if known.contents.is_none() && known.len < self.stream_above {
            // Read whole, and the length taken from what was read: a file that changed since
            // its metadata was read still gets a head that frames it.
            match std::fs::read(&known.path) {
                Ok(contents) => {
                    let contents = Bytes::from(contents);
                    known.len = contents.len() as u64;
                    known.contents = Some(contents);
                    self.files.learn(key, known.clone());
                }
                Err(_) => return self.error(ctx, Status(500), request.minor, false),
            }
        }
        let (path, len) = (known.path, known.len);
        let stream = len >= self.stream_above;
        // HTTP/1.0 has no chunked coding: stream with a length, then close.
        let chunked = stream && request.minor >= 1;
        let keep = keep && (chunked || !stream);
        // The head is copied into the output buffer from its pieces: no allocation.
        let (mut date, mut length) = ([0u8; 29], crate::Decimal::default());
        self.files.date((self.clock)(), &mut date);
        let minor = [b'0' + request.minor.min(9)];
        let framing: [&[u8]; 3] = if chunked {
            [b"Transfer-Encoding: chunked\r\n", b"", b""]
        } else {
            [b"Content-Length: ", length.of_u64(len), b"\r\n"]
        };
        let end: &[u8] = if keep {
            b"\r\n"
        } else {
            b"Connection: close\r\n\r\n"
        };
        let head = [
            &b"HTTP/1."[..],
            &minor,
            b" 200 OK\r\nServer: asynchat-rs\r\nDate: ",
            &date,
            b"\r\nContent-Type: ",
            content_type(&path).as_bytes(),
            b"\r\n",
            framing[0],
            framing[1],
            framing[2],
            end,
        ];
        ctx.push_slices(&head);
        match (head_only, stream, known.contents) {
            (true, _, _) => {}
            (false, false, Some(contents)) => ctx.push(contents),
            _ => {
                let file = FileProducer {
                    path,
                    file: None,
                    left: len,
                };
                if chunked {
                    ctx.push_producer(ChunkedProducer::new(file));
                } else {
                    ctx.push_producer(file);
                }
            }
        }
        if !keep {
            self.finish(ctx);
        }
    }
}

impl Protocol for Httpd {
    fn first_terminator(&self) -> Terminator {
        "\r\n\r\n".into()
    }

    fn collect_incoming_data(&mut self, ctx: &mut Context<'_>, data: Frame<'_>) {
        match self.phase {
            Phase::Head => {
                self.head_has_line_end |= (self.last_was_cr && data.first() == Some(&b'\n'))
                    || memchr::memmem::find(&data, b"\r\n").is_some();
                self.last_was_cr = data.last() == Some(&b'\r');
                ctx.collect(data);
            }
            // A body is read only to find the next request; a finished connection reads nothing.
            Phase::Body(_) | Phase::Done => {}
        }
    }

    fn found_terminator(&mut self, ctx: &mut Context<'_>, frame: Frame<'_>) {
        match std::mem::replace(&mut self.phase, Phase::Head) {
            Phase::Head => self.head(ctx, &frame),
            Phase::Body(request) => self.respond(ctx, &request),
            Phase::Done => self.phase = Phase::Done,
        }
    }

    fn peer_closed(&mut self, ctx: &mut Context<'_>, _unterminated: u64) {
        ctx.close_when_done();
    }

    fn frame_too_long(&mut self, ctx: &mut Context<'_>, _limit: usize) {
        let status = if self.head_has_line_end { 431 } else { 414 };
        self.error(ctx, Status(status), 1, false);
    }

    fn timeout(&mut self, ctx: &mut Context<'_>, timer: Timer) {
        match timer {
            // RFC 9110 §15.5.9: say so, then close.
            Timer::Frame => self.error(ctx, Status(408), 1, false),
            Timer::Idle => ctx.close_because(CloseReason::TimedOut),
            _ => {}
        }
    }

    fn closed(&mut self, _reason: &CloseReason) {
        self.phase = Phase::Done;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use asynchat_core::testing::{Harness, Replay};
    use asynchat_core::State;

    /// A root with a few files, and a secret beside it reachable only through a symlink.
    struct Site {
        base: PathBuf,
        root: PathBuf,
    }

    impl Site {
        fn new(name: &str) -> Self {
            let base = std::env::temp_dir().join(format!("httpd-{name}-{}", std::process::id()));
            let root = base.join("root");
            std::fs::create_dir_all(root.join("sub")).unwrap();
            std::fs::write(root.join("a.txt"), "alpha\n").unwrap();
            std::fs::write(root.join("sub/index.html"), "<p>index</p>").unwrap();
            std::fs::write(root.join("big.bin"), vec![7u8; 3000]).unwrap();
            std::fs::write(base.join("secret"), "secret\n").unwrap();
            std::os::unix::fs::symlink(base.join("secret"), root.join("escape")).unwrap();
            Self { base, root }
        }

        fn harness(&self) -> Harness<Httpd> {
            Harness::with_config(
                Httpd::new(&self.root)
                    .unwrap()
                    .stream_above(1000)
                    .clock(fixed_clock),
                &config(),
            )
        }
    }

    impl Drop for Site {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }

    fn text(h: &mut Harness<Httpd>) -> String {
        String::from_utf8_lossy(&h.take_output()).into_owned()
    }

    fn statuses(reply: &str) -> Vec<&str> {
        reply
            .match_indices("HTTP/1.")
            .map(|(i, _)| &reply[i + 9..i + 12])
            .collect()
    }

    #[test]
    fn a_slow_loris_gets_408_and_is_closed_at_the_request_timeout() {
        let site = Site::new("loris");
        let mut h = site.harness();
        // A byte every half second: the idle timeout (30 s) never fires.
        let head = b"GET /a.txt HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        for b in head.iter().take(REQUEST_TIMEOUT.as_secs() as usize * 2 - 1) {
            h.send([*b]).advance(Duration::from_millis(500));
            assert_eq!(h.state(), State::Open, "at {:?}", h.elapsed());
        }
        h.send([b'x']).advance(Duration::from_millis(500));
        assert_eq!(h.elapsed(), REQUEST_TIMEOUT);
        assert_eq!(statuses(&text(&mut h)), ["408"]);
        assert!(h.is_closed(), "closed after the 408");
        // A request that takes its time but finishes within the timeout is served.
        let mut h = site.harness();
        for b in b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n" {
            h.send([*b]).advance(Duration::from_millis(500));
        }
        assert_eq!(statuses(&text(&mut h)), ["200"]);
        assert_eq!(h.state(), State::Open);
    }

    #[test]
    fn pipelined_requests_are_answered_in_order_on_one_connection() {
        let site = Site::new("pipeline");
        let mut h = site.harness();
        h.send(
            "GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n\
             HEAD /a.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /sub/ HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        let reply = text(&mut h);
        assert_eq!(statuses(&reply), ["200", "404", "200", "200"]);
        assert!(reply.contains("Content-Length: 6\r\n\r\nalpha\nHTTP/1.1 404"));
        // HEAD: the same head as GET, no body.
        assert!(reply.contains(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 6\r\n\r\nHTTP/1.1 200"
        ));
        assert!(
            reply.ends_with("text/html; charset=utf-8\r\nContent-Length: 12\r\n\r\n<p>index</p>")
        );
        assert_eq!(h.state(), State::Open);
    }

    #[test]
    fn a_content_length_body_is_skipped_and_the_next_request_served() {
        let site = Site::new("body");
        let mut h = site.harness();
        h.send("POST /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello\r\n\r\n!!");
        h.send("GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        let reply = text(&mut h);
        assert_eq!(statuses(&reply), ["405", "200"]);
        assert!(reply.contains("Allow: GET, HEAD\r\n"));
        assert!(reply.ends_with("alpha\n"));
    }

    #[test]
    fn a_body_larger_than_a_head_is_skipped_whole() {
        let site = Site::new("bigbody");
        let mut h = site.harness();
        let body = "b".repeat(MAX_HEAD * 6);
        h.send(format!(
            "POST /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
        h.send("GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(statuses(&text(&mut h)), ["405", "200"]);
        assert_eq!(h.state(), State::Open);
    }

    #[test]
    fn large_files_are_chunked_from_a_producer() {
        let site = Site::new("chunked");
        let mut h = site.harness();
        h.send("GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        let reply = h.take_output();
        let head_end = memchr::memmem::find(&reply, b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&reply[..head_end]);
        assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
        assert!(!head.contains("Content-Length"));
        let mut expected = b"bb8\r\n".to_vec();
        expected.extend(vec![7u8; 3000]);
        expected.extend_from_slice(b"\r\n0\r\n\r\nHTTP/1.1 200 OK");
        assert_eq!(&reply[head_end..head_end + expected.len()], &expected[..]);
    }

    #[test]
    fn http_1_0_streams_with_a_length_and_closes() {
        let site = Site::new("http10");
        let mut h = site.harness();
        h.send("GET /big.bin HTTP/1.0\r\n\r\n");
        let reply = h.take_output();
        let head = String::from_utf8_lossy(&reply[..200]);
        assert!(head.starts_with("HTTP/1.0 200 OK\r\n"));
        assert!(head.contains("Content-Length: 3000\r\nConnection: close\r\n\r\n"));
        assert!(reply.ends_with(&[7u8; 3000]));
        assert_eq!(h.state(), State::Closed);
    }

    /// A file of exactly one 64 KiB read fills the outbox's pull: its producer is found spent
    /// only by the poll after that chunk is written, which must still end the connection.
    #[test]
    fn http_1_0_stream_of_exactly_one_read_closes() {
        let site = Site::new("http10-one-read");
        std::fs::write(site.root.join("64k.bin"), vec![6u8; FILE_CHUNK]).unwrap();
        let mut h = site.harness();
        h.send("GET /64k.bin HTTP/1.0\r\n\r\n");
        let reply = h.take_output();
        assert!(reply.ends_with(&[6u8; FILE_CHUNK]));
        assert_eq!(h.state(), State::Closed);
        assert_eq!(h.close_reason(), Some(&CloseReason::Done));
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_field() {
        let site = Site::new("keepalive");
        let mut h = site.harness();
        h.send("GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(h.state(), State::Open);
        h.send(
            "GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /a.txt HTTP/1.1\r\n",
        );
        let reply = text(&mut h);
        assert_eq!(
            statuses(&reply),
            ["200", "200"],
            "nothing after Connection: close"
        );
        assert!(reply.contains("Connection: close\r\n"));
        assert_eq!(h.state(), State::Closed);
    }

    #[test]
    fn traversal_is_refused_every_way() {
        let site = Site::new("traversal");
        for (target, status) in [
            ("/../secret", "400"),
            ("/sub/../../secret", "400"),
            ("/%2e%2e/secret", "400"),
            ("/%2E%2E%2Fsecret", "400"),
            ("/..%5csecret", "400"),
            ("/escape", "403"),
            ("//etc/passwd", "404"),
            ("/%2fetc%2fpasswd", "404"),
            ("secret", "400"),
            ("/a.txt%00.html", "400"),
            ("/%zz", "400"),
        ] {
            let mut h = site.harness();
            h.send(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n"));
            let reply = text(&mut h);
            assert_eq!(statuses(&reply), [status], "{target}");
            assert!(
                !reply.contains("secret\n") && !reply.contains("root:"),
                "{target}"
            );
        }
    }

    #[test]
    fn malformed_and_oversized_requests() {
        let site = Site::new("errors");
        let long_target = format!("/{}", "a".repeat(MAX_REQUEST_LINE + 10));
        let many_fields = format!(
            "GET / HTTP/1.1\r\nHost: x\r\n{}",
            "X-Pad: 0123456789\r\n".repeat(1000)
        );
        for (request, status) in [
            ("GET /a.txt HTTP/1.1\r\n\r\n".to_owned(), "400"),
            ("GET /a.txt\r\n\r\n".to_owned(), "400"),
            ("GET  /a.txt HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(), "400"),
            ("GET /a.txt HTTP/2.0\r\nHost: x\r\n\r\n".to_owned(), "505"),
            ("GET /a.txt HTTP/1.1\r\nHost : x\r\n\r\n".to_owned(), "400"),
            (
                "GET /a.txt HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n".to_owned(),
                "400",
            ),
            (
                "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n".to_owned(),
                "413",
            ),
            (
                "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
                    .to_owned(),
                "400",
            ),
            (
                "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".to_owned(),
                "400",
            ),
            (
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned(),
                "400",
            ),
            (
                format!("GET {long_target} HTTP/1.1\r\nHost: x\r\n\r\n"),
                "414",
            ),
            (format!("GET {}", "b".repeat(MAX_HEAD + 10)), "414"),
            (many_fields, "431"),
        ] {
            let mut h = site.harness();
            h.send(&request);
            let reply = text(&mut h);
            assert_eq!(statuses(&reply), [status], "{:.60}", request);
            assert!(reply.contains("Connection: close\r\n"));
            assert_eq!(h.state(), State::Closed, "{:.60}", request);
        }
    }

    #[test]
    fn a_file_served_again_within_the_validity_costs_no_file_system_call() {
        let site = Site::new("cache");
        let mut h = site.harness();
        let ask = |h: &mut Harness<Httpd>| {
            h.send("GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
            text(h)
        };
        let first = ask(&mut h);
        assert!(first.ends_with("\r\n\r\nalpha\n"), "{first}");
        // Gone from the disk: still served, as it was, while the cache trusts it.
        std::fs::remove_file(site.root.join("a.txt")).unwrap();
        h.advance(FILE_CACHE_VALID / 2);
        assert_eq!(ask(&mut h), first);
        h.advance(FILE_CACHE_VALID);
        assert_eq!(statuses(&ask(&mut h)), ["404"]);
    }

    #[test]
    fn queries_of_one_file_share_its_entry_and_the_length_comes_from_what_was_read() {
        let site = Site::new("cache-query");
        let files = Files::new(&site.root).unwrap();
        let mut h =
            Harness::with_config(Httpd::shared(files.clone()).clock(fixed_clock), &config());
        for query in ["", "?a=1", "?b=2#frag"] {
            h.send(format!("GET /a.txt{query} HTTP/1.1\r\nHost: x\r\n\r\n"));
            let reply = text(&mut h);
            assert!(
                reply.contains("Content-Length: 6\r\n") && reply.ends_with("alpha\n"),
                "{reply}"
            );
        }
        assert_eq!(
            files.cache().entries.len(),
            1,
            "one entry for every query of a file"
        );
        // Learnt while it was 6 bytes long, then grown: the head frames what is sent.
        let mut stale = files.known("/a.txt", h.now()).unwrap();
        stale.contents = None;
        files.learn("/a.txt", stale);
        std::fs::write(site.root.join("a.txt"), "alpha and more\n").unwrap();
        h.send("GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        let reply = text(&mut h);
        assert!(
            reply.contains("Content-Length: 15\r\n") && reply.ends_with("alpha and more\n"),
            "{reply}"
        );
    }

    #[test]
    fn the_file_cache_holds_at_most_its_entries_and_bytes() {
        let site = Site::new("cache-bounds");
        let files = Files::new(&site.root).unwrap();
        let known = |len: usize| Known {
            at: std::time::Instant::now(),
            path: site.root.join("a.txt").into(),
            len: len as u64,
            contents: Some(Bytes::from(vec![0u8; len])),
        };
        for i in 0..FILE_CACHE_ENTRIES * 2 {
            files.learn(&format!("/{i}"), known(10));
            let cache = files.cache();
            assert!(cache.entries.len() <= FILE_CACHE_ENTRIES);
            assert_eq!(cache.bytes, cache.entries.len() * 10);
        }
        for i in 0..FILE_CACHE_BYTES / (200 << 10) * 2 {
            files.learn(&format!("/big{i}"), known(200 << 10));
            assert!(files.cache().bytes <= FILE_CACHE_BYTES);
        }
        // Learning a target again replaces it, its bytes counted once.
        files.learn("/same", known(100));
        files.learn("/same", known(100));
        let cache = files.cache();
        let counted: usize = cache
            .entries
            .values()
            .filter_map(|k| k.contents.as_ref())
            .map(Bytes::len)
            .sum();
        assert_eq!(cache.bytes, counted);
    }

    /// The status of a `GET` of `target` with these fields (each without its CRLF), and whether
    /// the connection was left open.
    fn get(site: &Site, target: &str, version: &str, fields: &[&str]) -> (String, bool) {
        let mut h = site.harness();
        let mut head = format!("GET {target} HTTP/1.{version}\r\n");
        for field in fields {
            head.push_str(field);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        h.send(head);
        let reply = text(&mut h);
        let open = h.state() == State::Open;
        let statuses = statuses(&reply);
        assert_eq!(statuses.len(), 1, "{target} {fields:?}: {reply}");
        assert_eq!(open, !reply.contains("Connection: close\r\n"), "{reply}");
        (statuses[0].to_owned(), open)
    }

    #[test]
    fn host_must_appear_once_with_a_valid_value() {
        let site = Site::new("host");
        for fields in [
            &["Host: x", "Host: x"][..],
            &["Host: a", "host: b"],
            &["HOST: a", "X-A: 1", "Host: a"],
            &[],
            &["X-Host: x"],
            &["Host: a b"],
            &["Host: a/b"],
            &["Host: u@a"],
            &["Host: a\x01b"],
            &["Host: a:"],
            &["Host: a:8x"],
            &["Host: a:-1"],
            &["Host: a:65536"],
            &["Host: a:99999999999999999999"],
            &["Host: a:80:80"],
            &["Host: [::1"],
            &["Host: [::g]"],
            &["Host: [::1]x"],
            &["Host: [::1]:"],
            &["Host: ::1"],
            &["Host: [v.x]"],
            &["Host: a%zz"],
            &["Host: a%2"],
            &["Host: \"a\""],
            &["Host: a\\b"],
        ] {
            assert_eq!(
                get(&site, "/a.txt", "1", fields),
                ("400".into(), false),
                "{fields:?}"
            );
        }
        for host in [
            "x",
            "",
            "Example.COM:8080",
            "127.0.0.1:65535",
            "a:0",
            "a:00080",
            "[::1]",
            "[2001:db8::1]:443",
            "[::ffff:192.0.2.1]",
            "[v1.fe:80]",
            "a%20b.example",
            "a-b_c~d!$&'()*+,;=",
        ] {
            let field = format!("Host: {host}");
            assert_eq!(
                get(&site, "/a.txt", "1", &[&field]),
                ("200".into(), true),
                "{host:?}"
            );
        }
        // HTTP/1.0 may leave Host out, but not send a bad one or two.
        assert_eq!(get(&site, "/a.txt", "0", &[]).0, "200");
        assert_eq!(get(&site, "/a.txt", "0", &["Host: a b"]).0, "400");
        assert_eq!(get(&site, "/a.txt", "0", &["Host: a", "Host: a"]).0, "400");
    }

    #[test]
    fn control_characters_in_field_values_and_targets_are_refused() {
        let site = Site::new("ctl");
        for value in [
            "a\0b", "\0", "a\rb", "a\r", "a\nb", "\x1b[1m", "a\x7f", "a\x0bb",
        ] {
            let field = format!("X-Test: {value}");
            assert_eq!(
                get(&site, "/a.txt", "1", &["Host: x", &field]),
                ("400".into(), false),
                "{value:?}"
            );
        }
        for target in ["/a.txt\x1b", "/a\rb", "/a.txt\0", "/a.txt\x7f", "/a\tb"] {
            assert_eq!(get(&site, target, "1", &["Host: x"]).0, "400", "{target:?}");
        }
        // HTAB and SP inside a value are fine.
        assert_eq!(
            get(&site, "/a.txt", "1", &["Host: x", "X-Test: a\tb c"]),
            ("200".into(), true)
        );
    }

    #[test]
    fn absolute_form_targets_are_served_by_their_path() {
        let site = Site::new("absolute");
        for (target, status) in [
            ("http://x/a.txt", "200"),
            ("https://x/a.txt", "200"),
            ("HTTP://Example.com:8080/a.txt?q=1", "200"),
            ("http://[::1]:80/a.txt", "200"),
            ("http://x/sub/", "200"),
            // The root has no index.html.
            ("http://x", "404"),
            ("http://x?q", "404"),
            ("http://x/nope", "404"),
            ("http://x/../secret", "400"),
            ("http://x/%2e%2e/secret", "400"),
            ("http://x/escape", "403"),
            ("ftp://x/a.txt", "400"),
            ("file:///a.txt", "400"),
            ("http:/a.txt", "400"),
            ("http:///a.txt", "400"),
            ("http://:80/a.txt", "400"),
            ("http://u@x/a.txt", "400"),
            ("http://u:p@x/a.txt", "400"),
            ("http://x:99999/a.txt", "400"),
            ("http://x\\y/a.txt", "400"),
        ] {
            // The Host field differs: the target's authority is the one that counts.
            let (got, _) = get(&site, target, "1", &["Host: other.example"]);
            assert_eq!(got, status, "{target}");
        }
        let mut h = site.harness();
        h.send("GET http://x/a.txt HTTP/1.1\r\nHost: y\r\n\r\nGET https://x/sub/ HTTP/1.0\r\n\r\n");
        let reply = text(&mut h);
        assert_eq!(statuses(&reply), ["200", "200"]);
        assert!(
            reply.contains("\r\n\r\nalpha\nHTTP/1.0 200 OK\r\n"),
            "{reply}"
        );
        assert!(reply.ends_with("<p>index</p>"), "{reply}");
        // HTTP/1.1 still needs its Host line, and only one.
        assert_eq!(get(&site, "http://x/a.txt", "1", &[]).0, "400");
        assert_eq!(
            get(&site, "http://x/a.txt", "1", &["Host: x", "Host: x"]).0,
            "400"
        );
    }

    #[test]
    fn an_absolute_form_authority_stands_for_host() {
        let r = parse_head(b"GET http://a.example:81/p?q HTTP/1.1\r\nHost: b.example").unwrap();
        assert_eq!(r.host(), Some("a.example:81"));
        assert_eq!(r.path(), "/p?q");
        let r = parse_head(b"GET HTTPS://a?q HTTP/1.1\r\nHost: a").unwrap();
        assert_eq!((r.host(), r.path().as_ref()), (Some("a"), "/?q"));
        let r = parse_head(b"GET https://a HTTP/1.1\r\nHost: a").unwrap();
        assert_eq!(r.path(), "/");
        let r = parse_head(b"GET /p?u=http://c/ HTTP/1.1\r\nHost: b.example").unwrap();
        assert_eq!(
            (r.host(), r.path().as_ref()),
            (Some("b.example"), "/p?u=http://c/")
        );
        let r = parse_head(b"GET /p HTTP/1.0").unwrap();
        assert_eq!(r.host(), None);
    }

    #[test]
    fn sessions_are_chunking_invariant() {
        let site = Site::new("replay");
        let input = "GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\nPUT /a.txt HTTP/1.1\r\nHost: x\r\n\
                     Content-Length: 4\r\n\r\n\r\n\r\nHEAD /big.bin HTTP/1.1\r\nHost: x\r\n\r\n\
                     GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /../x HTTP/1.1\r\nHost: x\r\n\r\n";
        let files = Files::new(&site.root).unwrap();
        let t = Replay::new(input).config(config()).assert_invariant(|| {
            Httpd::shared(files.clone())
                .stream_above(1000)
                .clock(fixed_clock)
        });
        assert_eq!(
            statuses(&String::from_utf8_lossy(&t.output)),
            ["200", "405", "200", "200", "400"]
        );
    }

    fn fixed_clock() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(784_111_777)
    }

    #[test]
    fn http_dates_are_imf_fixdates() {
        // RFC 9110's own example, the epoch, a leap day and the end of a century.
        assert_eq!(http_date(fixed_clock()), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        let at = |secs| http_date(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(951_825_600), "Tue, 29 Feb 2000 12:00:00 GMT");
        assert_eq!(at(4_102_444_799), "Thu, 31 Dec 2099 23:59:59 GMT");
        assert_eq!(at(1_795_996_800), "Mon, 30 Nov 2026 00:00:00 GMT");
    }

    #[test]
    fn every_reply_carries_a_date() {
        let site = Site::new("date");
        let mut h = site.harness();
        h.send("GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
        let reply = text(&mut h);
        assert_eq!(
            reply
                .matches("\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n")
                .count(),
            2
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type(Path::new("x.HTML")),
            "text/html; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("x.png")), "image/png");
        assert_eq!(
            content_type(Path::new("Makefile")),
            "application/octet-stream"
        );
    }
}
