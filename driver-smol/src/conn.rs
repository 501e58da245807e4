//! One connection as one task: a `futures-io` stream, `smol::Timer` and an `async-channel`
//! adapted to the core's [`poll_chat`] loop.

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use asynchat_core::driver::{poll_chat, PollCommands, PollStream, PollTimer};
use asynchat_core::{BytesMut, Chat, Protocol};
use smol::io::{AsyncRead, AsyncWrite};
use smol::Timer;

struct Stream<'a, S>(&'a mut S);

impl<S: AsyncRead + AsyncWrite + Unpin> PollStream for Stream<'_, S> {
    fn poll_read_into(
        &mut self,
        cx: &mut TaskContext<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        // futures-io reads into initialised memory: zero the spare capacity (a few KiB, as read
        // reservations adapt to the traffic), read, and keep only what was read.
        let start = buf.len();
        buf.resize(buf.capacity().max(start + 1), 0);
        let read = Pin::new(&mut *self.0).poll_read(cx, &mut buf[start..]);
        let n = match &read {
            Poll::Ready(Ok(n)) => *n,
            _ => 0,
        };
        buf.truncate(start + n);
        read
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut TaskContext<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write_vectored(cx, bufs)
    }
}

/// `smol::Timer` and the instant it is set for.
pub(crate) struct Deadline {
    timer: Timer,
    at: Option<Instant>,
}

impl Deadline {
    pub(crate) fn new() -> Self {
        Self {
            timer: Timer::never(),
            at: None,
        }
    }
}

impl PollTimer for Deadline {
    fn poll_until(&mut self, cx: &mut TaskContext<'_>, at: Instant) -> Poll<()> {
        if self.at != Some(at) {
            self.timer.set_at(at);
            self.at = Some(at);
        }
        Pin::new(&mut self.timer).poll(cx).map(|_| ())
    }
}

/// Drives `chat` over `io` until it closes; then closes the write side if the close was
/// graceful. Commands arrive on `commands`.
///
/// A chat still connecting is connected first (the stream is connected). `on_end` runs last:
/// the spawned future is this one, with no wrapper holding a second copy of the chat.
pub(crate) async fn drive<P, S, C>(
    mut chat: Chat<P>,
    mut io: S,
    mut commands: C,
    on_end: impl FnOnce(),
) where
    P: Protocol,
    S: AsyncRead + AsyncWrite + Unpin,
    C: PollCommands,
{
    if chat.state() == asynchat_core::State::Connecting {
        chat.handle_connected(Instant::now());
    }
    let mut deadline = Deadline::new();
    let mut open = true;
    poll_fn(|cx| {
        poll_chat(
            &mut chat,
            &mut Stream(&mut io),
            &mut deadline,
            &mut commands,
            &mut open,
            cx,
        )
    })
    .await;
    if chat.close_reason().is_some_and(|r| r.is_graceful()) {
        let _ = poll_fn(|cx| Pin::new(&mut io).poll_close(cx)).await;
    }
    on_end();
}
