//! asyncore's `file_dispatcher` on stdin/stdout: the test runs its own binary as a child process
//! whose stdin and stdout are pipes, and the child serves a protocol on them.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use asynchat_core::{Context, Frame, Protocol, Terminator};
use asynchat_mio::EventLoop;

struct Shout;

impl Protocol for Shout {
    fn first_terminator(&self) -> Terminator {
        "\n".into()
    }
    fn found_terminator(&mut self, ctx: &mut Context<'_>, line: Frame<'_>) {
        // A prefix, so the parent can tell these lines from the test harness's own output.
        ctx.push("ECHO ");
        ctx.push(line.to_ascii_uppercase());
        ctx.push("\n");
    }
}

#[test]
#[ignore = "the child half of attach_stdio_serves_a_protocol_on_stdin_and_stdout, which runs it"]
fn stdio_child() {
    let mut ev = EventLoop::new().unwrap();
    ev.attach_stdio(Shout).unwrap();
    ev.run().unwrap(); // ends once stdin is closed and the output flushed
}

#[test]
fn attach_stdio_serves_a_protocol_on_stdin_and_stdout() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "stdio_child",
            "--quiet",
            "--test-threads",
            "1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hello\nworld\n").unwrap();
    drop(stdin); // EOF: the child flushes, closes, and its loop ends
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let start = Instant::now();
    let status = child.wait().unwrap();
    assert!(status.success(), "child failed: {out}");
    assert!(start.elapsed() < Duration::from_secs(10));
    let echoed: Vec<&str> = out.lines().filter(|l| l.starts_with("ECHO ")).collect();
    assert_eq!(
        echoed,
        ["ECHO HELLO", "ECHO WORLD"],
        "child output: {out:?}"
    );
}
