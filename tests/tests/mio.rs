//! The conformance suite on `asynchat-mio`: every scenario applies.
//!
//! The TLS scenarios (`tls_suite!`) do not run here yet: `asynchat-mio` has no TLS entry point.
//! Its readiness adapter borrows the socket per event, and the core's `TlsStream` needs a
//! stream it owns across events.

asynchat_tests::conformance_suite!(asynchat_tests::Mio);
