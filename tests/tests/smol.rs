//! The conformance suite on `asynchat-smol`: every scenario applies, and every TLS scenario.

asynchat_tests::conformance_suite!(asynchat_tests::Smol);
asynchat_tests::tls_suite!(asynchat_tests::Smol);
