//! TLS as a layer between a driver's stream and the chat (feature `rustls`).
//!
//! rustls is sans-IO itself: it takes TLS records in (`read_tls`), hands plaintext out, takes
//! plaintext in and gives records out (`write_tls`). [`TlsStream`] wraps any
//! [`PollStream`](crate::driver::PollStream) — a tokio socket, a futures-io socket, mio's
//! readiness adapter, an in-memory pipe — and is a `PollStream` itself, so every driver runs
//! TLS connections through the same code, and the chat above it sees plaintext only.
//!
//! - Servers: [`accept`] runs the handshake (with a timeout) and yields the stream; it is what a
//!   driver's acceptor hook (`serve_with`) calls.
//! - Clients: [`connect`] does the same for a client, naming the server (SNI, and the name its
//!   certificate must carry).
//! - A peer that is not TLS, breaks the handshake off, never finishes it or sends a fatal
//!   alert closes its connection only, with [`PeerError::Tls`](crate::PeerError::Tls) as the
//!   reason (through [`Chat::handle_error`](crate::Chat::handle_error)).
//!
//! The crypto provider is rustls's `ring`: it builds with a C compiler alone, where `aws-lc-rs`
//! also needs CMake, which a fresh machine of the kind this project is built on does not have.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use asynchat_core::tls;
//!
//! // A certificate for "localhost" (rcgen makes one here), a server offering HTTP/1.1, and a
//! // client that trusts that certificate.
//! let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
//! let (cert, key) = (made.cert.pem(), made.signing_key.serialize_pem());
//! let server = tls::server_config_from_pem(cert.as_bytes(), key.as_bytes(), &[b"http/1.1"])?;
//! let client = tls::client_config(cert.as_bytes(), &[b"http/1.1"])?;
//! assert_eq!(server.alpn_protocols, [b"http/1.1".to_vec()]);
//! assert_eq!(client.alpn_protocols, [b"http/1.1".to_vec()]);
//! # Ok(()) }
//! ```

mod config;
mod starttls;
mod stream;

#[cfg(feature = "webpki-roots")]
pub use config::client_config_with_webpki_roots;
pub use config::{client_config, server_config_from_pem, ConfigError};
pub use rustls;
pub use starttls::StartTls;
pub use stream::{accept, connect, TlsStream};

pub use crate::chat::DEFAULT_HANDSHAKE_TIMEOUT;

#[cfg(test)]
mod tests;

/// The I/O error a TLS failure travels as, for tests elsewhere in the crate.
#[cfg(test)]
pub(crate) fn stream_error_for_tests(error: crate::TlsError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, error)
}
