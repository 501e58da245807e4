//! Plain servers the drivers are measured against: what a user of each runtime would write
//! without asynchat-rs.

use std::io;

use futures::StreamExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::{Framed, LinesCodec};

/// A line echo with tokio-util's `Framed` and `LinesCodec`, the idiomatic way: each connection
/// forwards its decoded lines into its encoder (`forward` flushes when no line is ready, so
/// replies are batched).
pub async fn tokio_framed_echo(listener: tokio::net::TcpListener) -> io::Result<()> {
    loop {
        let (socket, _) = listener.accept().await?;
        let _ = socket.set_nodelay(true);
        tokio::spawn(async move {
            let (sink, stream) = Framed::new(socket, LinesCodec::new()).split();
            let _ = stream.forward(sink).await;
        });
    }
}

/// [`tokio_framed_echo`] over TLS with tokio-rustls, the idiomatic way: each accepted
/// connection's handshake in its own task (`TlsAcceptor`), then `Framed` with `LinesCodec` over
/// the TLS stream, its lines forwarded into its encoder.
pub async fn tokio_rustls_framed_echo(
    listener: tokio::net::TcpListener,
    tls: std::sync::Arc<asynchat_core::tls::rustls::ServerConfig>,
) -> io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (socket, _) = listener.accept().await?;
        let _ = socket.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(socket).await else {
                return;
            };
            let (sink, stream) = Framed::new(stream, LinesCodec::new()).split();
            let _ = stream.forward(sink).await;
        });
    }
}

/// A line echo on smol with no framework: read into a buffer, write back every complete line,
/// keep the rest.
pub async fn smol_plain_echo(listener: smol::Async<std::net::TcpListener>) -> io::Result<()> {
    loop {
        let (mut socket, _) = listener.accept().await?;
        let _ = socket.get_ref().set_nodelay(true);
        smol::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut pending = Vec::new();
            loop {
                let n = match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                pending.extend_from_slice(&buf[..n]);
                if let Some(i) = memchr::memrchr(b'\n', &pending) {
                    if socket.write_all(&pending[..=i]).await.is_err() {
                        return;
                    }
                    pending.drain(..=i);
                }
            }
        })
        .detach();
    }
}
