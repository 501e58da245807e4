//! The command line every example binary shares: `--driver`, `--listen`, `--verbose`, and serving
//! until Ctrl-C.

use std::io::{self, Write as _};
use std::net::{Ipv4Addr, SocketAddr};

use asynchat_core::{Bytes, Config, Protocol};
use clap::Args;

use crate::run::{self, DriverKind, Link, Options};

/// The options every server binary takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// The event loop to run on.
    #[arg(long, value_enum, default_value_t = DriverKind::Mio)]
    pub driver: DriverKind,
    /// Address to listen on (default: 127.0.0.1 and the example's own port; port 0 picks a free
    /// one).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Log one line per connection event to stderr.
    #[arg(short, long)]
    pub verbose: bool,
    /// Threads serving connections: event loops sharing the port on mio, runtime workers on
    /// tokio, executor threads on smol.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: u16,
    /// Serve over TLS with this PEM certificate chain (with `--tls-key`).
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Serve over TLS with a certificate made at start for `localhost` and 127.0.0.1, for
    /// trying TLS out; its PEM is written to FILE, for a client to trust.
    #[arg(long, conflicts_with = "tls_cert", value_name = "FILE")]
    pub tls_self_signed: Option<std::path::PathBuf>,
}

impl Common {
    /// The serving options: `--listen`, or 127.0.0.1:`default_port`.
    #[must_use]
    pub fn options(&self, default_port: u16, config: Config) -> Options {
        Options {
            driver: self.driver,
            listen: self
                .listen
                .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::LOCALHOST, default_port))),
            config,
            verbose: self.verbose,
            tls: None,
            starttls: false,
            threads: usize::from(self.threads),
        }
    }

    /// The TLS configuration the flags ask for, offering the ALPN protocols `alpn`: `None`
    /// without `--tls-cert` or `--tls-self-signed`.
    ///
    /// # Errors
    ///
    /// A certificate or key that cannot be read or used, or a self-signed one that cannot be
    /// made or written.
    pub fn tls(
        &self,
        alpn: &[&[u8]],
    ) -> io::Result<Option<std::sync::Arc<asynchat_core::tls::rustls::ServerConfig>>> {
        let (cert, key) = match (&self.tls_cert, &self.tls_key, &self.tls_self_signed) {
            (Some(cert), Some(key), _) => (std::fs::read(cert)?, std::fs::read(key)?),
            (_, _, Some(out)) => {
                let (cert, key) = self_signed(&["localhost", "127.0.0.1"])?;
                std::fs::write(out, &cert)?;
                (cert.into_bytes(), key.into_bytes())
            }
            _ => return Ok(None),
        };
        let config = asynchat_core::tls::server_config_from_pem(&cert, &key, alpn)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Some(std::sync::Arc::new(config)))
    }
}

/// A fresh self-signed certificate for `names` (rcgen), as PEM: the certificate and its key.
///
/// # Errors
///
/// rcgen cannot make it (a name it refuses).
pub fn self_signed(names: &[&str]) -> io::Result<(String, String)> {
    let names = names.iter().map(|&n| n.to_owned()).collect::<Vec<_>>();
    let made = rcgen::generate_simple_self_signed(names).map_err(io::Error::other)?;
    Ok((made.cert.pem(), made.signing_key.serialize_pem()))
}

/// Serves until Ctrl-C (or SIGTERM), then shuts down gracefully: stops accepting, flushes what is
/// queued, closes every connection. Prints `NAME listening on ADDR (driver)` on stdout first;
/// a second Ctrl-C exits at once.
///
/// # Errors
///
/// Binding, installing the signal handler, or the event loop failed.
pub fn serve_until_interrupted<P, F>(name: &str, options: &Options, factory: F) -> io::Result<()>
where
    P: Protocol + Send + 'static,
    F: FnMut(Link) -> P + Send + 'static,
{
    let server = run::start(options, factory)?;
    println!("{name} listening on {} ({})", server.addr(), options.driver);
    io::stdout().flush()?;
    let stopper = server.stopper();
    let interrupted = std::sync::atomic::AtomicBool::new(false);
    let name = name.to_owned();
    ctrlc::set_handler(move || {
        if interrupted.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("{name}: shutting down (Ctrl-C again to exit at once)");
        stopper.stop();
    })
    .map_err(io::Error::other)?;
    server.wait()
}

/// The process's exit status for a binary's outcome, printing the error as `NAME: error`.
#[must_use]
pub fn exit_code(name: &str, outcome: io::Result<()>) -> std::process::ExitCode {
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Parses an escaped terminator as a shell gives it: `\r`, `\n`, `\t`, `\0`, `\\` and `\xHH`.
///
/// # Errors
///
/// An unknown escape, a bad `\x` sequence, or an empty result.
pub fn unescape(text: &str) -> Result<Bytes, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'0') => out.push(0),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex = [bytes.next(), bytes.next()];
                let digits = match hex {
                    [Some(h), Some(l)] => std::str::from_utf8(&[h, l])
                        .ok()
                        .and_then(|s| u8::from_str_radix(s, 16).ok()),
                    _ => None,
                };
                out.push(digits.ok_or_else(|| format!("bad \\x escape in {text:?}"))?);
            }
            Some(other) => return Err(format!("unknown escape \\{} in {text:?}", other as char)),
            None => return Err(format!("{text:?} ends with a lone backslash")),
        }
    }
    if out.is_empty() {
        return Err("the terminator must not be empty".into());
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_understands_the_usual_escapes() {
        assert_eq!(&unescape(r"\r\n").unwrap()[..], b"\r\n");
        assert_eq!(&unescape(r"\r\n.\r\n").unwrap()[..], b"\r\n.\r\n");
        assert_eq!(&unescape(r"a\x00\x7f\\").unwrap()[..], b"a\0\x7f\\");
        assert_eq!(&unescape("END").unwrap()[..], b"END");
    }

    #[test]
    fn unescape_rejects_what_it_cannot_read() {
        assert!(unescape("").is_err());
        assert!(unescape(r"\q").is_err());
        assert!(unescape(r"\x4").is_err());
        assert!(unescape(r"\xzz").is_err());
        assert!(unescape("ab\\").is_err());
    }
}
