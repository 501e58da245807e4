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

/// A key–value store for redis-cli and redis-benchmark, one store for every connection.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: Common,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let store = Store::new();
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
