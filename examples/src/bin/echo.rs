//! `echo`: every frame back, followed by its terminator, on any driver or over stdin/stdout.
//!
//! ```text
//! cargo run -p asynchat-examples --bin echo -- --driver tokio --terminator '\r\n'
//! printf 'a\nb\n' | cargo run -p asynchat-examples --bin echo -- --stdio
//! ```

use std::process::ExitCode;

use asynchat_core::{Bytes, Config};
use asynchat_examples::cli::{self, Common};
use asynchat_examples::echo::Echo;
use asynchat_examples::run;
use clap::Parser;

/// Echoes every frame back followed by its terminator.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: Common,
    /// The terminator; escapes such as `\r\n`, `\t`, `\x00` are understood.
    #[arg(long, default_value = r"\n", value_parser = cli::unescape)]
    terminator: Bytes,
    /// Serve one session over stdin/stdout instead of a socket.
    #[arg(long)]
    stdio: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let echo = Echo::new(args.terminator);
    let result = if args.stdio {
        run::run_stdio(args.common.driver, echo, &Config::default())
    } else {
        let mut options = args.common.options(7007, Config::default());
        match args.common.tls(&[]) {
            Ok(tls) => {
                options.tls = tls;
                cli::serve_until_interrupted("echo", &options, move |_| echo.clone())
            }
            Err(e) => Err(e),
        }
    };
    cli::exit_code("echo", result)
}
