//! `chat`: the classic asynchat chat room, on any driver.
//!
//! ```text
//! cargo run -p asynchat-examples --bin chat -- --driver smol
//! nc 127.0.0.1 7070     # then: /nick ada, text, /who, /quit
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use asynchat_examples::chat::{self, Member, Room};
use asynchat_examples::cli::{self, Common};
use clap::Parser;

/// A chat room: `/nick NAME`, lines broadcast to the others, `/who`, `/quit`.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: Common,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let room = Arc::new(Room::default());
    let mut options = args.common.options(7070, chat::config());
    options.tls = match args.common.tls(&[]) {
        Ok(tls) => tls,
        Err(e) => return cli::exit_code("chat", Err(e)),
    };
    cli::exit_code(
        "chat",
        cli::serve_until_interrupted("chat", &options, move |link| {
            Member::join(&room, link.into_conn())
        }),
    )
}
