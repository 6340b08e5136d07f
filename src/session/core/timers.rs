//! The call's named timers (SANS-IO): one table instead of a deadline field per feature, so
//! the driver sleeps until [`Timers::poll_timeout`] and hands [`Timers::expired`] to the call.
//! The fork set and the 2xx table keep their own timers (64·T1 give-ups, T1/T2
//! retransmissions); these are the call-level ones.

use std::time::Instant;

/// A call-level timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallTimer {
    /// An unanswered caller waits at most `sip.no_answer_timeout` for its flow to answer it or
    /// ring someone; then 480.
    NoAnswer,
    /// The ringing dial's own timeout (the `dial` step's `timeout`): its forks are CANCELled
    /// and the flow goes on with `no_answer`.
    DialRing,
    /// A placed call's `ring_timeout`: its INVITEs are CANCELled, the call ends `no_answer`.
    OutboundRing,
    /// A queued caller's next position and expected-wait announcement.
    Announce,
}

/// Armed timers, at most one per name.
#[derive(Debug)]
pub struct Timers<T> {
    armed: Vec<(T, Instant)>,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Timers { armed: Vec::new() }
    }
}

impl<T: Copy + PartialEq> Timers<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Arms `name` for `at` (re-arming replaces its deadline).
    pub fn set(&mut self, name: T, at: Instant) {
        self.clear(name);
        self.armed.push((name, at));
    }

    /// Disarms `name`.
    pub fn clear(&mut self, name: T) {
        self.armed.retain(|(n, _)| *n != name);
    }

    /// When `name` fires, if armed.
    #[cfg(test)]
    pub fn get(&self, name: T) -> Option<Instant> {
        self.armed
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, at)| *at)
    }

    /// The earliest deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.armed.iter().map(|(_, at)| *at).min()
    }

    /// Disarms and returns every timer due at `now`, earliest first.
    pub fn expired(&mut self, now: Instant) -> Vec<T> {
        let mut due: Vec<(T, Instant)> = Vec::new();
        self.armed.retain(|&(n, at)| {
            if at <= now {
                due.push((n, at));
                false
            } else {
                true
            }
        });
        due.sort_by_key(|(_, at)| *at);
        due.into_iter().map(|(n, _)| n).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_timer_fires_once_at_its_deadline() {
        let (mut t, t0) = (Timers::new(), Instant::now());
        t.set(CallTimer::NoAnswer, t0 + Duration::from_secs(30));
        assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(30)));
        assert!(t.expired(t0 + Duration::from_secs(29)).is_empty());
        assert_eq!(
            t.expired(t0 + Duration::from_secs(30)),
            [CallTimer::NoAnswer]
        );
        assert!(t.expired(t0 + Duration::from_secs(60)).is_empty());
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn re_arming_replaces_the_deadline_and_clearing_disarms() {
        let (mut t, t0) = (Timers::new(), Instant::now());
        t.set(CallTimer::DialRing, t0 + Duration::from_secs(20));
        t.set(CallTimer::DialRing, t0 + Duration::from_secs(45));
        assert_eq!(
            t.get(CallTimer::DialRing),
            Some(t0 + Duration::from_secs(45))
        );
        assert!(t.expired(t0 + Duration::from_secs(30)).is_empty());
        t.clear(CallTimer::DialRing);
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn timers_due_together_come_out_earliest_first() {
        let (mut t, t0) = (Timers::new(), Instant::now());
        t.set(CallTimer::OutboundRing, t0 + Duration::from_secs(10));
        t.set(CallTimer::NoAnswer, t0 + Duration::from_secs(5));
        assert_eq!(
            t.expired(t0 + Duration::from_secs(10)),
            [CallTimer::NoAnswer, CallTimer::OutboundRing]
        );
    }
}
