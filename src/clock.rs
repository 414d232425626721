//! The one place that reads the wall clock. Everything else takes `now` as a parameter so tests
//! can pin time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Seconds since the Unix epoch, as a source that tests can pin and move.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    fixed: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self { fixed: None }
    }

    /// A clock that stands still at `unix_seconds` until [`Clock::advance`] moves it.
    pub fn fixed(unix_seconds: i64) -> Self {
        Self {
            fixed: Some(Arc::new(AtomicI64::new(unix_seconds))),
        }
    }

    /// Current time in Unix seconds.
    pub fn now(&self) -> i64 {
        match &self.fixed {
            Some(t) => t.load(Ordering::Relaxed),
            None => chrono::Utc::now().timestamp(),
        }
    }

    /// Current time in Unix microseconds (a fixed clock has whole seconds).
    pub fn now_us(&self) -> i64 {
        match &self.fixed {
            Some(t) => t.load(Ordering::Relaxed) * 1_000_000,
            None => chrono::Utc::now().timestamp_micros(),
        }
    }

    /// Move a fixed clock forward; a no-op on the system clock.
    pub fn advance(&self, seconds: i64) {
        if let Some(t) = &self.fixed {
            t.fetch_add(seconds, Ordering::Relaxed);
        }
    }

    /// `now` as a chrono timestamp (for openidconnect's verifier clock).
    pub fn now_utc(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(self.now(), 0).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_clock_stands_still_and_advances() {
        let c = Clock::fixed(1_000);
        assert_eq!(c.now(), 1_000);
        c.advance(5);
        assert_eq!(c.now(), 1_005);
        assert_eq!(c.clone().now(), 1_005, "clones share the same time");
    }

    #[test]
    fn system_clock_is_recent() {
        assert!(Clock::system().now() > 1_700_000_000);
    }
}
