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

/// Runs `redis-benchmark -t TESTS -n REQUESTS` (20 connections, 8 pipelined, 1000 random keys)
/// against `port`: its report, each test's line checked to be there.
fn redis_benchmark(driver: &str, port: u16, tests: &str, requests: u32, names: &[&str]) {
    let out = Command::new("timeout")
        .args(["60", "redis-benchmark", "-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(["-t", tests, "-n", &requests.to_string()])
        .args(["-c", "20", "-P", "8", "-q", "-r", "1000"])
        .output()
        .expect("run redis-benchmark");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{driver}: {report} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for test in names {
        let line = report
            .lines()
            .map(|l| l.rsplit('\r').next().unwrap_or(l))
            .find(|l| l.starts_with(&format!("{test}: ")))
            .unwrap_or_else(|| panic!("{driver}: no {test} result in {report:?}"));
        assert!(line.contains("requests per second"), "{driver}: {line}");
    }
}

/// `redis-benchmark`'s default suite but for sorted sets and streams completes on every driver
/// (a correctness run: every test reports its rate; the ranges, 100 to 600 elements a reply,
/// run fewer requests), served by two threads on a store in four shards: MSET's keys fall in
/// several shards locked together.
#[test]
fn redis_benchmark_on_every_driver() {
    require("redis-benchmark", "apt-get install -y redis-tools");
    for driver in DRIVERS {
        let served = Served::start(env!("CARGO_BIN_EXE_resp"), driver, &["--threads", "2"]);
        let port = served.addr.port();
        redis_benchmark(
            driver,
            port,
            "ping,set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,mset",
            20_000,
            &[
                "PING_INLINE",
                "PING_MBULK",
                "SET",
                "GET",
                "INCR",
                "LPUSH",
                "RPUSH",
                "LPOP",
                "RPOP",
                "SADD",
                "HSET",
                "SPOP",
                "MSET (10 keys)",
            ],
        );
        redis_benchmark(
            driver,
            port,
            "lrange",
            1_000,
            &[
                "LRANGE_100 (first 100 elements)",
                "LRANGE_600 (first 600 elements)",
            ],
        );
        // The benchmark's keys are really there.
        assert_ne!(redis_cli(port, &["DBSIZE"]), "0\n", "{driver}");
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

/// A command as a RESP array of bulk strings.
fn resp_command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
    }
    out
}

/// Sends `script` in one write, then an `ECHO` marker, and reads every reply up to the
/// marker's: the bytes a server answered.
fn replies(port: u16, script: &[Vec<u8>]) -> Vec<u8> {
    use std::io::{Read, Write};
    let marker = b"$10\r\n__script__\r\n";
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut request = script.concat();
    request.extend(resp_command(&["ECHO", "__script__"]));
    tcp.write_all(&request).expect("write");
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    while !got.ends_with(marker) {
        let n = tcp.read(&mut buf).expect("the replies");
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    got.truncate(got.len() - marker.len());
    got
}

/// Lists, sets and hashes answer byte for byte as redis-server does (the same script against
/// both, on every driver): pushes, pops with and without a count, ranges from both ends, the
/// removal of an emptied aggregate, `WRONGTYPE`, and the errors of bad counts, indices and
/// arities.
#[test]
fn lists_sets_and_hashes_answer_as_redis_server_does() {
    require("redis-server", "apt-get install -y redis-server");
    let script: Vec<Vec<u8>> = [
        &["RPUSH", "l", "a", "b", "c"][..],
        &["LPUSH", "l", "z", "y"],
        &["LRANGE", "l", "0", "-1"],
        &["LRANGE", "l", "-2", "10"],
        &["LRANGE", "l", "4", "1"],
        &["LRANGE", "l", "x", "1"],
        &["LLEN", "l"],
        &["LPOP", "l"],
        &["RPOP", "l"],
        &["LPOP", "l", "2"],
        &["RPOP", "l", "0"],
        &["LPOP", "l", "-1"],
        &["LPOP", "l"],
        &["EXISTS", "l"],
        &["LPOP", "l"],
        &["LPOP", "l", "2"],
        &["LRANGE", "l", "0", "-1"],
        &["SET", "s", "v"],
        &["LPUSH", "s", "x"],
        &["LRANGE", "s", "0", "1"],
        &["SADD", "st", "m"],
        &["SADD", "st", "m"],
        &["SCARD", "st"],
        &["SPOP", "st"],
        &["SPOP", "st"],
        &["SPOP", "st", "1"],
        &["SADD", "s", "m"],
        &["HSET", "h", "f", "1", "g", "2"],
        &["HSET", "h", "f", "3"],
        &["HGET", "h", "f"],
        &["HGET", "h", "x"],
        &["HSET", "h", "f"],
        &["GET", "h"],
        &["INCR", "h"],
        &["MGET", "h", "s"],
        &["SET", "h", "now a string"],
        &["GET", "h"],
        &["LLEN", "nothing"],
        &["DEL", "s", "h"],
    ]
    .iter()
    .map(|c| resp_command(c))
    .collect();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut redis = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server");
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "redis-server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let expected = replies(port, &script);
    let _ = redis.kill();
    let _ = redis.wait();
    for driver in DRIVERS {
        let served = Served::start(env!("CARGO_BIN_EXE_resp"), driver, &[]);
        let got = replies(served.addr.port(), &script);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&expected),
            "{driver}"
        );
    }
}
