//! The only place that reads the clocks. Sans-IO modules take `now` as an argument; drivers
//! call [`now`] and [`unix_ms`].

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Monotonic time for protocol timers.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
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
