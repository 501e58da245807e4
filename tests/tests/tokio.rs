//! The conformance suite on `asynchat-tokio`, on both runtime flavours: every scenario applies,
//! and every TLS scenario.

mod current_thread {
    asynchat_tests::conformance_suite!(asynchat_tests::TokioCurrentThread);
    asynchat_tests::tls_suite!(asynchat_tests::TokioCurrentThread);
}

mod multi_thread {
    asynchat_tests::conformance_suite!(asynchat_tests::TokioMultiThread);
    asynchat_tests::tls_suite!(asynchat_tests::TokioMultiThread);
}
