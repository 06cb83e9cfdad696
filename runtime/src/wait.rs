//! Waiting for an external system at start-up (a broker, ClickHouse, the S3 endpoint), out
//! loud.
//!
//! A system that is down when a job starts is often only starting itself (a deploy that
//! brings both up, a broker restart), so the runtime retries instead of failing at the first
//! refusal; but a silent wait looks like a hang, so every attempt that fails is logged with
//! what is awaited, its address and the attempt number, at most two seconds apart. After
//! `WEIR_WAIT_TIMEOUT` (default 2m) the job fails with the last error, so a wrong address
//! still ends in an error that names it. Answers that retrying cannot change (a missing
//! topic or table) fail at once.

use std::future::Future;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long start-up waits for each external system; `WEIR_WAIT_TIMEOUT`.
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(120);

/// The longest pause between two attempts, so a wait is logged at least this often.
pub const MAX_PAUSE: Duration = Duration::from_secs(2);

/// What start-up waits for right now, for `/readyz` (one job per process).
static WAITING: Mutex<Option<String>> = Mutex::new(None);

/// What start-up waits for right now, e.g. `waiting for Kafka at host:9092 (attempt 3): …`.
#[must_use]
pub fn current() -> Option<String> {
    WAITING.lock().ok().and_then(|w| w.clone())
}

fn note(w: Option<String>) {
    if let Ok(mut cur) = WAITING.lock() {
        *cur = w;
    }
}

/// One attempt's failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Not reachable (yet): try again.
    Unreachable(String),
    /// Reached, and the answer is final (e.g. the topic does not exist).
    Refused(String),
}

impl Attempt {
    /// `Unreachable` when trying again may help (`retriable`), else `Refused`.
    #[must_use]
    pub fn sorted(retriable: bool, message: String) -> Self {
        if retriable {
            Self::Unreachable(message)
        } else {
            Self::Refused(message)
        }
    }

    /// What went wrong, whichever kind it was (for callers that do not wait).
    #[must_use]
    pub fn into_message(self) -> String {
        match self {
            Self::Unreachable(m) | Self::Refused(m) => m,
        }
    }
}

/// `WEIR_WAIT_TIMEOUT` (a duration such as `30s` or `5m`), read once.
///
/// # Panics
/// Never; a value that does not parse is reported once and the default used.
pub fn limit() -> Duration {
    static LIMIT: OnceLock<Duration> = OnceLock::new();
    *LIMIT.get_or_init(|| match std::env::var("WEIR_WAIT_TIMEOUT") {
        Err(_) => DEFAULT_LIMIT,
        Ok(v) => match v.parse::<weir_crds::Duration>() {
            Ok(d) => d.get(),
            Err(e) => {
                tracing::warn!(value = %v, error = %e, default = ?DEFAULT_LIMIT, "WEIR_WAIT_TIMEOUT is not a duration; using the default");
                DEFAULT_LIMIT
            }
        },
    })
}

/// Run `attempt` until it succeeds, is refused, or `limit` has passed since the first try.
/// `what` and `address` name the system in the log and in the error.
///
/// # Errors
/// The refusal, or the last failure once the limit has passed, with the attempts made.
pub async fn until_reached<T, F, Fut>(
    what: &str,
    address: &str,
    limit: Duration,
    mut attempt: F,
) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Attempt>>,
{
    let started = Instant::now();
    let mut pause = Duration::from_millis(200);
    for n in 1u32.. {
        match attempt().await {
            Ok(v) => {
                note(None);
                if n > 1 {
                    tracing::info!(
                        what,
                        address,
                        attempts = n,
                        waited_s = started.elapsed().as_secs(),
                        "reached after waiting"
                    );
                }
                return Ok(v);
            }
            Err(Attempt::Refused(e)) => {
                note(None);
                return Err(e);
            }
            Err(Attempt::Unreachable(e)) => {
                let waited = started.elapsed();
                if waited >= limit {
                    note(None);
                    return Err(format!(
                        "{e} (gave up after {n} attempts in {}s; WEIR_WAIT_TIMEOUT={}s)",
                        waited.as_secs(),
                        limit.as_secs()
                    ));
                }
                tracing::warn!(what, address, attempt = n, waited_s = waited.as_secs(), error = %e, "waiting for {what} at {address}");
                note(Some(format!(
                    "waiting for {what} at {address} (attempt {n}, {}s): {e}",
                    waited.as_secs()
                )));
                tokio::time::sleep(pause.min(limit.saturating_sub(waited))).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
    }
    unreachable!("the attempt counter does not overflow before the limit")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use std::cell::Cell;

    use super::*;

    #[tokio::test]
    async fn retries_until_reached_fails_at_once_when_refused_and_gives_up_at_the_limit() {
        let calls = Cell::new(0u32);
        let third = until_reached("thing", "host:1", Duration::from_secs(60), || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n < 3 {
                    Err(Attempt::Unreachable(format!("down {n}")))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(third, Ok(3));

        calls.set(0);
        let refused: Result<(), String> =
            until_reached("thing", "host:1", Duration::from_secs(60), || {
                calls.set(calls.get() + 1);
                async { Err(Attempt::Refused("no such topic".into())) }
            })
            .await;
        assert_eq!(refused, Err("no such topic".into()));
        assert_eq!(calls.get(), 1, "a refusal is not retried");

        calls.set(0);
        let t = Instant::now();
        let down: Result<(), String> =
            until_reached("thing", "host:1", Duration::from_millis(1500), || {
                calls.set(calls.get() + 1);
                async { Err(Attempt::Unreachable("connection refused".into())) }
            })
            .await;
        let e = down.unwrap_err();
        assert!(e.starts_with("connection refused (gave up after"), "{e}");
        assert!(t.elapsed() >= Duration::from_millis(1500));
        // 200 ms doubling: attempts at about 0, 0.2, 0.6, 1.4 and 1.5 s.
        assert!((3..=6).contains(&calls.get()), "{} attempts", calls.get());
    }
}
