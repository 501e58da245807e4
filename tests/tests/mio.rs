//! The conformance suite on `asynchat-mio`: every scenario applies, and every TLS scenario.

asynchat_tests::conformance_suite!(asynchat_tests::Mio);
asynchat_tests::tls_suite!(asynchat_tests::Mio);
