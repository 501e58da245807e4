//! asyncore's `dispatcher`: any socket (or mio source) driven by readiness callbacks, for what is
//! not chat-style (a custom UDP protocol, a proxy, a resolver socket...).

use crate::handle::Push;
use std::fmt;
use std::io;
use std::time::Instant;

use mio::event::Source;
use mio::{Interest, Registry, Token};

use crate::conn::{Cx, Entry};
use crate::handle::Handle;

/// Readiness callbacks for a raw source: asyncore's `readable()`, `writable()`, `handle_read()`,
/// `handle_write()`, `handle_close()`, plus a deadline.
///
/// Readiness is edge-triggered: `handle_read` must read until `WouldBlock` (and `handle_write`
/// write until it or until nothing is left), or the rest will not be reported again.
/// `readable` and `writable` are asked again after every callback; while both are false the
/// source is not polled at all, as in asyncore.
pub trait Dispatcher {
    /// The source to poll.
    fn source(&mut self) -> &mut dyn Source;

    /// Whether to wait for input (asyncore's `readable()`); default true.
    fn readable(&self) -> bool {
        true
    }

    /// Whether to wait for output space (asyncore's `writable()`); default false.
    fn writable(&self) -> bool {
        false
    }

    /// The source is readable.
    fn handle_read(&mut self, cx: &mut DispatchContext<'_>);

    /// The source is writable.
    fn handle_write(&mut self, cx: &mut DispatchContext<'_>) {
        let _ = cx;
    }

    /// The deadline set with [`DispatchContext::set_deadline`] passed.
    fn handle_timeout(&mut self, cx: &mut DispatchContext<'_>) {
        let _ = cx;
    }

    /// The loop could not poll the source (registering it failed). The default closes the
    /// dispatcher, as asyncore's `handle_error` did; errors of the dispatcher's own reads and
    /// writes are its own to handle in `handle_read` / `handle_write`.
    fn handle_error(&mut self, cx: &mut DispatchContext<'_>, error: io::Error) {
        let _ = error;
        cx.close();
    }

    /// The dispatcher is closed (by [`DispatchContext::close`] or a [`Handle`]); called once, last.
    fn handle_close(&mut self) {}
}

/// What a [`Dispatcher`] callback can do.
pub struct DispatchContext<'a> {
    now: Instant,
    handle: &'a Handle,
    deadline: &'a mut Option<Instant>,
    closed: &'a mut bool,
}

impl fmt::Debug for DispatchContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DispatchContext")
            .field("now", &self.now)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl DispatchContext<'_> {
    /// The time of the event being handled.
    #[must_use]
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Sets (or clears) the time at which [`Dispatcher::handle_timeout`] runs.
    pub fn set_deadline(&mut self, at: Option<Instant>) {
        *self.deadline = at;
    }

    /// A handle on the loop.
    #[must_use]
    pub fn handle(&self) -> &Handle {
        self.handle
    }

    /// Closes the dispatcher: it is deregistered and dropped after this callback.
    pub fn close(&mut self) {
        *self.closed = true;
    }
}

pub(crate) struct RawEntry<D> {
    dispatcher: D,
    handle: Handle,
    registered: Option<Interest>,
    deadline: Option<Instant>,
    closed: bool,
    notified: bool,
}

impl<D: Dispatcher> RawEntry<D> {
    pub(crate) fn new(dispatcher: D, handle: Handle) -> Self {
        Self {
            dispatcher,
            handle,
            registered: None,
            deadline: None,
            closed: false,
            notified: false,
        }
    }

    fn call(&mut self, now: Instant, f: impl FnOnce(&mut D, &mut DispatchContext<'_>)) {
        let mut cx = DispatchContext {
            now,
            handle: &self.handle,
            deadline: &mut self.deadline,
            closed: &mut self.closed,
        };
        f(&mut self.dispatcher, &mut cx);
    }

    fn wanted(&self) -> Option<Interest> {
        match (self.dispatcher.readable(), self.dispatcher.writable()) {
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (true, false) => Some(Interest::READABLE),
            (false, true) => Some(Interest::WRITABLE),
            (false, false) => None,
        }
    }

    /// Brings the registration in line with `readable()`/`writable()`, and notifies a close.
    fn settle(&mut self, registry: &Registry, token: Token, now: Instant) {
        if self.closed {
            if !self.notified {
                self.notified = true;
                self.dispatcher.handle_close();
            }
            return;
        }
        let wanted = self.wanted();
        if wanted == self.registered {
            return;
        }
        let source = self.dispatcher.source();
        let result = match (self.registered, wanted) {
            (None, Some(i)) => registry.register(source, token, i),
            (Some(_), Some(i)) => registry.reregister(source, token, i),
            (Some(_), None) => registry.deregister(source),
            (None, None) => Ok(()),
        };
        match result {
            Ok(()) => self.registered = wanted,
            Err(error) => {
                self.call(now, |d, c| d.handle_error(c, error));
                if !self.closed {
                    // It chose to carry on: try again after its next event.
                    return;
                }
                self.settle(registry, token, now);
            }
        }
    }
}

impl<D: Dispatcher> Entry for RawEntry<D> {
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let wanted = self.wanted();
        if let Some(interest) = wanted {
            registry.register(self.dispatcher.source(), token, interest)?;
        }
        self.registered = wanted;
        Ok(())
    }

    fn deregister(&mut self, registry: &Registry) {
        if self.registered.is_some() {
            let _ = registry.deregister(self.dispatcher.source());
        }
    }

    fn on_ready(&mut self, cx: &mut Cx<'_>, readable: bool, writable: bool) {
        if readable && !self.closed && self.dispatcher.readable() {
            self.call(cx.now, |d, c| d.handle_read(c));
        }
        if writable && !self.closed && self.dispatcher.writable() {
            self.call(cx.now, |d, c| d.handle_write(c));
        }
        self.settle(cx.registry, cx.token, cx.now);
    }

    fn on_timeout(&mut self, cx: &mut Cx<'_>) {
        if self.deadline.is_some_and(|at| at <= cx.now) && !self.closed {
            self.deadline = None;
            self.call(cx.now, |d, c| d.handle_timeout(c));
        }
        self.settle(cx.registry, cx.token, cx.now);
    }

    fn on_push(&mut self, _cx: &mut Cx<'_>, _push: Push) {
        // A raw dispatcher has no output queue: bytes pushed to it through a handle are dropped.
    }

    fn on_close(&mut self, cx: &mut Cx<'_>, _graceful: bool) {
        self.closed = true;
        self.settle(cx.registry, cx.token, cx.now);
    }

    fn deadline(&self) -> Option<Instant> {
        if self.closed {
            None
        } else {
            self.deadline
        }
    }

    fn is_finished(&self) -> bool {
        self.closed
    }
}
