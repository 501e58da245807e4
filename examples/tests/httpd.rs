//! The httpd binary on every driver, against `curl`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{require, Served, DRIVERS};

/// The size of the file that must be streamed, not buffered.
const BIG: usize = 64 << 20;

struct Site {
    base: PathBuf,
    root: PathBuf,
}

impl Site {
    /// A site of its own for the test `name` (tests run side by side).
    fn new(name: &str) -> Self {
        let base =
            std::env::temp_dir().join(format!("asynchat-httpd-{}-{name}", std::process::id()));
        let root = base.join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("index.html"), "<h1>asynchat-rs</h1>\n").unwrap();
        std::fs::write(root.join("a.txt"), "alpha\n").unwrap();
        std::fs::write(root.join("b.json"), "{\"b\": 2}\n").unwrap();
        std::fs::write(base.join("secret"), "secret\n").unwrap();
        std::os::unix::fs::symlink(base.join("secret"), root.join("escape")).unwrap();
        // Not a repeating pattern, so a misplaced chunk cannot go unnoticed.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let big: Vec<u8> = (0..BIG / 8)
            .flat_map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()
            })
            .collect();
        std::fs::write(root.join("big.bin"), big).unwrap();
        Self { base, root }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "30"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn status(url: &str) -> String {
    curl(&["--path-as-is", "-o", "/dev/null", "-w", "%{http_code}", url])
}

#[test]
fn curl_against_httpd_on_every_driver() {
    require("curl", "apt-get install -y curl");
    let site = Site::new("plain");
    for driver in DRIVERS {
        let root = site.root.to_str().unwrap();
        let served = Served::start(env!("CARGO_BIN_EXE_httpd"), driver, &["--root", root]);
        let url = format!("http://{}", served.addr);

        // Keep-alive: the second transfer reuses the first one's connection.
        let reuse = curl(&[
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{num_connects} %{content_type}\n",
            &format!("{url}/a.txt"),
            &format!("{url}/b.json"),
        ]);
        assert_eq!(
            reuse, "200 1 text/plain; charset=utf-8\n200 0 application/json\n",
            "{driver}"
        );
        assert_eq!(curl(&[&format!("{url}/")]), "<h1>asynchat-rs</h1>\n");

        // HEAD: the head of a GET, without a body.
        let head = curl(&["--head", &format!("{url}/a.txt")]);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{driver}: {head}");
        assert!(head.contains("Content-Length: 6\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "no body after HEAD: {head:?}");

        assert_eq!(status(&format!("{url}/missing.txt")), "404", "{driver}");
        assert_eq!(status(&format!("{url}/../secret")), "400", "{driver}");
        assert_eq!(status(&format!("{url}/%2e%2e/secret")), "400", "{driver}");
        assert_eq!(status(&format!("{url}/escape")), "403", "{driver}");

        // A file larger than the process may hold: streamed in chunks, intact.
        let fetched = site.base.join(format!("fetched-{driver}"));
        let out = curl(&[
            "-o",
            fetched.to_str().unwrap(),
            "-w",
            "%{http_code} %{size_download}",
            "-H",
            "Accept-Encoding: identity",
            &format!("{url}/big.bin"),
        ]);
        assert_eq!(out, format!("200 {BIG}"), "{driver}");
        assert!(
            same_contents(&fetched, &site.root.join("big.bin")),
            "{driver}: the download differs from the file"
        );
        let peak = served.peak_rss();
        assert!(
            peak < (BIG / 2) as u64,
            "{driver}: peak RSS {peak} bytes while serving a {BIG}-byte file: it was buffered"
        );
        std::fs::remove_file(&fetched).unwrap();
    }
}

fn same_contents(a: &Path, b: &Path) -> bool {
    std::fs::read(a).unwrap() == std::fs::read(b).unwrap()
}

/// HTTPS: `curl --cacert` against `httpd --tls-self-signed` on every driver, with keep-alive
/// reuse, ALPN `http/1.1` and the 64 MiB file streamed intact.
#[test]
fn curl_over_https_against_httpd() {
    require("curl", "apt-get install -y curl");
    let site = Site::new("https");
    let root = site.root.to_str().unwrap();
    for driver in DRIVERS {
        let cert = site.base.join(format!("cert-{driver}.pem"));
        let cert_arg = cert.to_str().unwrap();
        let served = Served::start(
            env!("CARGO_BIN_EXE_httpd"),
            driver,
            &["--root", root, "--tls-self-signed", cert_arg],
        );
        let url = format!("https://localhost:{}", served.addr.port());
        let resolve = format!("localhost:{}:127.0.0.1", served.addr.port());
        let tls = ["--cacert", cert_arg, "--resolve", &resolve];
        let reuse = curl(
            &[
                &tls[..],
                &[
                    "-o",
                    "/dev/null",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code} %{num_connects} %{http_version}\n",
                    &format!("{url}/a.txt"),
                    &format!("{url}/b.json"),
                ],
            ]
            .concat(),
        );
        assert_eq!(reuse, "200 1 1.1\n200 0 1.1\n", "{driver}");
        let verbose = Command::new("curl")
            .args(["--silent", "--verbose", "-o", "/dev/null"])
            .args(tls)
            .arg(format!("{url}/"))
            .output()
            .expect("run curl");
        let said = String::from_utf8_lossy(&verbose.stderr);
        assert!(
            said.contains("ALPN: server accepted http/1.1")
                || said.contains("ALPN, server accepted to use http/1.1"),
            "{driver}: {said}"
        );
        let fetched = site.base.join(format!("fetched-tls-{driver}"));
        let got = curl(
            &[
                &tls[..],
                &[
                    "-o",
                    fetched.to_str().unwrap(),
                    "-w",
                    "%{http_code} %{size_download}",
                    &format!("{url}/big.bin"),
                ],
            ]
            .concat(),
        );
        assert_eq!(got, format!("200 {BIG}"), "{driver}");
        assert!(
            std::fs::read(&fetched).unwrap() == std::fs::read(site.root.join("big.bin")).unwrap(),
            "{driver}: the file arrived altered"
        );
    }
}
