//! Deadlines keyed by a small id: the few timers a connection arms (a handful at most), kept in a
//! vector that allocates only once one is set.

use std::time::Instant;

/// Boxed until first used: most connections never arm a custom timer, and every one carries this.
#[derive(Debug, Default)]
pub(crate) struct Timers(Option<Box<Armed>>);

#[derive(Debug, Default)]
struct Armed {
    /// (id, deadline, sequence number of the `set` that armed it)
    list: Vec<(u32, Instant, u64)>,
    seq: u64,
}

/// Which timers one `handle_timeout` call may fire: those armed before it began. A timer re-armed
/// for "now" inside a timeout callback waits for the next call instead of looping forever.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Round(u64);

impl Timers {
    /// Arms `id` at `at`, replacing an earlier deadline of the same id.
    pub(crate) fn set(&mut self, id: u32, at: Instant) {
        let armed = self.0.get_or_insert_with(Box::default);
        armed.seq += 1;
        let seq = armed.seq;
        match armed.list.iter_mut().find(|(t, _, _)| *t == id) {
            Some(slot) => *slot = (id, at, seq),
            None => armed.list.push((id, at, seq)),
        }
    }

    pub(crate) fn cancel(&mut self, id: u32) {
        if let Some(armed) = &mut self.0 {
            armed.list.retain(|(t, _, _)| *t != id);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.0 = None;
    }

    pub(crate) fn next(&self) -> Option<Instant> {
        self.0.as_ref()?.list.iter().map(|(_, at, _)| *at).min()
    }

    /// Starts a round of firing.
    pub(crate) fn round(&self) -> Round {
        Round(self.0.as_ref().map_or(0, |a| a.seq))
    }

    /// Disarms and returns one timer due at `now` and armed before `round` began, earliest first.
    pub(crate) fn pop_expired(&mut self, now: Instant, round: Round) -> Option<u32> {
        let armed = self.0.as_mut()?;
        let (i, _) = armed
            .list
            .iter()
            .enumerate()
            .filter(|(_, (_, at, seq))| *at <= now && *seq <= round.0)
            .min_by_key(|(_, (_, at, _))| *at)?;
        Some(armed.list.swap_remove(i).0)
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
