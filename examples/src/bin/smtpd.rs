//! `smtpd`: a mail sink, Python's `smtpd.SMTPServer` reborn, on any driver.
//!
//! ```text
//! cargo run -p asynchat-examples --bin smtpd -- --maildir /tmp/mail
//! swaks --server 127.0.0.1:8025 --to you@example.com
//! ```

use asynchat_core::driver::PeerAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use asynchat_examples::cli::{self, Common};
use asynchat_examples::smtpd::{self, Mailbox, Maildir, Print, Smtp, TlsPolicy};
use clap::Parser;

/// Accepts mail over SMTP and stores each message as a file (or prints it).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: Common,
    /// Store each message as one file in this directory.
    #[arg(long, conflicts_with = "print", required_unless_present = "print")]
    maildir: Option<PathBuf>,
    /// Print each message to stdout instead.
    #[arg(long)]
    print: bool,
    /// Refuse messages larger than this many bytes.
    #[arg(long, default_value_t = smtpd::DEFAULT_MAX_SIZE)]
    max_size: usize,
    /// The name the server gives itself.
    #[arg(long, default_value = "localhost")]
    hostname: String,
    /// With a TLS certificate: offer STARTTLS after EHLO (RFC 3207) instead of TLS from the
    /// first byte.
    #[arg(long)]
    starttls: bool,
    /// As `--starttls`, and refuse MAIL until the session is in TLS.
    #[arg(long)]
    require_tls: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mailbox: Arc<dyn Mailbox> = match &args.maildir {
        Some(dir) => match Maildir::new(dir) {
            Ok(maildir) => Arc::new(maildir),
            Err(e) => {
                eprintln!("smtpd: {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
        },
        None => Arc::new(Print),
    };
    let mut options = args.common.options(8025, smtpd::config());
    options.tls = match args.common.tls(&[]) {
        Ok(tls) => tls,
        Err(e) => return cli::exit_code("smtpd", Err(e)),
    };
    let policy = match (args.starttls, args.require_tls) {
        (_, true) => TlsPolicy::Require,
        (true, false) => TlsPolicy::Offer,
        (false, false) => TlsPolicy::Off,
    };
    if policy != TlsPolicy::Off && options.tls.is_none() {
        let e = std::io::Error::other(
            "--starttls and --require-tls need --tls-cert or --tls-self-signed",
        );
        return cli::exit_code("smtpd", Err(e));
    }
    options.starttls = policy != TlsPolicy::Off;
    let (max_size, hostname) = (args.max_size, args.hostname);
    let served = cli::serve_until_interrupted("smtpd", &options, move |link| {
        let smtp = Smtp::shared(mailbox.clone())
            .starttls(policy)
            .max_size(max_size)
            .hostname(hostname.clone());
        match link.peer() {
            PeerAddr::Tcp(peer) => smtp.peer(peer),
            _ => smtp,
        }
    });
    cli::exit_code("smtpd", served)
}
