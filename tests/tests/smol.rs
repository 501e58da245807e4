//! The conformance suite on `asynchat-smol`: every scenario applies.

asynchat_tests::conformance_suite!(asynchat_tests::Smol);
