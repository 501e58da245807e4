//! Runs N echo events (see `benches/common/echo_event.rs`) of one kind, for an instruction
//! count under valgrind: `scripts/instructions-per-line` runs it twice (N and 2N events) and
//! divides the difference by the lines, so start-up costs cancel out.
//!
//! ```text
//! cargo run --release -p asynchat-core --example event_instructions -- copy|push|raw EVENTS
//! ```

use std::hint::black_box;
use std::time::Instant;

use asynchat_core::Chat;

#[path = "../benches/common/echo_event.rs"]
mod echo_event;
use echo_event::{batch, chat_event, raw_event, CopyEcho, PushEcho};

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_default();
    let events: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let input = batch();
    let now = Instant::now();
    let mut written = 0;
    match kind.as_str() {
        "copy" => {
            let mut chat = Chat::new(CopyEcho).expect("valid terminator");
            chat.handle_connected(now);
            for _ in 0..events {
                written += chat_event(&mut chat, black_box(&input), now);
            }
        }
        "push" => {
            let mut chat = Chat::new(PushEcho).expect("valid terminator");
            chat.handle_connected(now);
            for _ in 0..events {
                written += chat_event(&mut chat, black_box(&input), now);
            }
        }
        "raw" => {
            let (mut pending, mut out) = (Vec::new(), Vec::new());
            for _ in 0..events {
                written += raw_event(&mut pending, &mut out, black_box(&input));
            }
        }
        _ => {
            eprintln!("usage: event_instructions copy|push|raw EVENTS");
            std::process::exit(2);
        }
    }
    assert_eq!(written, events * input.len(), "every byte echoed");
}
