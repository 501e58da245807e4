//! The conformance suite on `asynchat-tokio`, on both runtime flavours: every scenario applies.

mod current_thread {
    asynchat_tests::conformance_suite!(asynchat_tests::TokioCurrentThread);
}

mod multi_thread {
    asynchat_tests::conformance_suite!(asynchat_tests::TokioMultiThread);
}
