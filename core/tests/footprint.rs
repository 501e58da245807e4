//! What every connection carries, idle or not: the budget that keeps an idle connection of the
//! mio driver within 512 bytes (`echo_bench idle`, BENCHMARKS.md). A field added to the chat
//! must fit in it or pay for itself elsewhere.

use std::mem::size_of;

use asynchat_core::{Chat, Context, Frame, Framer, Outbox, Protocol, Terminator};

struct Nothing;

impl Protocol for Nothing {
    fn first_terminator(&self) -> Terminator {
        Terminator::Eof
    }

    fn found_terminator(&mut self, _: &mut Context<'_>, _: Frame<'_>) {}
}

#[test]
fn the_chat_of_a_protocol_without_state_fits_its_budget() {
    let chat = size_of::<Chat<Nothing>>();
    assert!(chat <= 312, "Chat is {chat} B");
}

#[test]
fn the_outbox_and_the_framer_fit_theirs() {
    // An empty outbox holds its queue as one word (boxed, and only while something is queued).
    let outbox = size_of::<Outbox>();
    assert!(outbox <= 88, "Outbox is {outbox} B");
    let framer = size_of::<Framer>();
    assert!(framer <= 104, "Framer is {framer} B");
}
