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
