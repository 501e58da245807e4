//! `httpd`: static files over HTTP/1.1, on any driver.
//!
//! ```text
//! cargo run -p asynchat-examples --bin httpd -- --root ./public
//! curl -v http://127.0.0.1:8080/ http://127.0.0.1:8080/index.html
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use asynchat_examples::cli::{self, Common};
use asynchat_examples::httpd::{self, Httpd};
use clap::Parser;

/// Serves the files under a directory with GET and HEAD, keep-alive and pipelining.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: Common,
    /// The directory to serve.
    #[arg(long)]
    root: PathBuf,
    /// Stream files of this many bytes or more (chunked) instead of reading them whole.
    #[arg(long, default_value_t = httpd::DEFAULT_STREAM_ABOVE)]
    stream_above: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let root: Arc<std::path::Path> = match args.root.canonicalize() {
        Ok(root) if root.is_dir() => root.into(),
        Ok(_) => {
            eprintln!("httpd: {} is not a directory", args.root.display());
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("httpd: {}: {e}", args.root.display());
            return ExitCode::FAILURE;
        }
    };
    let mut options = args.common.options(8080, httpd::config());
    options.tls = match args.common.tls(&[b"http/1.1"]) {
        Ok(tls) => tls,
        Err(e) => return cli::exit_code("httpd", Err(e)),
    };
    let stream_above = args.stream_above;
    let files = httpd::Files::canonical(root);
    let served = cli::serve_until_interrupted("httpd", &options, move |_| {
        Httpd::shared(files.clone()).stream_above(stream_above)
    });
    cli::exit_code("httpd", served)
}
