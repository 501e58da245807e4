//! `resp`: an in-memory key–value server speaking the Redis protocol subset, on any driver.
//!
//! ```text
//! cargo run --release -p asynchat-examples --bin resp -- --driver tokio
//! redis-cli -p 6380 set greeting hello
//! redis-benchmark -p 6380 -t set,get -n 100000 -q
//! ```

use std::process::ExitCode;

use asynchat_examples::cli::{self, Common};
use asynchat_examples::resp::{self, Resp, Store};
use clap::Parser;

/// Shards of the store per server thread.
const SHARDS_PER_THREAD: usize = 2;

/// A key–value store for redis-cli and redis-benchmark, one store for every connection.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: Common,
    /// Shards the store is split into, each behind a lock of its own (rounded up to a power
    /// of two, at most 64); by default one for one thread, two per thread for more.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    shards: Option<u16>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // At two threads, two shards each take as much waiting out of one-key commands as four
    // each do (measured with redis-benchmark), and keep the shards an MSET locks fewer; one
    // thread needs no split at all.
    let store = match (args.shards, args.common.threads) {
        (Some(n), _) => Store::with_shards(usize::from(n)),
        (None, 0 | 1) => Store::new(),
        (None, n) => Store::with_shards(usize::from(n) * SHARDS_PER_THREAD),
    };
    let mut options = args.common.options(6380, resp::config());
    options.tls = match args.common.tls(&[]) {
        Ok(tls) => tls,
        Err(e) => return cli::exit_code("resp", Err(e)),
    };
    cli::exit_code(
        "resp",
        cli::serve_until_interrupted("resp", &options, move |_| Resp::new(store.clone())),
    )
}
