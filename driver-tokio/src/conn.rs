//! One connection as one task: moves bytes and time between an `AsyncRead + AsyncWrite` and a
//! `Chat` until the chat closes.

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use asynchat_core::{Bytes, Chat, Protocol};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Sleep;
use tokio_util::io::poll_read_buf;

/// How many slices one vectored write is offered.
const WRITE_SLICES: usize = 64;

/// What a handle can ask of a connection.
#[derive(Debug)]
pub(crate) enum Command {
    Push(Bytes),
    CloseWhenDone,
    Close,
}

/// Drives `chat` over `io` until it closes; then shuts the write side down if the close was
/// graceful. Commands arrive on `commands`.
pub(crate) async fn drive<P, S>(
    mut chat: Chat<P>,
    mut io: S,
    mut commands: UnboundedReceiver<Command>,
) where
    P: Protocol,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut sleep: Pin<Box<Sleep>> =
        Box::pin(tokio::time::sleep_until(tokio::time::Instant::now()));
    let mut commands_open = true;
    poll_fn(|cx| {
        step(
            &mut chat,
            &mut io,
            &mut commands,
            &mut commands_open,
            sleep.as_mut(),
            cx,
        )
    })
    .await;
    if chat.close_reason().is_some_and(|r| r.is_graceful()) {
        let _ = poll_fn(|cx| Pin::new(&mut io).poll_shutdown(cx)).await;
    }
}

/// One poll: everything that can move moves; `Pending` only once every source has registered
/// the task's waker (or cannot make progress).
fn step<P, S>(
    chat: &mut Chat<P>,
    io: &mut S,
    commands: &mut UnboundedReceiver<Command>,
    commands_open: &mut bool,
    mut sleep: Pin<&mut Sleep>,
    cx: &mut TaskContext<'_>,
) -> Poll<()>
where
    P: Protocol,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut timers_fired = false;
    loop {
        if chat.is_closed() {
            return Poll::Ready(());
        }
        let now = Instant::now();
        let mut progress = false;
        while *commands_open {
            match commands.poll_recv(cx) {
                Poll::Ready(Some(Command::Push(data))) => {
                    chat.with_context(now, |_, ctx| ctx.push(data));
                }
                Poll::Ready(Some(Command::CloseWhenDone)) => chat.close_when_done(),
                Poll::Ready(Some(Command::Close)) => chat.close(),
                // Every handle is gone: nothing more will come.
                Poll::Ready(None) => *commands_open = false,
                Poll::Pending => break,
            }
            progress = true;
        }
        if chat.interest().writable {
            let written = {
                let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
                let n = chat.poll_transmit(&mut slices);
                if n == 0 {
                    Poll::Pending
                } else {
                    Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n])
                }
            };
            progress |= written.is_ready();
            match written {
                Poll::Ready(Ok(0)) => chat.handle_error(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => chat.handle_written(n),
                Poll::Ready(Err(e)) => chat.handle_error(e),
                Poll::Pending => {}
            }
        }
        if chat.interest().readable {
            let read = chat.handle_read_with(now, |buf| poll_read_buf(Pin::new(&mut *io), cx, buf));
            progress |= matches!(read, Some(Poll::Ready(_)));
            match read {
                Some(Poll::Ready(Ok(0))) => chat.handle_eof(now),
                Some(Poll::Ready(Ok(_))) => {}
                Some(Poll::Ready(Err(e))) => chat.handle_error(e),
                Some(Poll::Pending) | None => {}
            }
        }
        if let Some(at) = chat.poll_timeout() {
            let at = tokio::time::Instant::from_std(at);
            if sleep.deadline() != at {
                sleep.as_mut().reset(at);
            }
            if sleep.as_mut().poll(cx).is_ready() {
                if timers_fired {
                    // Timers once per poll: one re-armed for "now" waits for the next poll, so
                    // the task yields instead of spinning.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                chat.handle_timeout(Instant::now());
                timers_fired = true;
                progress = true;
            }
        }
        if !progress {
            return Poll::Pending;
        }
    }
}
