//! The only place that reads the clocks (enforced by `clippy.toml`'s `disallowed-methods`).
//! Sans-IO modules take `now` as an argument; drivers call [`now`] (or [`tokio_now`] for a
//! `sleep_until`) and [`unix_ms`]. The monotonic clock is tokio's, so a test that pauses time
//! (`tokio::time::pause`) drives every timer of the server.
#![allow(clippy::disallowed_methods)]

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Monotonic time for protocol timers.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The same monotonic time as tokio's `Instant`, for `sleep_until` and `interval_at`.
pub fn tokio_now() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

/// Wall-clock time since the Unix epoch (RTCP NTP timestamps).
pub fn unix_duration() -> std::time::Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Wall-clock milliseconds since the Unix epoch, for records and bindings.
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
