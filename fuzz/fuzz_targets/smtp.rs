//! The SMTP sink through the test harness: no panic; the replies, the end state and the messages
//! delivered do not depend on how the session was chunked; every reply is a well-formed SMTP
//! reply line; a delivered message has recipients, is within the size limit and is made of
//! whole lines.
#![no_main]

use std::cell::RefCell;

use asynchat_core::testing::Transcript;
use asynchat_examples::smtpd::{config, Memory, Message, Smtp};
use asynchat_fuzz::{chunking_invariant, Session};
use libfuzzer_sys::fuzz_target;

/// Small, so the fuzzer reaches the size limit's paths within its input length.
const MAX_SIZE: usize = 300;

/// `NNN` then a space or a dash, then text, then `\r\n` (RFC 5321 §4.2).
fn check_replies(output: &[u8]) {
    assert!(
        output.is_empty() || output.ends_with(b"\r\n"),
        "output ends mid-line"
    );
    for line in output.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let line = line.strip_suffix(b"\r").expect("reply line ends with CRLF");
        assert!(!line.contains(&b'\r'), "a CR inside a reply line");
        assert!(
            line.len() >= 3 && line[..3].iter().all(u8::is_ascii_digit),
            "not a reply: {:?}",
            String::from_utf8_lossy(line)
        );
        assert!(
            line.len() == 3 || line[3] == b' ' || line[3] == b'-',
            "bad separator: {:?}",
            String::from_utf8_lossy(line)
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(session) = Session::parse(data) else {
        return;
    };
    let boxes: RefCell<Vec<Memory>> = RefCell::new(Vec::new());
    let make = || {
        let mailbox = Memory::default();
        boxes.borrow_mut().push(mailbox.clone());
        Smtp::new(mailbox).max_size(MAX_SIZE)
    };
    let same = |_: &Transcript, _: &Transcript, eof: bool| {
        let boxes = boxes.borrow();
        let [.., whole, chunked] = &boxes[..] else {
            unreachable!("two runs per comparison")
        };
        let (whole, chunked): (Vec<Message>, Vec<Message>) = (whole.messages(), chunked.messages());
        assert_eq!(whole, chunked, "delivered messages differ (eof {eof})");
        for m in &whole {
            assert!(
                m.data.len() <= MAX_SIZE,
                "a {} byte message delivered",
                m.data.len()
            );
            assert!(!m.rcpt_to.is_empty(), "a message without recipients");
            assert!(
                m.data.is_empty() || m.data.ends_with(b"\r\n"),
                "a message whose last line has no CRLF: {:?}",
                m.data
            );
        }
    };
    let [open, ended] = chunking_invariant(&session, &config(), make, same);
    check_replies(&open.output);
    check_replies(&ended.output);
    // The peer's EOF only adds to what an open connection had written.
    assert!(ended.output.starts_with(&open.output));
});
