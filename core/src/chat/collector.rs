//! The default collector: what `collect_incoming_data` gathers until `found_terminator`.

use std::fmt;

use bytes::{Bytes, BytesMut};

/// The default collector: one `Bytes` kept as it is (zero-copy), concatenated only when a frame
/// came in several pieces.
#[derive(Default)]
pub(super) enum Incoming {
    #[default]
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("len", &self.len())
            .finish()
    }
}

impl Incoming {
    pub(super) fn len(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::One(b) => b.len(),
            Self::Many(m) => m.len(),
        }
    }

    pub(super) fn push(&mut self, data: Bytes) {
        *self = match std::mem::take(self) {
            Self::Empty => Self::One(data),
            Self::One(first) => {
                let mut all = BytesMut::with_capacity(first.len() + data.len());
                all.extend_from_slice(&first);
                all.extend_from_slice(&data);
                Self::Many(all)
            }
            Self::Many(mut all) => {
                all.extend_from_slice(&data);
                Self::Many(all)
            }
        };
    }

    pub(super) fn take(&mut self) -> Bytes {
        match std::mem::take(self) {
            Self::Empty => Bytes::new(),
            Self::One(b) => b,
            Self::Many(m) => m.freeze(),
        }
    }
}
