//! Deadlines keyed by a small id: the few timers a connection arms (a handful at most), kept in a
//! vector that allocates only once one is set.

use std::time::Instant;

#[derive(Debug, Default)]
pub(crate) struct Timers {
    /// (id, deadline, sequence number of the `set` that armed it)
    armed: Vec<(u32, Instant, u64)>,
    seq: u64,
}

/// Which timers one `handle_timeout` call may fire: those armed before it began. A timer re-armed
/// for "now" inside a timeout callback waits for the next call instead of looping forever.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Round(u64);

impl Timers {
    /// Arms `id` at `at`, replacing an earlier deadline of the same id.
    pub(crate) fn set(&mut self, id: u32, at: Instant) {
        self.seq += 1;
        let seq = self.seq;
        match self.armed.iter_mut().find(|(t, _, _)| *t == id) {
            Some(slot) => *slot = (id, at, seq),
            None => self.armed.push((id, at, seq)),
        }
    }

    pub(crate) fn cancel(&mut self, id: u32) {
        self.armed.retain(|(t, _, _)| *t != id);
    }

    pub(crate) fn clear(&mut self) {
        self.armed = Vec::new();
    }

    pub(crate) fn next(&self) -> Option<Instant> {
        self.armed.iter().map(|(_, at, _)| *at).min()
    }

    /// Starts a round of firing.
    pub(crate) fn round(&self) -> Round {
        Round(self.seq)
    }

    /// Disarms and returns one timer due at `now` and armed before `round` began, earliest first.
    pub(crate) fn pop_expired(&mut self, now: Instant, round: Round) -> Option<u32> {
        let (i, _) = self
            .armed
            .iter()
            .enumerate()
            .filter(|(_, (_, at, seq))| *at <= now && *seq <= round.0)
            .min_by_key(|(_, (_, at, _))| *at)?;
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
        let round = timers.round();
        assert_eq!(timers.pop_expired(at(5), round), None);
        assert_eq!(timers.pop_expired(at(25), round), Some(2));
        assert_eq!(timers.pop_expired(at(25), round), Some(1));
        assert_eq!(timers.pop_expired(at(25), round), None);
        timers.cancel(3);
        assert_eq!(timers.next(), None);
    }

    #[test]
    fn a_timer_rearmed_during_a_round_waits_for_the_next() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.set(1, t0);
        let round = timers.round();
        assert_eq!(timers.pop_expired(t0, round), Some(1));
        timers.set(1, t0);
        assert_eq!(timers.pop_expired(t0, round), None);
        assert_eq!(timers.pop_expired(t0, timers.round()), Some(1));
    }
}
