//! Deadlines keyed by a small id: the few timers a connection arms (a handful at most), kept in a
//! vector that allocates only once one is set.

use std::time::Instant;

#[derive(Debug, Default)]
pub(crate) struct Timers {
    armed: Vec<(u32, Instant)>,
}

impl Timers {
    /// Arms `id` at `at`, replacing an earlier deadline of the same id.
    pub(crate) fn set(&mut self, id: u32, at: Instant) {
        match self.armed.iter_mut().find(|(t, _)| *t == id) {
            Some(slot) => slot.1 = at,
            None => self.armed.push((id, at)),
        }
    }

    pub(crate) fn cancel(&mut self, id: u32) {
        self.armed.retain(|(t, _)| *t != id);
    }

    pub(crate) fn clear(&mut self) {
        self.armed = Vec::new();
    }

    pub(crate) fn next(&self) -> Option<Instant> {
        self.armed.iter().map(|(_, at)| *at).min()
    }

    /// Disarms and returns one timer due at `now`, earliest first.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<u32> {
        let (i, _) = self
            .armed
            .iter()
            .enumerate()
            .filter(|(_, (_, at))| *at <= now)
            .min_by_key(|(_, (_, at))| *at)?;
        Some(self.armed.swap_remove(i).0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fires_due_timers_earliest_first_and_rearms_by_id() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut timers = Timers::default();
        timers.set(1, at(30));
        timers.set(2, at(10));
        timers.set(3, at(50));
        timers.set(1, at(20));
        assert_eq!(timers.next(), Some(at(10)));
        assert_eq!(timers.pop_expired(at(5)), None);
        assert_eq!(timers.pop_expired(at(25)), Some(2));
        assert_eq!(timers.pop_expired(at(25)), Some(1));
        assert_eq!(timers.pop_expired(at(25)), None);
        timers.cancel(3);
        assert_eq!(timers.next(), None);
    }
}
