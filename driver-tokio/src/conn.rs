//! One connection as one task: tokio's stream, timer and channel adapted to the core's
//! [`poll_chat`] loop.

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use asynchat_core::driver::{poll_chat, PollCommands, PollStream, PollTimer};
use asynchat_core::{BytesMut, Chat, Protocol};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Sleep;
use tokio_util::io::poll_read_buf;

struct Stream<'a, S>(&'a mut S);

impl<S: AsyncRead + AsyncWrite + Unpin> PollStream for Stream<'_, S> {
    fn poll_read_into(
        &mut self,
        cx: &mut TaskContext<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        // Reads straight into the spare capacity of the framer's buffer.
        poll_read_buf(Pin::new(&mut *self.0), cx, buf)
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut TaskContext<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write_vectored(cx, bufs)
    }
}

/// Made on the first deadline: a connection that never sets one carries no timer.
struct Timer(Option<Pin<Box<Sleep>>>);

impl PollTimer for Timer {
    fn poll_until(&mut self, cx: &mut TaskContext<'_>, at: Instant) -> Poll<()> {
        let at = tokio::time::Instant::from_std(at);
        let sleep = self
            .0
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if sleep.deadline() != at {
            sleep.as_mut().reset(at);
        }
        sleep.as_mut().poll(cx)
    }
}

/// Drives `chat` over `io` until it closes; then shuts the write side down if the close was
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
    let mut timer = Timer(None);
    let mut open = true;
    poll_fn(|cx| {
        poll_chat(
            &mut chat,
            &mut Stream(&mut io),
            &mut timer,
            &mut commands,
            &mut open,
            cx,
        )
    })
    .await;
    if chat.close_reason().is_some_and(|r| r.is_graceful()) {
        let _ = poll_fn(|cx| Pin::new(&mut io).poll_shutdown(cx)).await;
    }
    on_end();
}
