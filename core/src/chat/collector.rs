//! The default collector: what `collect_incoming_data` gathers until `found_terminator`.

use std::fmt;

use bytes::{Bytes, BytesMut};

use super::Frame;

/// The default collector: one `Bytes` kept as it is (zero-copy), concatenated only when a frame
/// came in several pieces.
#[derive(Default)]
pub(super) enum Incoming {
    #[default]
    Empty,
    /// The frame lent from the receive buffer, of this length: its bytes stay where they are
    /// until `found_terminator` is handed them, or [`own`](Self::own) copies them if the lend
    /// ends first.
    Lent(usize),
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
    #[inline]
    pub(super) fn len(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::Lent(len) => *len,
            Self::One(b) => b.len(),
            Self::Many(m) => m.len(),
        }
    }

    /// Collects `data`; `lent` is the frame being lent, if any: `data` that is that very slice
    /// is only noted, any other lent bytes are copied.
    #[inline]
    pub(super) fn push(&mut self, data: Frame<'_>, lent: Option<&[u8]>) {
        match data.into_parts() {
            Ok(slice)
                if matches!(self, Self::Empty) && lent.is_some_and(|f| std::ptr::eq(f, slice)) =>
            {
                *self = Self::Lent(slice.len());
            }
            Ok(slice) => self.extend(slice, lent),
            Err(bytes) => self.push_bytes(bytes, lent),
        }
    }

    /// Copies the noted lent frame in, if any: the lend of `lent` ends.
    #[inline]
    pub(super) fn own(&mut self, lent: Option<&[u8]>) {
        if let Self::Lent(len) = *self {
            let frame = lent.map_or(&[][..], |frame| &frame[..len.min(frame.len())]);
            debug_assert_eq!(frame.len(), len, "the lent frame is gone");
            *self = Self::One(Bytes::copy_from_slice(frame));
        }
    }

    #[inline(never)]
    fn extend(&mut self, slice: &[u8], lent: Option<&[u8]>) {
        if slice.is_empty() {
            return;
        }
        self.own(lent);
        *self = match std::mem::take(self) {
            Self::Empty | Self::Lent(_) => Self::One(Bytes::copy_from_slice(slice)),
            Self::One(first) => {
                let mut all = BytesMut::with_capacity(first.len() + slice.len());
                all.extend_from_slice(&first);
                all.extend_from_slice(slice);
                Self::Many(all)
            }
            Self::Many(mut all) => {
                all.extend_from_slice(slice);
                Self::Many(all)
            }
        };
    }

    #[inline(never)]
    fn push_bytes(&mut self, data: Bytes, lent: Option<&[u8]>) {
        self.own(lent);
        match self {
            // Kept as it is: a frame that came in one piece costs no copy.
            Self::Empty => *self = Self::One(data),
            _ => self.extend(&data, None),
        }
    }

    /// What was collected, as a frame lent from `lent` if that is what was noted (nothing
    /// collected is an empty frame, lent as well: there is nothing to copy).
    #[inline]
    pub(super) fn take_frame<'a>(&mut self, lent: Option<&'a [u8]>) -> Frame<'a> {
        match (&*self, lent) {
            (Self::Lent(len), Some(frame)) if *len == frame.len() => {
                *self = Self::Empty;
                Frame::lent(frame)
            }
            (Self::Empty, _) => Frame::new(),
            _ => {
                self.own(lent);
                self.take().into()
            }
        }
    }

    /// What was collected; never a noted lent frame (call [`own`](Self::own) first).
    pub(super) fn take(&mut self) -> Bytes {
        match std::mem::take(self) {
            Self::Empty => Bytes::new(),
            Self::Lent(_) => {
                debug_assert!(false, "a lent frame taken without its bytes");
                Bytes::new()
            }
            Self::One(b) => b,
            Self::Many(m) => m.freeze(),
        }
    }
}
