//! tokio's stream, timer and clock adapted to the core's connection task
//! ([`run_chat`](asynchat_core::driver::run_chat)).

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use asynchat_core::driver::{PollStream, PollTimer};
use asynchat_core::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Any tokio `AsyncRead + AsyncWrite` stream.
pub(crate) struct Stream<S>(pub(crate) S);

impl<S: AsyncRead + AsyncWrite + Unpin> PollStream for Stream<S> {
    #[allow(unsafe_code)]
    fn poll_read_into(
        &mut self,
        cx: &mut TaskContext<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        // Reads straight into the spare capacity of the framer's buffer: no zeroing, no copy.
        let spare = buf.spare_capacity_mut();
        let mut read = ReadBuf::uninit(spare);
        let start = read.filled().as_ptr();
        std::task::ready!(Pin::new(&mut self.0).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        // A reader may not swap the buffer out; tokio-util checks the same.
        assert_eq!(
            start,
            read.filled().as_ptr(),
            "the reader replaced the buffer"
        );
        // SAFETY: `ReadBuf` guarantees its first `filled().len()` bytes are initialised, and
        // they are the `n` bytes after `buf.len()` (the start pointer is unchanged, and the
        // filled region never exceeds the spare capacity it was built on).
        unsafe { buf.set_len(buf.len() + n) };
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut TaskContext<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // One slice (short replies copied together) goes as a plain write: on a socket that is
        // `send`, which skips the file layer the kernel's `writev` passes through.
        match bufs {
            [one] => Pin::new(&mut self.0).poll_write(cx, one),
            _ => Pin::new(&mut self.0).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_shutdown(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// tokio's clock and a `Sleep` made on the first deadline: a connection that never sets one
/// carries no timer.
#[derive(Default)]
pub(crate) struct Timer(Option<Pin<Box<Sleep>>>);

impl PollTimer for Timer {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

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

    fn yield_turn(&mut self, cx: &mut TaskContext<'_>) {
        // `yield_now`'s first poll hands the waker to the scheduler's deferred list, which is
        // woken after the I/O driver has been polled (a plain wake would keep the run queue
        // busy, and the driver unpolled, for up to 61 tasks' turns).
        let mut yielded = std::pin::pin!(tokio::task::yield_now());
        let _ = yielded.as_mut().poll(cx);
    }
}
