//! The driver benchmark: a line-echo server on each driver against the plain server a user of
//! that runtime would write (a hand-written minimal mio echo, tokio-util's `Framed`, plain smol;
//! over TLS, tokio-rustls with `Framed`), all run as child processes and driven by the same load
//! generator in one run.
//!
//! ```text
//! cargo run --release -p asynchat-examples --bin echo_bench -- compare [SECONDS] [ROUNDS] [SERVERS|all] [IN_FLIGHT]
//! cargo run --release -p asynchat-examples --bin echo_bench -- idle [CONNECTIONS] [SERVER,...]
//! cargo run --release -p asynchat-examples --bin echo_bench -- sweep [SECONDS] [ROUNDS] [LINE_LENS] [THRESHOLDS]
//! cargo run --release -p asynchat-examples --bin echo_bench -- serve KIND [CERT KEY]
//! cargo run --release -p asynchat-examples --bin echo_bench -- load ADDR [SECONDS [CERT|- [IN_FLIGHT]]]
//! ```
//!
//! `compare` alternates the servers (in the reverse order every other round) for ROUNDS rounds
//! of SECONDS seconds (default 3 × 5 s) under 50 connections × IN_FLIGHT lines of 64 bytes in
//! flight (default 16; 1 is request/response) and prints the median lines per second of each
//! and their ratio, the median of the ratios within each round (with a 95 % interval, and how
//! many rounds ours won), and the median CPU time (user and system, from `/proc`) each server
//! spent per echoed line, with the user-space part of it. SERVERS
//! (comma-separated) keeps the pairs with a server or baseline of those names:
//! `tokio-rustls` runs the three TLS pairs, `smol-tls` that pair alone. `idle`
//! opens CONNECTIONS (default 5000) connections to each server, has each echo one line, and
//! reports the growth of the server's resident memory per idle connection.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use asynchat_core::Config;
use asynchat_examples::{baselines, echo::Echo, loadgen, raw_echo};
use asynchat_mio::EventLoop;

/// Pairs compared side by side: the example `Echo` with the default `Config` on each driver
/// against a plain server on the same runtime (tokio servers run on a current-thread runtime).
///
/// Over TLS (`-tls`, against tokio-rustls with `Framed`, `tokio-rustls`): the same certificate
/// (ECDSA P-256, made at start), the same rustls configuration and provider (`ring`), so the
/// same cipher suite, which the table names.
const PAIRS: [(&str, &str); 6] = [
    ("asynchat", "raw"),
    ("tokio", "tokio-framed"),
    ("smol", "smol-plain"),
    ("asynchat-tls", "tokio-rustls"),
    ("tokio-tls", "tokio-rustls"),
    ("smol-tls", "tokio-rustls"),
];

/// Whether a server kind speaks TLS.
fn is_tls(kind: &str) -> bool {
    kind.contains("-tls") || kind == "tokio-rustls"
}

/// The certificate the TLS servers of one run present, in files the server processes load,
/// and the client configuration that trusts it. The files are removed on drop.
struct BenchCert {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    client: std::sync::Arc<asynchat_core::tls::rustls::ClientConfig>,
}

impl BenchCert {
    fn new() -> io::Result<Self> {
        let (pem, key_pem) = asynchat_examples::cli::self_signed(&["localhost"])?;
        let base = std::env::temp_dir().join(format!("asynchat-bench-{}", std::process::id()));
        let (cert, key) = (base.with_extension("crt"), base.with_extension("key"));
        std::fs::write(&cert, &pem)?;
        std::fs::write(&key, &key_pem)?;
        let client =
            asynchat_core::tls::client_config(pem.as_bytes(), &[]).map_err(io::Error::other)?;
        Ok(Self {
            cert,
            key,
            client: std::sync::Arc::new(client),
        })
    }
}

impl Drop for BenchCert {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.cert);
        let _ = std::fs::remove_file(&self.key);
    }
}

/// The server configuration from the certificate and key files `serve` was given.
fn server_tls(
    args: &[String],
) -> io::Result<std::sync::Arc<asynchat_core::tls::rustls::ServerConfig>> {
    let [cert, key] = args else {
        return Err(io::Error::other("a TLS server kind needs CERT KEY"));
    };
    let config = asynchat_core::tls::server_config_from_pem(
        &std::fs::read(cert)?,
        &std::fs::read(key)?,
        &[],
    )
    .map_err(io::Error::other)?;
    Ok(std::sync::Arc::new(config))
}

/// What a server kind runs.
enum Kind {
    /// A baseline: `raw`, `tokio-framed`, `smol-plain`.
    Baseline,
    /// The asynchat echo with this config and protocol.
    Asynchat(Config, Echo),
}

/// Parses `RUNTIME[-VARIANT]`: the runtime (`asynchat` = mio, `tokio`, `smol`, `raw`) and what it
/// runs. An unknown kind is an error, never a silent fallback.
fn parse_kind(kind: &str) -> io::Result<(&str, Kind)> {
    let (runtime, variant) = kind.split_once('-').unwrap_or((kind, ""));
    let run = match (runtime, variant) {
        ("raw", "") | ("tokio", "framed" | "rustls") | ("smol", "plain") => Kind::Baseline,
        ("asynchat" | "tokio" | "smol", "" | "tls") => {
            Kind::Asynchat(Config::default(), Echo::default())
        }
        // `coalesceN`: the outbox copies pushes under N bytes (the threshold sweep).
        ("asynchat" | "tokio" | "smol", v) if v.starts_with("coalesce") => {
            let below = v["coalesce".len()..]
                .parse()
                .map_err(|_| io::Error::other(format!("unknown server kind {kind:?}")))?;
            Kind::Asynchat(Config::default().coalesce_below(below), Echo::default())
        }
        _ => return Err(io::Error::other(format!("unknown server kind {kind:?}"))),
    };
    Ok((runtime, run))
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    match args.first().map(String::as_str) {
        Some("serve") => serve(
            args.get(1).map_or("asynchat", String::as_str),
            args.get(2..).unwrap_or_default(),
        ),
        Some("compare") => compare(
            Duration::from_secs(arg(1, 5)),
            arg(2, 3) as usize,
            args.get(3).map(String::as_str).filter(|s| *s != "all"),
            (arg(4, 16) as usize).max(1),
        ),
        Some("idle") => idle(arg(1, 5000) as usize, args.get(2).map(String::as_str)),
        Some("sweep") => sweep(
            Duration::from_secs(arg(1, 3)),
            arg(2, 3) as usize,
            args.get(3).map_or("64,512,2048,8192", String::as_str),
            args.get(4).map_or("0,256,1024,4096,16384", String::as_str),
        ),
        Some("load") => {
            let addr = args
                .get(1)
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| io::Error::other("load ADDR [SECONDS [CERT|- [IN_FLIGHT]]]"))?;
            // Over TLS when given the certificate the server presents (`-`: plaintext).
            let tls = match args.get(3).filter(|c| *c != "-") {
                Some(cert) => Some(std::sync::Arc::new(
                    asynchat_core::tls::client_config(&std::fs::read(cert)?, &[])
                        .map_err(io::Error::other)?,
                )),
                None => None,
            };
            let report = loadgen::run(&loadgen::Load {
                tls,
                in_flight: (arg(4, 16) as usize).max(1),
                ..loadgen::Load::standard(addr, Duration::from_secs(arg(2, 5)))
            })?;
            println!(
                "{:.0} lines/s {} lines",
                report.per_second(),
                report.all_responses
            );
            Ok(())
        }
        _ => {
            eprintln!("usage: echo_bench compare [SECONDS] [ROUNDS] [SERVER,...] | idle [CONNECTIONS] [SERVER,...] | sweep [SECONDS] [ROUNDS] [LINE_LENS] [THRESHOLDS] | serve KIND [CERT KEY] | load ADDR [SECONDS [CERT|- [IN_FLIGHT]]]");
            std::process::exit(2);
        }
    }
}

fn serve(kind: &str, tls_files: &[String]) -> io::Result<()> {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let tls = if is_tls(kind) {
        Some(server_tls(tls_files)?)
    } else {
        None
    };
    match parse_kind(kind)? {
        ("tokio", run) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind(addr).await?;
                announce(listener.local_addr()?)?;
                match (run, tls) {
                    (Kind::Asynchat(config, echo), None) => {
                        asynchat_tokio::serve(listener, config, move |_| echo.clone())?
                            .wait()
                            .await;
                        Ok(())
                    }
                    (Kind::Asynchat(config, echo), Some(tls)) => {
                        asynchat_tokio::serve_tls(listener, tls, config, move |_| echo.clone())?
                            .wait()
                            .await;
                        Ok(())
                    }
                    (Kind::Baseline, None) => baselines::tokio_framed_echo(listener).await,
                    (Kind::Baseline, Some(tls)) => {
                        baselines::tokio_rustls_framed_echo(listener, tls).await
                    }
                }
            })
        }
        ("smol", run) => smol::block_on(async {
            let listener = smol::Async::<std::net::TcpListener>::bind(addr)?;
            announce(listener.get_ref().local_addr()?)?;
            match (run, tls) {
                (Kind::Asynchat(config, echo), None) => {
                    asynchat_smol::serve(listener, config, move |_| echo.clone())?
                        .wait()
                        .await;
                    Ok(())
                }
                (Kind::Asynchat(config, echo), Some(tls)) => {
                    asynchat_smol::serve_tls(listener, tls, config, move |_| echo.clone())?
                        .wait()
                        .await;
                    Ok(())
                }
                (Kind::Baseline, _) => baselines::smol_plain_echo(listener).await,
            }
        }),
        (_, Kind::Baseline) => {
            let listener = raw_echo::bind(addr)?;
            announce(listener.local_addr()?)?;
            raw_echo::serve(listener)
        }
        (_, Kind::Asynchat(config, echo)) => {
            let mut event_loop = EventLoop::with_config(config)?;
            let bound = match tls {
                Some(tls) => event_loop.listen_tls(addr, tls, move |_| echo.clone())?,
                None => event_loop.listen(addr, move |_| echo.clone())?,
            };
            announce(bound.addr)?;
            event_loop.run()
        }
    }
}

/// Tells the parent process where the server listens.
fn announce(addr: SocketAddr) -> io::Result<()> {
    println!("{addr}");
    io::stdout().flush()
}

/// CPU time a process used, in user space and in the kernel on its behalf.
#[derive(Debug, Clone, Copy)]
struct CpuTime {
    user: Duration,
    system: Duration,
}

impl CpuTime {
    /// What was used between `before` and this reading.
    fn since(self, before: Self) -> Self {
        Self {
            user: self.user.saturating_sub(before.user),
            system: self.system.saturating_sub(before.system),
        }
    }

    fn total(self) -> Duration {
        self.user + self.system
    }
}

/// A server child process, killed (by its PID, which we own) when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Starts a server of `kind`; a TLS kind presents `cert`.
    fn start(kind: &str, cert: Option<&BenchCert>) -> io::Result<Self> {
        let mut command = Command::new(std::env::current_exe()?);
        command.args(["serve", kind]);
        if let Some(cert) = cert.filter(|_| is_tls(kind)) {
            command.arg(&cert.cert).arg(&cert.key);
        }
        let mut child = command.stdout(Stdio::piped()).spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line)?;
        let addr = line
            .trim()
            .parse()
            .map_err(|e| io::Error::other(format!("server said {line:?}: {e}")))?;
        Ok(Self { child, addr })
    }

    /// The CPU time the server has used so far, from `/proc` (Linux).
    fn cpu_time(&self) -> io::Result<CpuTime> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        // Fields after the command name, which is in parentheses and may hold spaces:
        // utime and stime are the 14th and 15th fields of the line.
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let ticks: Vec<u64> = after_name
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|t| t.parse().ok())
            .collect();
        let [user, system] = ticks[..] else {
            return Err(io::Error::other("no utime/stime in /proc/PID/stat"));
        };
        // The kernel reports clock ticks of USER_HZ, 100 per second on Linux.
        Ok(CpuTime {
            user: Duration::from_millis(user * 10),
            system: Duration::from_millis(system * 10),
        })
    }

    fn rss_bytes(&self) -> io::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or_else(|| io::Error::other("no VmRSS"))?;
        Ok(kb * 1024)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A 95 % interval for the median of `v` that assumes nothing of the distribution (the sign
/// test's): the k-th smallest and the k-th largest value, for the largest k with
/// P(Binomial(n, ½) < k) ≤ 2.5 %. `None` below 6 values, where no interval reaches 95 %.
fn median_interval(mut v: Vec<f64>) -> Option<(f64, f64)> {
    let n = v.len();
    v.sort_by(f64::total_cmp);
    // P(X = j) in logarithms, so that no term underflows for many rounds.
    let mut ln_p = n as f64 * 0.5f64.ln();
    let mut cdf = ln_p.exp();
    let mut k = 0;
    while cdf <= 0.025 && k < n / 2 {
        k += 1;
        ln_p += ((n - k + 1) as f64 / k as f64).ln();
        cdf += ln_p.exp();
    }
    (k > 0).then(|| (v[k - 1], v[n - k]))
}

/// Runs the pairs whose baseline or server is named in `only` (comma-separated; all if `None`):
/// `tokio-rustls` runs the three TLS pairs, `smol-tls` that pair alone.
fn compare(
    seconds: Duration,
    rounds: usize,
    only: Option<&str>,
    in_flight: usize,
) -> io::Result<()> {
    let pairs: Vec<(&str, &str)> = PAIRS
        .into_iter()
        .filter(|(ours, base)| only.is_none_or(|o| o.split(',').any(|k| k == *base || k == *ours)))
        .collect();
    if pairs.is_empty() {
        return Err(io::Error::other(format!(
            "no pair has a server or baseline named in {only:?}"
        )));
    }
    let mut kinds: Vec<&str> = Vec::new();
    for kind in pairs.iter().flat_map(|(a, b)| [*a, *b]) {
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    let cert = BenchCert::new()?;
    let mut suites: std::collections::HashMap<&str, String> = Default::default();
    let mut rates: std::collections::HashMap<&str, Vec<f64>> = Default::default();
    let mut cpu: std::collections::HashMap<&str, Vec<f64>> = Default::default();
    let mut user: std::collections::HashMap<&str, Vec<f64>> = Default::default();
    for round in 0..rounds.max(1) {
        // Every other round runs the servers in the reverse order: whatever the first run after
        // a pause gains or loses is shared out between the two sides of each pair.
        let order: Vec<&&str> = if round % 2 == 0 {
            kinds.iter().collect()
        } else {
            kinds.iter().rev().collect()
        };
        for kind in order {
            let server = Server::start(kind, Some(&cert))?;
            let before = server.cpu_time()?;
            let load = loadgen::Load {
                tls: is_tls(kind).then(|| cert.client.clone()),
                in_flight,
                ..loadgen::Load::standard(server.addr, seconds)
            };
            let report = loadgen::run(&load)?;
            if let Some(suite) = &report.cipher_suite {
                suites.insert(kind, suite.clone());
            }
            let used = server.cpu_time()?.since(before);
            let lines = report.all_responses.max(1) as f64;
            let ns_per_line = used.total().as_nanos() as f64 / lines;
            eprintln!(
                "round {round}: {kind:18} {:>12.0} lines/s {ns_per_line:>6.0} ns CPU/line",
                report.per_second()
            );
            rates.entry(kind).or_default().push(report.per_second());
            cpu.entry(kind).or_default().push(ns_per_line);
            user.entry(kind)
                .or_default()
                .push(used.user.as_nanos() as f64 / lines);
        }
    }
    println!(
        "| server | lines/s (median of {rounds}) | baseline | baseline lines/s | ratio \
         | median of the rounds' ratios (95 % interval) | rounds won | server CPU ns/line, ours : \
         baseline | of which user space |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (ours, base) in pairs {
        let (a, b) = (median(rates[ours].clone()), median(rates[base].clone()));
        // Each round runs every server once, back to back: a ratio within a round is spared
        // the drift of a shared machine's load from one round to the next.
        let ratios: Vec<f64> = rates[ours]
            .iter()
            .zip(&rates[base])
            .map(|(a, b)| a / b)
            .collect();
        let won = ratios.iter().filter(|r| **r > 1.0).count();
        let interval = median_interval(ratios.clone())
            .map_or_else(String::new, |(lo, hi)| format!(" ({lo:.3}–{hi:.3})"));
        let paired = median(ratios);
        let (ca, cb) = (median(cpu[ours].clone()), median(cpu[base].clone()));
        let (ua, ub) = (median(user[ours].clone()), median(user[base].clone()));
        println!(
            "| {ours} | {a:.0} | {base} | {b:.0} | **{:.3}** | {paired:.3}{interval} | {won} | \
             {ca:.0} : {cb:.0} | {ua:.0} : {ub:.0} |",
            a / b
        );
    }
    if !suites.is_empty() {
        println!("\nAgreed over TLS (protocol version, cipher suite):");
        for kind in &kinds {
            if let Some(suite) = suites.get(kind) {
                println!("- {kind}: {suite}");
            }
        }
    }
    Ok(())
}

/// The outbox's copy threshold against the size of what is pushed: for each line length, the
/// mio echo with each threshold (`asynchat-coalesceN`), alternating, ROUNDS rounds; prints the
/// median server CPU time per echoed line of each (the stable figure) and its lines/s.
fn sweep(seconds: Duration, rounds: usize, lines: &str, thresholds: &str) -> io::Result<()> {
    let parse = |list: &str| -> io::Result<Vec<usize>> {
        list.split(',')
            .map(|n| n.trim().parse().map_err(io::Error::other))
            .collect()
    };
    let (lines, thresholds) = (parse(lines)?, parse(thresholds)?);
    print!("| line bytes |");
    for t in &thresholds {
        print!(" copy below {t}: CPU ns/line, lines/s |");
    }
    println!();
    println!("|---|{}", "---|".repeat(thresholds.len()));
    for &line_len in &lines {
        let mut cpu = vec![Vec::new(); thresholds.len()];
        let mut rate = vec![Vec::new(); thresholds.len()];
        for _ in 0..rounds.max(1) {
            for (i, t) in thresholds.iter().enumerate() {
                let server = Server::start(&format!("asynchat-coalesce{t}"), None)?;
                let before = server.cpu_time()?;
                let load = loadgen::Load {
                    line_len,
                    ..loadgen::Load::standard(server.addr, seconds)
                };
                let report = loadgen::run(&load)?;
                let used = server.cpu_time()?.since(before).total();
                cpu[i].push(used.as_nanos() as f64 / report.all_responses.max(1) as f64);
                rate[i].push(report.per_second());
            }
        }
        print!("| {line_len} |");
        for i in 0..thresholds.len() {
            print!(
                " {:.0}, {:.0} |",
                median(cpu[i].clone()),
                median(rate[i].clone())
            );
        }
        println!();
    }
    Ok(())
}

/// Idle memory per connection of each server kind in `kinds` (comma-separated; by default the
/// drivers and their baselines).
fn idle(connections: usize, kinds: Option<&str>) -> io::Result<()> {
    println!("| server | RSS before | RSS with {connections} idle | per idle connection |");
    println!("|---|---|---|---|");
    let kinds = kinds.unwrap_or("asynchat,raw,tokio,tokio-framed,smol,smol-plain");
    for kind in kinds.split(',') {
        let server = Server::start(kind, None)?;
        std::thread::sleep(Duration::from_millis(200));
        let before = server.rss_bytes()?;
        let mut clients = Vec::with_capacity(connections);
        for _ in 0..connections {
            let c = TcpStream::connect(server.addr)?;
            c.set_read_timeout(Some(Duration::from_secs(10)))?;
            clients.push(c);
        }
        // Every connection echoes a line, so each has been accepted, has read, and is idle again.
        for c in &mut clients {
            c.write_all(b"hi\n")?;
        }
        for c in &mut clients {
            let mut buf = [0u8; 3];
            c.read_exact(&mut buf)?;
        }
        std::thread::sleep(Duration::from_millis(500));
        let after = server.rss_bytes()?;
        let per = after.saturating_sub(before) as f64 / connections as f64;
        println!(
            "| {kind} | {:.1} MiB | {:.1} MiB | {per:.0} B |",
            before as f64 / 1048576.0,
            after as f64 / 1048576.0
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_interval_trims_as_many_rounds_as_the_sign_test_allows() {
        let ranks = |n: usize| (1..=n).map(|i| i as f64).collect::<Vec<_>>();
        // Five rounds cannot give 95 %: even the whole range covers the median only 94 % of
        // the time (1 - 2/32).
        assert_eq!(median_interval(ranks(5)), None);
        assert_eq!(median_interval(ranks(6)), Some((1.0, 6.0)));
        // P(Bin(15, ½) ≤ 3) = 1.8 %, P(≤ 4) = 5.9 %: the 4th smallest and the 4th largest.
        assert_eq!(median_interval(ranks(15)), Some((4.0, 12.0)));
        // P(Bin(41, ½) ≤ 13) = 1.4 %, P(≤ 14) = 3.0 %.
        assert_eq!(median_interval(ranks(41)), Some((14.0, 28.0)));
        // Order, not position, counts; and many rounds neither underflow nor overrun.
        let mut shuffled = ranks(41);
        shuffled.reverse();
        assert_eq!(median_interval(shuffled), Some((14.0, 28.0)));
        // P(Bin(2000, ½) ≤ 955) ≤ 2.5 % < P(≤ 956) (computed exactly, with integers).
        assert_eq!(median_interval(ranks(2000)), Some((956.0, 1045.0)));
    }
}
