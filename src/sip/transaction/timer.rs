//! The timer queue: one binary heap of deadlines for every transaction, with lazy deletion.
//!
//! Each transaction records the timers it has armed ([`Armed`], at most one per slot); a heap
//! entry is live only while its transaction still holds that exact (timer, deadline). Disarming
//! is therefore O(1) and stale entries are dropped when they reach the top of the heap.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::TxId;

/// The RFC 3261 / RFC 6026 transaction timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Timer {
    /// Timer A: INVITE request retransmit, doubling from T1 (RFC 3261 §17.1.1.2).
    A,
    /// Timer B: INVITE transaction timeout, 64*T1 (RFC 3261 §17.1.1.2).
    B,
    /// Timer D: wait time for response retransmits, ≥32 s unreliable, 0 reliable (§17.1.1.2).
    D,
    /// Timer E: non-INVITE request retransmit, doubling from T1 up to T2 (RFC 3261 §17.1.2.2).
    E,
    /// Timer F: non-INVITE transaction timeout, 64*T1 (RFC 3261 §17.1.2.2).
    F,
    /// Timer G: INVITE final-response retransmit, doubling from T1 up to T2 (§17.2.1).
    G,
    /// Timer H: wait time for ACK receipt, 64*T1 (RFC 3261 §17.2.1).
    H,
    /// Timer I: wait time for ACK retransmits, T4 unreliable, 0 reliable (§17.2.1).
    I,
    /// Timer J: wait time for non-INVITE request retransmits, 64*T1 unreliable (§17.2.2).
    J,
    /// Timer K: wait time for non-INVITE response retransmits, T4 unreliable (§17.1.2.2).
    K,
    /// Timer L: wait time for accepted INVITE request retransmits, 64*T1 (RFC 6026 §8.7).
    L,
    /// Timer M: wait time for retransmission of 2xx to INVITE, 64*T1 (RFC 6026 §8.4).
    M,
}

/// The timers one transaction has armed: a retransmit slot (A/E/G), a timeout slot (B/F/H)
/// and a linger slot (D/I/J/K/L/M).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Armed([Option<(Timer, Instant)>; 3]);

/// Deadlines of every transaction, earliest first.
#[derive(Debug, Default)]
pub(super) struct TimerQueue {
    heap: BinaryHeap<Reverse<(Instant, TxId, Timer)>>,
}

impl Timer {
    fn slot(self) -> usize {
        match self {
            Timer::A | Timer::E | Timer::G => 0,
            Timer::B | Timer::F | Timer::H => 1,
            Timer::D | Timer::I | Timer::J | Timer::K | Timer::L | Timer::M => 2,
        }
    }
}

impl Armed {
    /// Arms `timer` at `at`, replacing whatever its slot held.
    pub(super) fn set(&mut self, timer: Timer, at: Instant) {
        self.0[timer.slot()] = Some((timer, at));
    }
    /// Disarms `timer` (a no-op when its slot holds another timer).
    pub(super) fn clear(&mut self, timer: Timer) {
        let slot = &mut self.0[timer.slot()];
        if matches!(slot, Some((t, _)) if *t == timer) {
            *slot = None;
        }
    }
    /// True while `timer` is armed for exactly `at`.
    pub(super) fn is(&self, timer: Timer, at: Instant) -> bool {
        self.0[timer.slot()] == Some((timer, at))
    }
}

impl TimerQueue {
    pub(super) fn push(&mut self, at: Instant, tx: TxId, timer: Timer) {
        self.heap.push(Reverse((at, tx, timer)));
    }

    /// Removes and returns the earliest entry due at or before `now` (live or stale).
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(Instant, TxId, Timer)> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// Drops stale entries from the top so that [`TimerQueue::earliest`] is exact.
    pub(super) fn prune(&mut self, live: impl Fn(Instant, TxId, Timer) -> bool) {
        while let Some(Reverse((at, tx, timer))) = self.heap.peek() {
            if live(*at, *tx, *timer) {
                break;
            }
            self.heap.pop();
        }
    }

    /// The earliest deadline in the heap.
    pub(super) fn earliest(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Entries held, live or stale.
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    pub(super) fn shrink_to(&mut self, capacity: usize) {
        self.heap.shrink_to(capacity);
    }

    pub(super) fn capacity(&self) -> usize {
        self.heap.capacity()
    }
}
