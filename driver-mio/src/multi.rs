//! Several loops on several threads sharing one port: the kernel spreads connections among
//! their listeners (`SO_REUSEPORT`), so each connection lives on one thread, lock-free.

use asynchat_core::backlog::PushError;
use std::io;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use asynchat_core::{Config, Protocol};

use crate::event_loop::{bind_listener, EventLoop, ListenSocket, Over};
use crate::handle::Handle;
use asynchat_core::driver::Accepted;

/// `threads` event loops serving one port; see [`MultiLoop::start`].
#[derive(Debug)]
pub struct MultiLoop {
    addr: SocketAddr,
    handles: Vec<Handle>,
    threads: Vec<JoinHandle<io::Result<()>>>,
}

impl MultiLoop {
    /// Binds `addr` `threads` times with `SO_REUSEPORT` and runs one [`EventLoop`] per thread,
    /// each accepting into protocols made by `factory` (called on the accepting thread).
    pub fn start<P, F>(
        threads: usize,
        addr: SocketAddr,
        config: &Config,
        factory: F,
    ) -> io::Result<Self>
    where
        P: Protocol + 'static,
        F: Fn(&Accepted) -> P + Send + Sync + 'static,
    {
        Self::start_over(threads, addr, config, || Over::Plain, factory)
    }

    /// [`start`](Self::start) with each loop's connections over what `over` makes.
    pub(crate) fn start_over<P, F>(
        threads: usize,
        addr: SocketAddr,
        config: &Config,
        over: impl Fn() -> Over,
        factory: F,
    ) -> io::Result<Self>
    where
        P: Protocol + 'static,
        F: Fn(&Accepted) -> P + Send + Sync + 'static,
    {
        let threads = threads.max(1);
        let first = bind_listener(addr, true)?;
        // With port 0 the first bind chooses the port; the others must take the same one.
        let addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..threads {
            listeners.push(bind_listener(addr, true)?);
        }
        let factory = Arc::new(factory);
        let (tx, rx) = mpsc::channel();
        let mut joins = Vec::with_capacity(threads);
        for (i, listener) in listeners.into_iter().enumerate() {
            let (tx, factory, config) = (tx.clone(), factory.clone(), config.clone());
            let over = over();
            let thread = std::thread::Builder::new()
                .name(format!("asynchat-mio-{i}"))
                .spawn(move || {
                    let mut event_loop = EventLoop::with_config(config)?;
                    event_loop.add_listen_socket_over(
                        ListenSocket::Tcp(listener),
                        move |a: &Accepted| factory(a),
                        over,
                    )?;
                    // The receiver outlives every thread's start-up.
                    let _ = tx.send(event_loop.handle());
                    event_loop.run()
                })?;
            joins.push(thread);
        }
        drop(tx);
        let handles: Vec<Handle> = rx.iter().take(threads).collect();
        if handles.len() < threads {
            for h in &handles {
                let _ = h.stop();
            }
            let errors: Vec<io::Error> = joins
                .into_iter()
                .filter_map(|t| t.join().ok()?.err())
                .collect();
            return Err(errors
                .into_iter()
                .next()
                .unwrap_or_else(|| io::Error::other("a loop failed to start")));
        }
        Ok(Self {
            addr,
            handles,
            threads: joins,
        })
    }

    /// The address all the loops listen on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// One handle per loop.
    #[must_use]
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// Graceful shutdown of every loop: stop accepting, flush and close every connection.
    pub fn shutdown(&self) -> Result<(), PushError> {
        self.handles.iter().try_for_each(Handle::shutdown)
    }

    /// Stops every loop at its next turn.
    pub fn stop(&self) -> Result<(), PushError> {
        self.handles.iter().try_for_each(Handle::stop)
    }

    /// Waits for every loop to end; the first error any returned.
    pub fn join(self) -> io::Result<()> {
        let mut result = Ok(());
        for t in self.threads {
            let r = t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("an event loop thread panicked")));
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}
