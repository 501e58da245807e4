//! The classic asynchat chat room: every line a member sends is broadcast to the others.
//!
//! Lines end with `\n` (a `\r` before it is dropped). Commands:
//!
//! | line | effect |
//! |---|---|
//! | `/nick NAME` | take (or change) a name; needed before talking |
//! | `/who` | list who is in the room |
//! | `/quit` | leave |
//! | anything else | sent to the others as `[name] text` |
//!
//! Control characters in a line are sent as visible text (`ESC` as `^[`, `CR` as `^M`: see
//! [`visible`]) so no member can redraw or forge another's line on a terminal; names cannot hold
//! them at all. Join, leave and rename notices go to the others as `* ...` lines. A member is
//! reached through a [`ConnHandle`], the handle every driver hands out (in the tests, one over
//! a [`Sink`] in memory), so the room is sans-IO like every protocol here.
//!
//! ```
//! use std::sync::Arc;
//! use asynchat_core::testing::Harness;
//! use asynchat_examples::chat::{Member, Room, Sink};
//!
//! let room = Arc::new(Room::default());
//! let ada_inbox = Sink::default();
//! let mut ada = Harness::new(Member::join(&room, ada_inbox.handle()));
//! let mut bob = Harness::new(Member::join(&room, Sink::default().handle()));
//! ada.send("/nick ada\n");
//! bob.send("/nick bob\nhello\n");
//! assert!(ada_inbox.text().ends_with("* bob joined\n[bob] hello\n"));
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use asynchat_core::backlog::PushError;
use asynchat_core::driver::{Command, CommandSink, ConnHandle, ConnId};
use asynchat_core::{
    Bytes, CloseReason, Config, Context, Error, Frame, OverLongPolicy, Protocol, Terminator,
};

/// The longest name `/nick` accepts, in bytes.
pub const MAX_NAME: usize = 32;

/// The longest line the binary accepts, in bytes (its `max_frame`).
pub const MAX_LINE: usize = 4096;

/// The connection limits the room expects: lines up to [`MAX_LINE`], a longer one answered by
/// [`Member`] (which then closes that connection) instead of an abrupt close.
#[must_use]
pub fn config() -> Config {
    Config::default()
        .max_frame(MAX_LINE)
        .over_long(OverLongPolicy::Skip)
}

/// A connection in memory, for tests and the tour's clients: what is pushed to its
/// [`handle`](Self::handle) is kept; a close is ignored.
#[derive(Debug, Clone, Default)]
pub struct Sink(Arc<Mutex<Vec<u8>>>);

impl Sink {
    /// A handle whose pushes land here.
    #[must_use]
    pub fn handle(&self) -> ConnHandle {
        ConnHandle::new(ConnId::from_raw(0), Arc::new(self.clone()))
    }

    /// Everything delivered so far, as text.
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl CommandSink for Sink {
    fn send(&self, _id: ConnId, command: Command) -> Result<(), PushError> {
        if let Command::Push(line) = command {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(&line);
        }
        Ok(())
    }
}

struct Seat {
    name: Option<String>,
    conn: ConnHandle,
    /// Dropped for not keeping up: sent nothing more while its connection closes.
    evicted: bool,
}

/// The room: who is in it, and how to reach them. Shared by every connection (and thread).
#[derive(Default)]
pub struct Room {
    seats: Mutex<Seats>,
}

#[derive(Default)]
struct Seats {
    next: u64,
    by_id: BTreeMap<u64, Seat>,
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Room")
            .field("members", &self.seats().by_id.len())
            .finish()
    }
}

impl Room {
    fn seats(&self) -> MutexGuard<'_, Seats> {
        // A panic elsewhere leaves the map consistent (every change is one insert or remove).
        self.seats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Names of the members who have one, sorted.
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .seats()
            .by_id
            .values()
            .filter_map(|s| s.name.clone())
            .collect();
        names.sort();
        names
    }

    /// Sends `line` to every named member but `from`. Flow control: a member whose backlog
    /// (output queued, and lines in flight to it) is above its limit when a line is due is
    /// evicted, its connection closed with
    /// [`Error::OutboxFull`](asynchat_core::Error::OutboxFull) as the reason. One member that
    /// never reads costs the room at most that limit (four high water marks: 256 KiB by
    /// default), and the others go on at the pace of their own readers.
    fn broadcast(&self, from: u64, line: &Bytes) {
        for (id, seat) in &mut self.seats().by_id {
            if *id == from || seat.name.is_none() || seat.evicted {
                continue;
            }
            if let Err(PushError::Full { limit, .. }) = seat.conn.push(line.clone()) {
                seat.evicted = true;
                // Gone already, if refused: nothing more to do for it.
                let _ = seat
                    .conn
                    .close_because(CloseReason::Error(Error::OutboxFull { limit }));
            }
        }
    }
}

/// `text` with its control characters made visible, so that a line shown on a terminal cannot
/// move the cursor, erase, ring, or start a line that looks like another member's.
///
/// C0 controls (except TAB) and DEL become caret notation: `ESC` is `^[`, `CR` is `^M`, `BEL` is
/// `^G`, `DEL` is `^?`. C1 controls (U+0080 to U+009F), which some terminals obey as well, become
/// `M-` and the caret form of their low seven bits (U+009B, the one-character `CSI`, is `M-^[`),
/// as `cat -v` shows them. Everything else, TAB included, is unchanged.
#[must_use]
pub fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        // Caret notation flips bit 6: 0x1b is '[', 0x7f is '?'.
        let caret = |b: u8| char::from(b ^ 0x40);
        match u8::try_from(c) {
            Ok(b @ (0..=0x08 | 0x0a..=0x1f | 0x7f)) => {
                out.push('^');
                out.push(caret(b));
            }
            Ok(b @ 0x80..=0x9f) => {
                out.push_str("M-^");
                out.push(caret(b - 0x80));
            }
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Why `/nick` refused a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BadName {
    Empty,
    TooLong,
    Invalid,
    Taken,
}

/// One member of a [`Room`]: the protocol of one connection.
#[derive(Debug)]
pub struct Member {
    room: Arc<Room>,
    id: u64,
    name: Option<String>,
}

impl Member {
    /// Enters `room`; the others' lines reach this member through `conn`, its own
    /// connection's handle.
    pub fn join(room: &Arc<Room>, conn: ConnHandle) -> Self {
        let mut seats = room.seats();
        let id = seats.next;
        seats.next += 1;
        seats.by_id.insert(
            id,
            Seat {
                name: None,
                conn,
                evicted: false,
            },
        );
        drop(seats);
        Self {
            room: room.clone(),
            id,
            name: None,
        }
    }

    fn nick(&mut self, ctx: &mut Context<'_>, wanted: &str) {
        let taken_by_other = |seats: &Seats| {
            seats
                .by_id
                .iter()
                .any(|(id, s)| *id != self.id && s.name.as_deref() == Some(wanted))
        };
        let mut seats = self.room.seats();
        let verdict = if wanted.is_empty() {
            Err(BadName::Empty)
        } else if wanted.len() > MAX_NAME {
            Err(BadName::TooLong)
        } else if !wanted
            .chars()
            .all(|c| c.is_alphanumeric() || "-_.".contains(c))
        {
            Err(BadName::Invalid)
        } else if taken_by_other(&seats) {
            Err(BadName::Taken)
        } else {
            Ok(())
        };
        if let Err(why) = verdict {
            drop(seats);
            ctx.push(match why {
                BadName::Empty => "* usage: /nick NAME\n".to_owned(),
                BadName::TooLong => format!("* names are at most {MAX_NAME} bytes\n"),
                BadName::Invalid => "* names use letters, digits, '-', '_' and '.'\n".to_owned(),
                BadName::Taken => format!("* {wanted} is taken\n"),
            });
            return;
        }
        if let Some(seat) = seats.by_id.get_mut(&self.id) {
            seat.name = Some(wanted.to_owned());
        }
        drop(seats);
        let notice = match self.name.replace(wanted.to_owned()) {
            None => format!("* {wanted} joined\n"),
            Some(old) => format!("* {old} is now {wanted}\n"),
        };
        ctx.push(format!("* you are {wanted}\n"));
        self.room.broadcast(self.id, &Bytes::from(notice));
    }

    /// Leaves the room (once), telling the others if this member had a name.
    fn leave(&mut self) {
        if self.room.seats().by_id.remove(&self.id).is_none() {
            return;
        }
        if let Some(name) = self.name.take() {
            self.room
                .broadcast(self.id, &Bytes::from(format!("* {name} left\n")));
        }
    }
}

impl Protocol for Member {
    fn first_terminator(&self) -> Terminator {
        "\n".into()
    }

    fn connected(&mut self, ctx: &mut Context<'_>) {
        ctx.push("* welcome: /nick NAME to join, /who to list, /quit to leave\n");
    }

    fn found_terminator(&mut self, ctx: &mut Context<'_>, line: Frame<'_>) {
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        let line = String::from_utf8_lossy(line);
        let (command, rest) = line.split_once(' ').unwrap_or((&line, ""));
        match command {
            "/nick" => self.nick(ctx, rest.trim()),
            "/who" => {
                let names = self.room.names();
                ctx.push(format!("* online: {}\n", names.join(", ")));
            }
            "/quit" => {
                ctx.push("* bye\n");
                self.leave();
                ctx.close_when_done();
            }
            c if c.starts_with('/') => {
                ctx.push(format!("* unknown command {}\n", visible(c)));
            }
            _ => match &self.name {
                None => ctx.push("* choose a name first: /nick NAME\n"),
                Some(name) => {
                    let said = Bytes::from(format!("[{name}] {}\n", visible(&line)));
                    self.room.broadcast(self.id, &said);
                }
            },
        }
    }

    fn frame_too_long(&mut self, ctx: &mut Context<'_>, limit: usize) {
        ctx.push(format!("* lines are at most {limit} bytes: goodbye\n"));
        ctx.close_when_done();
    }

    fn closed(&mut self, _reason: &CloseReason) {
        self.leave();
    }
}

impl Drop for Member {
    /// A connection dropped without `closed` (a driver shutting down) still leaves the room.
    fn drop(&mut self) {
        self.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use asynchat_core::testing::{Harness, Replay};
    use asynchat_core::State;

    fn member(room: &Arc<Room>) -> (Harness<Member>, Sink) {
        let inbox = Sink::default();
        (Harness::new(Member::join(room, inbox.handle())), inbox)
    }

    #[test]
    fn lines_reach_the_others_named_and_not_the_sender() {
        let room = Arc::new(Room::default());
        let (mut ada, ada_in) = member(&room);
        let (mut bob, bob_in) = member(&room);
        let (mut eve, eve_in) = member(&room);
        ada.send("/nick ada\r\n");
        bob.send("/nick bob\n");
        eve.send("/nick eve\n");
        bob.send("hi all\r\n");
        assert_eq!(ada_in.text(), "* bob joined\n* eve joined\n[bob] hi all\n");
        assert_eq!(eve_in.text(), "[bob] hi all\n");
        assert_eq!(bob_in.text(), "* eve joined\n");
        assert!(bob.take_output().ends_with(b"* you are bob\n"));
    }

    #[test]
    fn who_rename_and_quit() {
        let room = Arc::new(Room::default());
        let (mut ada, ada_in) = member(&room);
        let (mut bob, _) = member(&room);
        ada.send("/nick ada\n");
        bob.send("/nick bob\n/who\n");
        assert!(bob.take_output().ends_with(b"* online: ada, bob\n"));
        bob.send("/nick robert\n");
        assert!(ada_in.text().ends_with("* bob is now robert\n"));
        bob.send("/quit\nnot delivered\n");
        assert!(bob.take_output().ends_with(b"* bye\n"));
        assert_eq!(bob.state(), State::Closed);
        assert!(ada_in.text().ends_with("* robert left\n"));
        assert_eq!(room.names(), ["ada"]);
    }

    #[test]
    fn a_dropped_connection_leaves_once() {
        let room = Arc::new(Room::default());
        let (mut ada, ada_in) = member(&room);
        let (mut bob, _) = member(&room);
        ada.send("/nick ada\n");
        bob.send("/nick bob\n");
        bob.send_eof();
        drop(bob);
        assert_eq!(ada_in.text(), "* bob joined\n* bob left\n");
        assert_eq!(room.names(), ["ada"]);
    }

    #[test]
    fn names_are_checked_and_talking_needs_one() {
        let room = Arc::new(Room::default());
        let (mut ada, _) = member(&room);
        let (mut bob, bob_in) = member(&room);
        ada.send("/nick ada\n");
        ada.take_output();
        bob.take_output();
        bob.send("hello\n/nick\n/nick ada\n/nick a b\n/nick ");
        bob.send("x".repeat(MAX_NAME + 1));
        bob.send("\n/dance\n");
        assert_eq!(
            bob.take_output(),
            format!(
                "* choose a name first: /nick NAME\n* usage: /nick NAME\n* ada is taken\n\
                 * names use letters, digits, '-', '_' and '.'\n\
                 * names are at most {MAX_NAME} bytes\n* unknown command /dance\n"
            )
        );
        assert_eq!(bob_in.text(), "", "an unnamed member hears nothing");
        assert_eq!(room.names(), ["ada"]);
    }

    #[test]
    fn control_characters_reach_the_others_visible_not_raw() {
        let room = Arc::new(Room::default());
        let (mut ada, ada_in) = member(&room);
        let (mut bob, _) = member(&room);
        ada.send("/nick ada\n");
        bob.send("/nick bob\n");
        // A CR would put the cursor back at the start of the line and let bob draw a fake one.
        bob.send("hi\r<alice> fake\r\n");
        bob.send("\x1b[2K\x1b[1A[ada] I quit\x07\x7f\tend\u{9b}2J\n");
        assert_eq!(
            ada_in.text(),
            "* bob joined\n[bob] hi^M<alice> fake\n\
             [bob] ^[[2K^[[1A[ada] I quit^G^?\tendM-^[2J\n"
        );
        // Every control character but the line's own LF, in one line.
        let all: String = ('\0'..='\u{9f}')
            .filter(|c| c.is_control() && *c != '\n')
            .collect();
        bob.send(format!("<{all}>\n"));
        let heard = ada_in.text();
        let last = heard.lines().last().unwrap_or_default();
        assert!(
            !last.chars().any(|c| c.is_control() && c != '\t'),
            "{last:?}"
        );
        assert!(last.starts_with("[bob] <^@^A^B"), "{last:?}");
        assert!(last.contains("^G^H\t^K^L^M"), "TAB kept: {last:?}");
        assert!(last.contains("^^^_^?M-^@M-^A"), "DEL, then C1: {last:?}");
        assert!(last.ends_with("M-^^M-^_>"), "{last:?}");
        // Only the sender sees its unknown command, but visible too.
        bob.take_output();
        bob.send("/\x1b]0;owned\x07\n");
        assert_eq!(bob.take_output(), "* unknown command /^[]0;owned^G\n");
    }

    #[test]
    fn a_name_with_control_characters_is_refused() {
        let room = Arc::new(Room::default());
        let (mut ada, ada_in) = member(&room);
        let (mut bob, _) = member(&room);
        ada.send("/nick ada\n");
        bob.take_output();
        for name in [
            "\x1b[31mada",
            "a\rb",
            "bob\x7f",
            "b\x00b",
            "b\u{9b}b",
            "b\tb",
        ] {
            bob.send(format!("/nick {name}\n"));
            assert_eq!(
                bob.take_output(),
                "* names use letters, digits, '-', '_' and '.'\n",
                "{name:?}"
            );
        }
        assert_eq!(room.names(), ["ada"]);
        assert_eq!(ada_in.text(), "", "no join notice for a refused name");
    }

    #[test]
    fn an_over_long_line_closes_only_that_member() {
        let room = Arc::new(Room::default());
        let config = config().max_frame(64);
        let mut ada = Harness::with_config(Member::join(&room, Sink::default().handle()), &config);
        let (mut bob, _) = member(&room);
        ada.send("/nick ada\n");
        bob.send("/nick bob\n");
        ada.send("y".repeat(100));
        assert!(ada.take_output().ends_with(b"at most 64 bytes: goodbye\n"));
        assert_eq!(ada.state(), State::Closed);
        assert_eq!(room.names(), ["bob"]);
    }

    #[test]
    fn one_member_session_is_chunking_invariant() {
        Replay::new("hello\r\n/nick ada\r\n/who\r\ntext\r\n/nick x y\n/quit\r\n").assert_invariant(
            || Member::join(&Arc::new(Room::default()), Sink::default().handle()),
        );
    }
}
