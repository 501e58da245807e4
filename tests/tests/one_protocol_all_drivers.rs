//! A protocol written once against `asynchat-core` — the examples crate's `Echo` — compiled
//! once and run unchanged on every driver: each gives the peer the same bytes.

use std::io::Write;

use asynchat_core::Config;
use asynchat_examples::echo::Echo;
use asynchat_tests::peer::{connect, read_n};
use asynchat_tests::{Driver, Mio, Smol, TokioCurrentThread, TokioMultiThread};

const REQUEST: &[u8] = b"one\r\ntwo\r\n\r\nthree\r\n";

fn echo_on<D: Driver>() -> Vec<u8> {
    let server = D::serve(Config::default(), |_| Echo::new("\r\n"));
    let mut client = connect(server.addr);
    client.write_all(REQUEST).unwrap();
    read_n(&mut client, REQUEST.len())
}

#[test]
fn the_same_echo_runs_unchanged_on_every_driver() {
    let outputs = [
        (Mio::NAME, echo_on::<Mio>()),
        (TokioCurrentThread::NAME, echo_on::<TokioCurrentThread>()),
        (TokioMultiThread::NAME, echo_on::<TokioMultiThread>()),
        (Smol::NAME, echo_on::<Smol>()),
    ];
    for (name, output) in &outputs {
        assert_eq!(output, REQUEST, "{name}");
    }
}
