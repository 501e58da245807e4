//!
//! The API documentation of each item says what it does; these chapters say why it is so, and
//! how the pieces fit together: the design decisions behind the API, gathered in one place. They
//! can be read in any order.
//!
//! | chapter | what it explains |
//! |---|---|
//! | [`sans_io`](crate::manual::sans_io) | what the core owns, what a driver owns, and how a driver talks to a [`Chat`](crate::Chat) |
//! | [`python`](crate::manual::python) | every difference from Python's `asynchat` and `asyncore`, and the reason for it |
//! | [`performance`](crate::manual::performance) | why each optimisation exists, and what it costs |
//! | [`limits`](crate::manual::limits) | every default and limit, where it is set, and what a peer that reaches it gets |
//! | [`drivers`](crate::manual::drivers) | what each driver crate offers, and what in it is specific to its runtime |
//! | [`tls`](crate::manual::tls) | the TLS layer, STARTTLS without losing or trusting a byte, and how TLS fails |
//!
//! These modules contain no code. They are part of the crate's documentation so that
//! `cargo doc` builds them with the rest and checks every link they make to an item: when an
//! item is renamed or removed, the documentation build (warnings as errors, as CI runs it) fails
//! instead of the manual going stale silently.

pub mod sans_io {
    #![doc = include_str!("sans_io.md")]
}

pub mod python {
    #![doc = include_str!("python.md")]
}

pub mod performance {
    #![doc = include_str!("performance.md")]
}

pub mod limits {
    #![doc = include_str!("limits.md")]
}

pub mod drivers {
    #![doc = include_str!("drivers.md")]
}

pub mod tls {
    #![doc = include_str!("tls.md")]
}
