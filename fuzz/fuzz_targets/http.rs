//! The static file server through the test harness, over a small root made once per process: no
//! panic; the responses and the end state do not depend on how the requests were chunked; the
//! output is a sequence of well-formed responses whose bodies match their framing; a response
//! that says `Connection: close` ends the connection without waiting for the peer.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use asynchat_core::{CloseReason, State};
use asynchat_examples::httpd::{config, Files, Httpd};
use asynchat_fuzz::{chunking_invariant, Session};
use libfuzzer_sys::fuzz_target;

/// Files from this size on are streamed through a producer (chunked for HTTP/1.1).
const STREAM_ABOVE: u64 = 1000;

/// The root: small files, a directory with an index, files streamed in one, several and exactly
/// one 64 KiB read (the size of one file read and of one outbox pull), a symlink out of the root.
fn root() -> &'static Arc<Path> {
    static ROOT: OnceLock<Arc<Path>> = OnceLock::new();
    ROOT.get_or_init(|| {
        let base: PathBuf =
            std::env::temp_dir().join(format!("asynchat-fuzz-http-{}", std::process::id()));
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).expect("temp dir");
        std::fs::write(root.join("a.txt"), "alpha\n").expect("write");
        std::fs::write(root.join("index.html"), "<p>home</p>").expect("write");
        std::fs::write(root.join("sub/index.html"), "<p>index</p>").expect("write");
        std::fs::write(root.join("big.bin"), vec![7u8; 3000]).expect("write");
        std::fs::write(root.join("64k.bin"), vec![6u8; 64 << 10]).expect("write");
        std::fs::write(root.join("100k.bin"), vec![5u8; 100 << 10]).expect("write");
        std::fs::write(base.join("secret"), "secret\n").expect("write");
        let _ = std::os::unix::fs::symlink(base.join("secret"), root.join("escape"));
        root.canonicalize().expect("canonical root").into()
    })
}

/// The root's files, shared by every run as a server's connections share them (the cache too).
fn files() -> &'static Arc<Files> {
    static FILES: OnceLock<Arc<Files>> = OnceLock::new();
    FILES.get_or_init(|| Files::canonical(root().clone()))
}

fn fixed_clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(784_111_777)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Splits the output into responses, checking each one's framing. Returns, per response, its
/// status and whether it said `Connection: close`. A HEAD response's body cannot be told from
/// the next response here, so a body is only taken when the next bytes are not a status line.
fn responses(mut out: &[u8]) -> Vec<(u16, bool)> {
    let mut seen = Vec::new();
    while !out.is_empty() {
        let end = find(out, b"\r\n\r\n").expect("a response head ends with CRLF CRLF");
        let head = std::str::from_utf8(&out[..end]).expect("heads are UTF-8");
        out = &out[end + 4..];
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        assert!(
            status_line.starts_with("HTTP/1.1 ") || status_line.starts_with("HTTP/1.0 "),
            "status line {status_line:?}"
        );
        let status: u16 = status_line[9..12].parse().expect("a 3-digit status");
        let field = |name: &str| {
            head.split("\r\n").skip(1).find_map(|l| {
                let (n, v) = l.split_once(": ")?;
                n.eq_ignore_ascii_case(name).then_some(v)
            })
        };
        assert!(field("Date").is_some(), "no Date in {head:?}");
        let close = field("Connection") == Some("close");
        let body_follows = !out.is_empty() && !out.starts_with(b"HTTP/1.");
        if field("Transfer-Encoding") == Some("chunked") {
            if body_follows {
                loop {
                    let line_end = find(out, b"\r\n").expect("chunk size line");
                    let size = usize::from_str_radix(
                        std::str::from_utf8(&out[..line_end]).expect("hex"),
                        16,
                    )
                    .expect("a hex chunk size");
                    out = &out[line_end + 2..];
                    assert!(out.len() >= size + 2, "chunk cut short");
                    assert_eq!(&out[size..size + 2], b"\r\n", "chunk not followed by CRLF");
                    out = &out[size + 2..];
                    if size == 0 {
                        break;
                    }
                }
            }
        } else {
            let len: usize = field("Content-Length")
                .expect("a length or chunked")
                .parse()
                .expect("a decimal length");
            if body_follows && len > 0 {
                assert!(out.len() >= len, "body cut short: {} of {len}", out.len());
                out = &out[len..];
            }
        }
        seen.push((status, close));
    }
    seen
}

fuzz_target!(|data: &[u8]| {
    let Some(session) = Session::parse(data) else {
        return;
    };
    let make = || {
        Httpd::shared(files().clone())
            .stream_above(STREAM_ABOVE)
            .clock(fixed_clock)
    };
    // A request line alone over the limit is answered 414, a head with a line end 431.
    let config = if session.small_limits {
        config().max_frame(600)
    } else {
        config()
    };
    let [open, ended] = chunking_invariant(&session, &config, make, |_, _, _| {});
    for t in [&open, &ended] {
        let seen = responses(&t.output);
        if let Some(i) = seen.iter().position(|(_, close)| *close) {
            assert_eq!(i + 1, seen.len(), "a response after Connection: close");
        }
    }
    // Without the peer's EOF: a connection whose last response said it closes has closed,
    // gracefully, having written everything.
    if responses(&open.output)
        .last()
        .is_some_and(|(_, close)| *close)
    {
        assert_eq!(
            open.state,
            State::Closed,
            "Connection: close, yet {:?}",
            open.state
        );
        assert!(matches!(open.close_reason, Some(CloseReason::Done)));
    }
    assert!(ended.output.starts_with(&open.output));
});
