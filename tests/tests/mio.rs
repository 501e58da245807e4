//! The conformance suite on `asynchat-mio`: every scenario applies.

asynchat_tests::conformance_suite!(asynchat_tests::Mio);
