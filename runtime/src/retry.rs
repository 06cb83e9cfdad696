//! Exponential backoff between retries, shared by every retry loop in the engine so their
//! pacing (start, doubling, cap, deadline) is written and tested once.

use std::time::Duration;

use tokio::time::Instant;

/// The delays to sleep between attempts: `initial`, then doubling up to `max`. Without a
/// deadline it never ends; with one ([`Backoff::until`]) it ends when the next sleep would
/// wake after the deadline, so the caller gives up instead of sleeping past it.
///
/// Time is tokio's, so a retry loop under a paused test clock backs off on that clock.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    deadline: Option<Instant>,
    attempts: u32,
}

impl Backoff {
    /// Starts at `initial` and doubles up to `max`. An `initial` above `max` is used once as
    /// given (job validation rules that out for configured backoffs).
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            next: initial,
            max,
            deadline: None,
            attempts: 0,
        }
    }

    /// Ends the delays once a sleep would end after `deadline`.
    #[must_use]
    pub fn until(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// How many delays were handed out: the number of the retry about to be slept for,
    /// as the retry loops log it.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The next delay as of `now`; [`Iterator::next`] with the clock passed in, for tests.
    fn next_at(&mut self, now: Instant) -> Option<Duration> {
        let delay = self.next;
        if self.deadline.is_some_and(|d| now + delay > d) {
            return None;
        }
        self.next = delay.saturating_mul(2).min(self.max);
        self.attempts = self.attempts.saturating_add(1);
        Some(delay)
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.next_at(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_up_to_the_cap_and_never_ends_without_a_deadline() {
        let delays: Vec<Duration> = Backoff::new(100 * MS, 1000 * MS).take(7).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1000, 1000, 1000].map(|ms| ms * MS)
        );
    }

    #[test]
    fn counts_attempts() {
        let mut b = Backoff::new(MS, 10 * MS);
        assert_eq!(b.attempts(), 0);
        b.next();
        b.next();
        assert_eq!(b.attempts(), 2);
    }

    #[test]
    fn a_start_above_the_cap_is_used_once() {
        let mut b = Backoff::new(500 * MS, 50 * MS);
        assert_eq!(b.next(), Some(500 * MS));
        assert_eq!(b.next(), Some(50 * MS));
    }

    #[test]
    fn ends_when_the_next_sleep_would_pass_the_deadline() {
        let start = Instant::now();
        let mut b = Backoff::new(100 * MS, 1000 * MS).until(start + 350 * MS);
        // 100 ms: ends at 100; 200 ms from t=100: ends at 300, still within.
        assert_eq!(b.next_at(start), Some(100 * MS));
        assert_eq!(b.next_at(start + 100 * MS), Some(200 * MS));
        // 400 ms from t=300 would end at 700.
        assert_eq!(b.next_at(start + 300 * MS), None);
        assert_eq!(b.attempts(), 2);
        // Ending exactly at the deadline is allowed.
        let mut b = Backoff::new(100 * MS, 1000 * MS).until(start + 100 * MS);
        assert_eq!(b.next_at(start), Some(100 * MS));
    }
}
