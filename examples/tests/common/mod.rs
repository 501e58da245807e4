//! Running an example binary as a child process for a test, and finding the real clients.

#![allow(dead_code, unreachable_pub)] // each test file uses its own part; `pub` marks what they share

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The drivers every example is tested on.
pub const DRIVERS: [&str; 3] = ["mio", "tokio", "smol"];

/// A binary of this crate serving on an ephemeral port; interrupted (SIGINT) and reaped on drop.
pub struct Served {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Served {
    /// Starts `bin --driver DRIVER --listen 127.0.0.1:0 ARGS...` and reads the address it prints.
    pub fn start(bin: &str, driver: &str, args: &[&str]) -> Self {
        Self::start_with_stderr(bin, driver, args, Stdio::inherit())
    }

    /// [`start`](Self::start), with the server's standard error going to `stderr`.
    pub fn start_with_stderr(bin: &str, driver: &str, args: &[&str], stderr: Stdio) -> Self {
        let mut child = Command::new(bin)
            .args(["--driver", driver, "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin}: {e}"));
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut first)
            .expect("read the start-up line");
        let addr = first
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{bin} printed {first:?} instead of its address"));
        Self { child, addr }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its peak resident memory so far, in bytes (`VmHWM`).
    pub fn peak_rss(&self) -> u64 {
        self.status_kib("VmHWM:") * 1024
    }

    /// Its resident memory now, in bytes (`VmRSS`).
    pub fn rss(&self) -> u64 {
        self.status_kib("VmRSS:") * 1024
    }

    /// A `kB` field of `/proc/PID/status`.
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/PID/status"))
    }

    /// Interrupts it as Ctrl-C does and waits up to 10 s for it to exit by itself; true if it
    /// exited successfully.
    pub fn interrupt(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.interrupt();
        }
    }
}

/// Fails the test with what to install when a real client is missing: a missing client must
/// never make a test pass silently.
pub fn require(tool: &str, install: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{tool}` is not installed: this test needs it (install with `{install}`)"
    );
}

/// Python 3 with the standard library's `smtplib`.
pub fn require_python() {
    require("python3", "apt-get install -y python3");
}
