//! Sans-IO core of asynchat-rs (work in progress: being written).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod error;
pub mod framer;
pub mod terminator;

pub use error::{Error, Fault, Misuse, PeerError};
pub use framer::{Event, Framer, OverLongPolicy, DEFAULT_MAX_FRAME};
pub use terminator::Terminator;
