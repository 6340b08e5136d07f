//! 20 ms pacing on absolute deadlines. SANS-IO.
//!
//! Owns the question "how many media frames are due now" for one per-call media loop. The
//! deadlines are `start + n·period`, computed from the frame index and never accumulated from
//! the time the driver happened to wake up, so the clock does not drift however late the
//! wake-ups are: after 180 000 frames of 20 ms the next deadline is exactly `start + 1 h`.
//!
//! Late wake-ups (the driver was descheduled, the host was busy):
//! * If `n` deadlines have passed without a frame, [`FrameClock::tick`] asks for all of them as
//!   long as `n ≤ K` ("catch up": the caller produces them back to back; `K` is
//!   [`DEFAULT_MAX_CATCH_UP`] = 5 unless set with [`FrameClock::with_max_catch_up`]).
//! * If `n > K`, it asks for `K` frames and *skips* the other `n − K`: their deadlines are
//!   dropped and the clock re-anchors on the next deadline of the same grid (the phase of the
//!   grid is kept, so skipping never introduces drift either). A caller that prefers never to
//!   catch up sets `K = 1`; a caller that wants to decide itself reads [`Ticks::skipped`].
//! * Every late tick, caught-up frame and skipped frame is counted in [`FrameClock::stats`].
//!
//! No RFC governs this; RFC 3550 §5.1 timestamps of the media produced advance by one frame per
//! frame *produced*, so a skip shows up as a timestamp gap downstream, which is what a receiver
//! expects after a stall.
//!
//! Time is passed in (`now`); nothing here reads a clock.

use std::time::{Duration, Instant};

/// Frames produced back to back at most by one late tick, unless configured otherwise.
pub const DEFAULT_MAX_CATCH_UP: u32 = 5;

/// Why a frame clock could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameClockError {
    /// A period of zero would make every instant a deadline.
    #[error("frame period must be non-zero")]
    ZeroPeriod,
}

/// Absolute-deadline pacing for one media loop.
#[derive(Debug, Clone)]
pub struct FrameClock {
    start: Instant,
    period: Duration,
    /// Index of the next frame not yet produced; its deadline is `start + next·period`.
    next: u64,
    max_catch_up: u32,
    stats: FrameClockStats,
}

/// What one call to [`FrameClock::tick`] asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ticks {
    /// Frames to produce now, back to back (0 when woken early).
    pub frames: u32,
    /// Of `frames`, how many were overdue by a period or more (catch-up frames).
    pub caught_up: u32,
    /// Frames whose deadlines passed and which are not to be produced at all.
    pub skipped: u64,
}

/// Counters of a frame clock since it was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameClockStats {
    /// Frames asked for.
    pub frames: u64,
    /// Ticks that found more than one deadline passed (the driver woke a period late or more).
    pub late_ticks: u64,
    /// Frames asked for after their deadline had been passed by a period or more.
    pub caught_up: u64,
    /// Ticks that had to skip frames.
    pub skip_events: u64,
    /// Frames skipped.
    pub skipped: u64,
}

impl FrameClock {
    /// A clock whose first deadline is `start` and then one every `period`.
    ///
    /// # Panics
    /// If `period` is zero: a programming error (the period is a constant of the engine).
    pub fn new(start: Instant, period: Duration) -> Self {
        Self::try_new(start, period).expect("frame period is a non-zero engine constant")
    }

    /// Like [`FrameClock::new`], but a zero period is an error rather than a panic.
    pub fn try_new(start: Instant, period: Duration) -> Result<Self, FrameClockError> {
        if period.is_zero() {
            return Err(FrameClockError::ZeroPeriod);
        }
        Ok(Self {
            start,
            period,
            next: 0,
            max_catch_up: DEFAULT_MAX_CATCH_UP,
            stats: FrameClockStats::default(),
        })
    }

    /// Produce at most `k` frames back to back on a late tick (0 is taken as 1).
    pub fn with_max_catch_up(mut self, k: u32) -> Self {
        self.max_catch_up = k.max(1);
        self
    }

    /// The deadline of the next frame: `start + n·period`, the instant to sleep until.
    pub fn next_deadline(&self) -> Instant {
        self.deadline(self.next)
    }

    /// Frames produced or skipped so far (the index of the next frame).
    pub fn frame_index(&self) -> u64 {
        self.next
    }

    /// How many frames are due at `now` (see the module docs for the late-tick policy).
    pub fn tick(&mut self, now: Instant) -> Ticks {
        if now < self.next_deadline() {
            return Ticks::default();
        }
        let elapsed = now.duration_since(self.start).as_nanos();
        let last_due = u64::try_from(elapsed / self.period.as_nanos()).unwrap_or(u64::MAX);
        let overdue = last_due.saturating_sub(self.next).saturating_add(1);
        let frames = overdue.min(u64::from(self.max_catch_up));
        let skipped = overdue - frames;
        self.next = last_due.saturating_add(1);
        // `frames ≤ max_catch_up`, a u32.
        let frames = u32::try_from(frames).unwrap_or(u32::MAX);
        let caught_up = if overdue > 1 { frames - 1 } else { 0 };
        self.stats.frames += u64::from(frames);
        self.stats.caught_up += u64::from(caught_up);
        if overdue > 1 {
            self.stats.late_ticks += 1;
        }
        if skipped > 0 {
            self.stats.skip_events += 1;
            self.stats.skipped += skipped;
        }
        Ticks {
            frames,
            caught_up,
            skipped,
        }
    }

    /// Counters since the clock was built.
    pub fn stats(&self) -> FrameClockStats {
        self.stats
    }

    fn deadline(&self, index: u64) -> Instant {
        let nanos = self.period.as_nanos().saturating_mul(u128::from(index));
        let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
        // The remainder is < 10⁹.
        let sub = (nanos % 1_000_000_000) as u32;
        self.start + Duration::new(secs, sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_millis(20);

    use crate::media::test_rng::XorShift;

    #[test]
    fn early_tick_asks_for_nothing_and_first_deadline_is_start() {
        let start = Instant::now();
        let mut clock = FrameClock::new(start, PERIOD);
        assert_eq!(clock.next_deadline(), start);
        assert_eq!(clock.tick(start).frames, 1);
        assert_eq!(clock.tick(start + Duration::from_millis(19)).frames, 0);
        assert_eq!(clock.next_deadline(), start + PERIOD);
    }

    #[test]
    fn one_hour_of_random_lateness_ends_exactly_on_the_hour() {
        let start = Instant::now();
        let mut clock = FrameClock::new(start, PERIOD);
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut frames = 0u64;
        for _ in 0..180_000 {
            let late = Duration::from_nanos(rng.next() % PERIOD.as_nanos() as u64);
            let ticks = clock.tick(clock.next_deadline() + late);
            assert_eq!(ticks.frames, 1, "lateness below a period never doubles up");
            assert_eq!(ticks.skipped, 0);
            frames += u64::from(ticks.frames);
        }
        assert_eq!(frames, 180_000);
        assert_eq!(clock.next_deadline(), start + Duration::from_secs(3600));
        let stats = clock.stats();
        assert_eq!(stats.frames, 180_000);
        assert_eq!(stats.late_ticks, 0);
        assert_eq!(stats.skipped, 0);
    }

    #[test]
    fn late_wake_up_catches_up_back_to_back() {
        let start = Instant::now();
        let mut clock = FrameClock::new(start, PERIOD);
        assert_eq!(clock.tick(start).frames, 1);
        // Woke 2.5 periods after the deadline of frame 1: frames 1, 2, 3 are due.
        let ticks = clock.tick(start + PERIOD + PERIOD * 5 / 2);
        assert_eq!(
            ticks,
            Ticks {
                frames: 3,
                caught_up: 2,
                skipped: 0
            }
        );
        assert_eq!(clock.next_deadline(), start + PERIOD * 4);
        let stats = clock.stats();
        assert_eq!((stats.frames, stats.late_ticks, stats.caught_up), (4, 1, 2));
    }

    #[test]
    fn long_stall_skips_beyond_the_catch_up_limit_and_counts() {
        let start = Instant::now();
        let mut clock = FrameClock::new(start, PERIOD);
        assert_eq!(clock.tick(start).frames, 1);
        let deadline = clock.next_deadline();
        // A 2 s stall: deadlines of frames 1..=101 have passed.
        let now = deadline + Duration::from_secs(2);
        let ticks = clock.tick(now);
        assert_eq!(
            ticks,
            Ticks {
                frames: 5,
                caught_up: 4,
                skipped: 96
            }
        );
        assert_eq!(
            clock.next_deadline(),
            now + PERIOD,
            "re-anchored on the same grid"
        );
        let stats = clock.stats();
        assert_eq!(stats.skip_events, 1);
        assert_eq!(stats.skipped, 96);
        assert_eq!(stats.frames, 6);
        // Back on time afterwards.
        assert_eq!(clock.tick(clock.next_deadline()).frames, 1);
    }

    #[test]
    fn catch_up_limit_of_one_skips_every_overdue_frame() {
        let start = Instant::now();
        let mut clock = FrameClock::new(start, PERIOD).with_max_catch_up(0);
        let ticks = clock.tick(start + PERIOD * 3);
        assert_eq!((ticks.frames, ticks.skipped), (1, 3));
        assert_eq!(clock.frame_index(), 4);
    }

    #[test]
    fn zero_period_is_an_error() {
        assert_eq!(
            FrameClock::try_new(Instant::now(), Duration::ZERO).err(),
            Some(FrameClockError::ZeroPeriod)
        );
    }
}
