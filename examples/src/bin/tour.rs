//! `tour`: every example on every driver, in plaintext and over TLS, checked by a built-in
//! client and measured; prints a table of example × driver → ok and requests per second.
//!
//! ```text
//! cargo run --release -p asynchat-examples --bin tour
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use asynchat_examples::tour::{self, Scratch, Tls};
use clap::Parser;

/// Runs every example on every driver and prints how each did.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Seconds to measure each example on each driver.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Ok(measure) = Duration::try_from_secs_f64(args.seconds) else {
        eprintln!("tour: --seconds must be a non-negative number");
        return ExitCode::FAILURE;
    };
    let scratch = match Scratch::new() {
        Ok(scratch) => scratch,
        Err(e) => {
            eprintln!("tour: scratch directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tls = match Tls::new() {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("tour: a certificate for TLS: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "{} examples, in plaintext and over TLS, × 3 drivers, {} connections × {} requests in flight, {:.1} s each\n",
        tour::EXAMPLES.len(),
        tour::CLIENTS,
        tour::DEPTH,
        measure.as_secs_f64()
    );
    let start = Instant::now();
    let outcomes = tour::run(measure, &scratch.0, &tls);
    print!("{}", tour::table(&outcomes));
    println!("\nfinished in {:.1} s", start.elapsed().as_secs_f64());
    if outcomes.iter().all(|o| o.result.is_ok()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
