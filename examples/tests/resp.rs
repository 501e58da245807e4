//! The resp binary on every driver, against `redis-cli` and a short `redis-benchmark` run.

mod common;

use std::process::Command;

use common::{require, Served, DRIVERS};

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("run redis-cli");
    assert!(out.status.success(), "redis-cli {args:?}: {:?}", out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn redis_cli_on_every_driver() {
    require("redis-cli", "apt-get install -y redis-tools");
    for driver in DRIVERS {
        let served = Served::start(env!("CARGO_BIN_EXE_resp"), driver, &[]);
        let port = served.addr.port();
        let cli = |args: &[&str]| redis_cli(port, args);
        assert_eq!(cli(&["PING"]), "PONG\n", "{driver}");
        assert_eq!(cli(&["SET", "greeting", "hello world"]), "OK\n");
        assert_eq!(cli(&["GET", "greeting"]), "hello world\n");
        assert_eq!(
            cli(&["SET", "greeting", "x", "NX"]),
            "\n",
            "NX on an existing key: nil"
        );
        assert_eq!(cli(&["SET", "fleeting", "x", "PX", "100"]), "OK\n");
        assert_eq!(cli(&["INCR", "n"]), "1\n");
        assert_eq!(cli(&["DECR", "n"]), "0\n");
        assert_eq!(cli(&["MSET", "a", "1", "b", "2"]), "OK\n");
        assert_eq!(cli(&["MGET", "a", "missing", "b"]), "1\n\n2\n");
        assert_eq!(cli(&["EXISTS", "a", "b", "missing"]), "2\n");
        std::thread::sleep(std::time::Duration::from_millis(150));
        assert_eq!(cli(&["EXISTS", "fleeting"]), "0\n", "{driver}: PX expired");
        assert_eq!(cli(&["DEL", "a", "b"]), "2\n");
        assert_eq!(cli(&["DBSIZE"]), "2\n");
        // Errors in Redis's format, as redis-cli shows them.
        // (redis-cli prints an error with a blank line after it, whatever the server.)
        assert_eq!(
            cli(&["INCR", "greeting"]).trim_end(),
            "ERR value is not an integer or out of range"
        );
        assert!(cli(&["NOSUCH", "x"]).starts_with("ERR unknown command 'NOSUCH'"));
        // A value with CR, LF and NUL bytes goes through as it is (-x reads it from stdin).
        let out = Command::new("sh")
            .args(["-c", &format!("printf 'a\\r\\nb\\000c' | redis-cli -p {port} -x SET bin && redis-cli -p {port} --no-raw GET bin")])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "OK\n\"a\\r\\nb\\x00c\"\n",
            "{driver}"
        );
        // A value far larger than an inline request (64 KiB) is a bulk like any other.
        let out = Command::new("sh")
            .args(["-c", &format!("head -c 300000 /dev/zero | tr '\\0' v | redis-cli -p {port} -x SET big && redis-cli -p {port} GET big | wc -c")])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "OK\n300001\n",
            "{driver}"
        );
        assert_eq!(cli(&["FLUSHALL"]), "OK\n");
        assert_eq!(cli(&["DBSIZE"]), "0\n");
    }
}

#[test]
fn redis_benchmark_on_every_driver() {
    require("redis-benchmark", "apt-get install -y redis-tools");
    for driver in DRIVERS {
        let served = Served::start(env!("CARGO_BIN_EXE_resp"), driver, &[]);
        let out = Command::new("timeout")
            .args(["60", "redis-benchmark", "-h", "127.0.0.1", "-p"])
            .arg(served.addr.port().to_string())
            .args([
                "-t",
                "ping,set,get,incr,mset",
                "-n",
                "20000",
                "-c",
                "20",
                "-P",
                "8",
                "-q",
                "-r",
                "1000",
            ])
            .output()
            .expect("run redis-benchmark");
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{driver}: {report} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for test in [
            "PING_INLINE",
            "PING_MBULK",
            "SET",
            "GET",
            "INCR",
            "MSET (10 keys)",
        ] {
            let line = report
                .lines()
                .map(|l| l.rsplit('\r').next().unwrap_or(l))
                .find(|l| l.starts_with(&format!("{test}: ")))
                .unwrap_or_else(|| panic!("{driver}: no {test} result in {report:?}"));
            assert!(line.contains("requests per second"), "{driver}: {line}");
        }
        // The benchmark's keys are really there.
        assert_ne!(
            redis_cli(served.addr.port(), &["DBSIZE"]),
            "0\n",
            "{driver}"
        );
    }
}

/// Small values set one request at a time (each in a read of its own) cost their own size, not
/// the read buffer they arrived in: 10 000 one-byte values grow the server by less than 400 B
/// each (redis-server 7.0: about 113 B; before frames were copied out of the read buffer:
/// about 4.3 KB).
#[test]
fn small_values_do_not_pin_read_buffers() {
    use std::io::{Read, Write};
    const VALUES: usize = 10_000;
    for driver in DRIVERS {
        let served = Served::start(env!("CARGO_BIN_EXE_resp"), driver, &[]);
        let mut c = std::net::TcpStream::connect(served.addr).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let before = served.rss();
        let mut reply = [0u8; 5];
        for i in 0..VALUES {
            let key = format!("key:{i:06}");
            let set = format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$1\r\nv\r\n", key.len());
            c.write_all(set.as_bytes()).unwrap();
            c.read_exact(&mut reply).unwrap();
            assert_eq!(&reply, b"+OK\r\n");
        }
        let per_value = (served.rss().saturating_sub(before)) / VALUES as u64;
        assert!(
            per_value < 400,
            "{driver}: {per_value} B of memory per one-byte value"
        );
        eprintln!("{driver}: {per_value} B per value");
    }
}

/// `redis-cli --tls --cacert` against `resp --tls-self-signed`, on every driver.
#[test]
fn redis_cli_over_tls() {
    require("redis-cli", "apt-get install -y redis-tools");
    for driver in DRIVERS {
        let cert = std::env::temp_dir().join(format!(
            "asynchat-resp-tls-{driver}-{}.pem",
            std::process::id()
        ));
        let cert_arg = cert.to_str().unwrap();
        let served = Served::start(
            env!("CARGO_BIN_EXE_resp"),
            driver,
            &["--tls-self-signed", cert_arg],
        );
        let port = served.addr.port();
        let tls = ["--tls", "--cacert", cert_arg, "--sni", "localhost"];
        let cli = |args: &[&str]| redis_cli(port, &[&tls[..], args].concat());
        assert_eq!(cli(&["PING"]), "PONG\n", "{driver}");
        assert_eq!(cli(&["SET", "k", "over tls"]), "OK\n", "{driver}");
        assert_eq!(cli(&["GET", "k"]), "over tls\n", "{driver}");
        // Plaintext against the TLS port gets no reply, and the server goes on.
        let plain = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "PING"])
            .output()
            .expect("run redis-cli");
        assert!(
            !String::from_utf8_lossy(&plain.stdout).contains("PONG"),
            "{driver}: plaintext was answered"
        );
        assert_eq!(cli(&["GET", "k"]), "over tls\n", "{driver}: still serving");
        drop(served);
        let _ = std::fs::remove_file(&cert);
    }
}
