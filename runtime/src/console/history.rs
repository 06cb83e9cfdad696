//! The last hour of throughput, lag and checkpoint duration, for the console's charts.
//!
//! A sample every [`EVERY`] reads three numbers the job keeps anyway (a counter, the lag map,
//! the last checkpoint), so the history costs nothing measurable whether or not anyone
//! looks; a browser that opens the page gets the hour at once instead of an empty chart.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;

use crate::control::metrics::Metrics;
use crate::control::status::JobReport;

/// Time between samples.
pub const EVERY: Duration = Duration::from_secs(5);
/// Samples kept: one hour.
const KEPT: usize = 720;

/// One sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    /// When, ms since epoch.
    pub at_ms: i64,
    /// Source records per second since the sample before.
    pub records_per_s: f64,
    /// Records behind the sources' ends, summed over partitions.
    pub lag: i64,
    /// Duration of the newest completed checkpoint, ms.
    pub checkpoint_ms: Option<u64>,
}

/// The samples, oldest first.
#[derive(Debug, Default)]
pub struct History {
    points: Mutex<VecDeque<Point>>,
}

impl History {
    /// Every sample kept, oldest first.
    #[must_use]
    pub fn points(&self) -> Vec<Point> {
        self.points
            .lock()
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default()
    }

    fn push(&self, p: Point) {
        if let Ok(mut points) = self.points.lock() {
            if points.len() == KEPT {
                points.pop_front();
            }
            points.push_back(p);
        }
    }

    /// Sample `metrics` and `status` every [`EVERY`] until the process ends.
    pub fn record(
        self: Arc<Self>,
        metrics: Arc<Metrics>,
        status: Arc<RwLock<JobReport>>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last: Option<(std::time::Instant, u64)> = None;
            loop {
                tick.tick().await;
                let now = std::time::Instant::now();
                let records = metrics.records_out("source");
                let records_per_s = last.map_or(0.0, |(then, n)| {
                    rate(records.saturating_sub(n), now.duration_since(then))
                });
                last = Some((now, records));
                let checkpoint_ms = status
                    .read()
                    .ok()
                    .and_then(|s| s.last_checkpoint.as_ref().and_then(|c| c.duration_ms));
                self.push(Point {
                    at_ms: crate::ids::now_millis(),
                    records_per_s,
                    lag: metrics.source_lags().iter().map(|(_, _, l)| *l).sum(),
                    checkpoint_ms,
                });
            }
        })
    }
}

/// `n` per second over `over`.
#[must_use]
pub fn rate(n: u64, over: Duration) -> f64 {
    let secs = over.as_secs_f64();
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_keeps_the_last_hour_oldest_first() {
        let h = History::default();
        for i in 0..(KEPT as i64 + 5) {
            h.push(Point {
                at_ms: i,
                records_per_s: 0.0,
                lag: 0,
                checkpoint_ms: None,
            });
        }
        let p = h.points();
        assert_eq!(p.len(), KEPT);
        assert_eq!(p.first().map(|p| p.at_ms), Some(5));
        assert_eq!(p.last().map(|p| p.at_ms), Some(KEPT as i64 + 4));
    }

    #[test]
    fn a_rate_over_no_time_is_zero() {
        assert_eq!(rate(10, Duration::ZERO), 0.0);
        assert_eq!(rate(10, Duration::from_secs(2)), 5.0);
    }
}
