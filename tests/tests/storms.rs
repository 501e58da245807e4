//! Fault storms on every driver, one after the other: the storms count the whole process's
//! descriptors and memory, so nothing else may run beside them (this binary has one test).

#[test]
fn fault_storms_on_every_driver() {
    asynchat_tests::storms::run_all::<asynchat_tests::Mio>();
    asynchat_tests::storms::run_all::<asynchat_tests::TokioCurrentThread>();
    asynchat_tests::storms::run_all::<asynchat_tests::TokioMultiThread>();
    asynchat_tests::storms::run_all::<asynchat_tests::Smol>();
}
