//! A line protocol with a counted body, run over stdin/stdout by a minimal blocking driver: the
//! whole driver contract of a [`Chat`] in one loop (read → `handle_read`, `poll_transmit` →
//! write → `handle_written`, EOF → `handle_eof`).
//!
//! ```text
//! $ printf 'upper hello\nlen 5\nab\ncdsum\nquit\n' | cargo run -q -p asynchat-core --example line_protocol
//! HELLO
//! 5 bytes, checksum 404
//! ERR unknown command "sum"
//! bye
//! ```
//!
//! Commands: `upper TEXT`, `len N` followed by N raw bytes (any bytes, newlines included),
//! `quit`. The peer closing stdin ends the session after the output is flushed.

use std::io::{self, IoSlice, Read, Write};
use std::time::Instant;

use asynchat_core::{Chat, Context, Frame, Protocol, Terminator};

#[derive(Default)]
struct Commands {
    /// Inside a `len N` body.
    in_body: bool,
}

impl Protocol for Commands {
    fn first_terminator(&self) -> Terminator {
        "\n".into()
    }

    fn found_terminator(&mut self, ctx: &mut Context<'_>, frame: Frame<'_>) {
        if self.in_body {
            self.in_body = false;
            let sum: u64 = frame.iter().map(|b| u64::from(*b)).sum();
            ctx.push(format!("{} bytes, checksum {sum}\n", frame.len()));
            ctx.set_terminator("\n").expect("non-empty delimiter");
            return;
        }
        let line = String::from_utf8_lossy(&frame);
        let (command, arg) = line.split_once(' ').unwrap_or((&line, ""));
        match command {
            "upper" => ctx.push(format!("{}\n", arg.to_uppercase())),
            "len" => match arg.parse::<u64>() {
                Ok(n) if n > 0 => {
                    self.in_body = true;
                    ctx.set_terminator(n).expect("a count is always valid");
                }
                _ => ctx.push("ERR len wants a positive number\n"),
            },
            "quit" => {
                ctx.push("bye\n");
                ctx.close_when_done();
            }
            other => ctx.push(format!("ERR unknown command {other:?}\n")),
        }
    }
}

fn main() -> io::Result<()> {
    let mut chat = Chat::new(Commands::default()).map_err(io::Error::other)?;
    let (mut input, mut output) = (io::stdin().lock(), io::stdout().lock());
    let mut buf = vec![0; chat.read_size()];
    chat.handle_connected(Instant::now());
    while !chat.is_closed() {
        // Write everything pending, then read: a blocking driver has nothing else to wait for.
        while chat.interest().writable {
            let mut slices = [IoSlice::new(&[]); 64];
            let n = chat.poll_transmit(&mut slices);
            let written = output.write_vectored(&slices[..n])?;
            chat.handle_written(written);
        }
        output.flush()?;
        if !chat.interest().readable {
            // Nothing to read or write and no timers here: nothing more can happen.
            break;
        }
        match input.read(&mut buf)? {
            0 => chat.handle_eof(Instant::now()),
            n => chat.handle_read(Instant::now(), &buf[..n]),
        }
    }
    Ok(())
}
