//! Events through `tracing`, with the `tracing` feature; nothing at all without it (the
//! arguments are not even evaluated).

/// A `tracing` event at `$level` (`debug`, `info`, `warn`...), compiled only with the feature.
macro_rules! event {
    ($level:ident, $($arg:tt)*) => {
        #[cfg(feature = "tracing")]
        {
            ::tracing::$level!($($arg)*);
        }
    };
}

pub(crate) use event;
