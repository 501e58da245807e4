//! The queue of buffers and producers behind an outbox's copy buffer.

use std::collections::VecDeque;

use super::Item;
use crate::pool;

/// An outbox's queue, held only while something is queued and then boxed: every connection
/// carries the field, and an idle one (most of them, on a busy server) then costs one word for
/// it instead of a `VecDeque`'s four. A drained queue goes back to the thread's pool, so a busy
/// connection does not allocate the box again on every event.
#[derive(Default)]
pub(crate) struct Queue(Option<Boxed>);

/// A queue on the heap, so that the outbox holds a thin pointer to it.
#[allow(
    clippy::box_collection,
    reason = "one word in every outbox instead of four"
)]
pub(crate) type Boxed = Box<VecDeque<Item>>;

impl Queue {
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|q| q.is_empty())
    }

    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |q| q.len())
    }

    #[inline]
    pub(crate) fn back(&self) -> Option<&Item> {
        self.0.as_ref()?.back()
    }

    #[inline]
    pub(crate) fn pop_back(&mut self) -> Option<Item> {
        self.0.as_mut()?.pop_back()
    }

    #[inline]
    pub(crate) fn push_back(&mut self, item: Item) {
        self.0.get_or_insert_with(pool::take_queue).push_back(item);
    }

    #[inline]
    pub(crate) fn front_mut(&mut self) -> Option<&mut Item> {
        self.0.as_mut()?.front_mut()
    }

    #[inline]
    pub(crate) fn pop_front(&mut self) -> Option<Item> {
        self.0.as_mut()?.pop_front()
    }

    pub(crate) fn get_mut(&mut self, at: usize) -> Option<&mut Item> {
        self.0.as_mut()?.get_mut(at)
    }

    /// Inserts at `at` (at most `len()`).
    pub(crate) fn insert(&mut self, at: usize, item: Item) {
        self.0.get_or_insert_with(pool::take_queue).insert(at, item);
    }

    pub(crate) fn remove(&mut self, at: usize) -> Option<Item> {
        self.0.as_mut()?.remove(at)
    }

    #[inline]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Item> {
        self.0.as_deref().into_iter().flatten()
    }

    /// Drops what is queued and gives the queue's memory back to the thread's pool.
    pub(crate) fn release(&mut self) {
        if let Some(mut queue) = self.0.take() {
            queue.clear();
            pool::give_queue(queue);
        }
    }
}
