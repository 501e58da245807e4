//! The RESP server through the test harness, a fresh store per run: no panic; the replies and the
//! end state do not depend on how the commands were chunked; the output is a sequence of
//! complete, well-formed RESP2 replies; a connection that answered a protocol error closes.
#![no_main]

use asynchat_core::State;
use asynchat_examples::resp::{config, Resp, Store};
use asynchat_fuzz::{chunking_invariant, Session};
use libfuzzer_sys::fuzz_target;

fn line(out: &[u8]) -> (&[u8], &[u8]) {
    let end = out
        .windows(2)
        .position(|w| w == b"\r\n")
        .expect("a reply line ends with CRLF");
    (&out[..end], &out[end + 2..])
}

fn int(s: &[u8]) -> i64 {
    std::str::from_utf8(s)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an integer: {:?}", String::from_utf8_lossy(s)))
}

/// Parses one reply; returns the rest and whether it was a protocol error.
fn reply(out: &[u8]) -> (&[u8], bool) {
    let (&kind, rest) = out.split_first().expect("a reply");
    let (text, rest) = line(rest);
    match kind {
        b'+' => {
            assert!(!text.contains(&b'\r') && !text.contains(&b'\n'));
            (rest, false)
        }
        b'-' => {
            // A line break inside an error would make the client read a second reply.
            assert!(
                !text.contains(&b'\r') && !text.contains(&b'\n'),
                "a line break in an error: {:?}",
                String::from_utf8_lossy(text)
            );
            (rest, text.starts_with(b"ERR Protocol error"))
        }
        b':' => {
            int(text);
            (rest, false)
        }
        b'$' => match int(text) {
            -1 => (rest, false),
            n => {
                let n = usize::try_from(n).expect("a bulk length of at least -1");
                assert!(rest.len() >= n + 2, "bulk cut short");
                assert_eq!(&rest[n..n + 2], b"\r\n", "bulk not followed by CRLF");
                (&rest[n + 2..], false)
            }
        },
        b'*' => {
            let mut rest = rest;
            for _ in 0..int(text).max(0) {
                let (r, protocol_error) = reply(rest);
                assert!(!protocol_error, "a protocol error inside an array");
                rest = r;
            }
            (rest, false)
        }
        other => panic!("reply type {:?}", other as char),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(session) = Session::parse(data) else {
        return;
    };
    // An inline command or a header line over the limit is a protocol error.
    let config = if session.small_limits {
        config().max_frame(300)
    } else {
        config()
    };
    let [open, ended] =
        chunking_invariant(&session, &config, || Resp::new(Store::new()), |_, _, _| {});
    for t in [&open, &ended] {
        let mut out = &t.output[..];
        while !out.is_empty() {
            let (rest, protocol_error) = reply(out);
            out = rest;
            if protocol_error {
                assert!(out.is_empty(), "replies after a protocol error");
                assert_eq!(
                    t.state,
                    State::Closed,
                    "a protocol error left it {:?}",
                    t.state
                );
            }
        }
    }
    assert!(ended.output.starts_with(&open.output));
});
