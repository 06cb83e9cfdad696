//! Partition discovery off the read path.
//!
//! Asking the brokers for a topic's partition count blocks for as long as they take to
//! answer (up to [`METADATA_TIMEOUT`]). Done inside the source's poll, a broker that answers
//! metadata slowly (one under load, or just restarted) stalled the whole subtask: no records,
//! and barriers held back, so every checkpoint of the job took as long as the timeouts
//! added up. Here a thread of its own asks, with a client of its own, and the reader only
//! picks up the newest answer when there is one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::config::{METADATA_TIMEOUT, partition_count};

/// A running discovery thread; dropping it stops the thread (within a fraction of a second,
/// or when its current metadata request ends).
pub struct Discovery {
    counts: mpsc::Receiver<u32>,
    stop: Arc<AtomicBool>,
}

impl Discovery {
    /// Ask for `topic`'s partition count every `every`, with a client made from `cfg`.
    ///
    /// # Errors
    /// Bad client settings, or no thread to run on.
    pub fn start(
        cfg: &ClientConfig,
        bootstrap: &str,
        topic: &str,
        every: Duration,
    ) -> Result<Self, String> {
        let client: BaseConsumer = cfg
            .create()
            .map_err(|e| format!("partition discovery client settings: {e}"))?;
        let (tx, counts) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let (bootstrap, topic, stopped) = (bootstrap.to_string(), topic.to_string(), stop.clone());
        std::thread::Builder::new()
            .name("kafka-discovery".into())
            .spawn(move || {
                let step = Duration::from_millis(100).min(every);
                loop {
                    let mut waited = Duration::ZERO;
                    while waited < every {
                        if stopped.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(step);
                        waited += step;
                    }
                    match partition_count(client.client(), &bootstrap, &topic, METADATA_TIMEOUT) {
                        Ok(n) => {
                            if tx.send(n).is_err() {
                                return;
                            }
                        }
                        Err(a) => {
                            let e = a.into_message();
                            tracing::warn!(%topic, error = %e, "partition discovery failed; will retry");
                        }
                    }
                }
            })
            .map_err(|e| format!("partition discovery thread: {e}"))?;
        Ok(Self { counts, stop })
    }

    /// The newest partition count answered since the last call, if any.
    #[must_use]
    pub fn latest(&self) -> Option<u32> {
        self.counts.try_iter().max()
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
