//! Leader election through a `coordination.k8s.io/v1` Lease, so the chart can run two
//! replicas: only the holder reconciles. A replica that cannot renew in time stops (and is
//! restarted by its Deployment) rather than risk two writers.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};

/// How long a lease is valid without renewal.
pub const LEASE_SECONDS: i32 = 15;
/// How often the holder renews.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);

/// Lease settings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// Lease name.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
}

/// What a look at the lease decided. Pure, so it is table-tested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseDecision {
    /// No lease yet: create it.
    Create,
    /// Ours, or expired: take or renew it.
    Take,
    /// Someone else holds a live lease.
    Wait,
}

/// Decide from the lease as read. Performs no I/O.
#[must_use]
pub fn decide(lease: Option<&Lease>, me: &str, now: jiff::Timestamp) -> LeaseDecision {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
        return if lease.is_some() {
            LeaseDecision::Take
        } else {
            LeaseDecision::Create
        };
    };
    if spec.holder_identity.as_deref() == Some(me) {
        return LeaseDecision::Take;
    }
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS));
    let expired = spec
        .renew_time
        .as_ref()
        .is_none_or(|t| now.duration_since(t.0).as_secs() > duration);
    if expired || spec.holder_identity.is_none() {
        LeaseDecision::Take
    } else {
        LeaseDecision::Wait
    }
}

fn lease_spec(previous: Option<&LeaseSpec>, me: &str, now: jiff::Timestamp) -> LeaseSpec {
    let changed = previous.and_then(|p| p.holder_identity.as_deref()) != Some(me);
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(LEASE_SECONDS),
        acquire_time: if changed {
            Some(MicroTime(now))
        } else {
            previous.and_then(|p| p.acquire_time.clone())
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if changed {
            transitions + 1
        } else {
            transitions
        }),
        ..LeaseSpec::default()
    }
}

/// One attempt to take or renew the lease; whether we hold it afterwards.
///
/// # Errors
/// API errors other than a lost race.
pub async fn try_acquire(client: &Client, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let now = jiff::Timestamp::now();
    let current = api.get_opt(&cfg.name).await?;
    let result = match decide(current.as_ref(), &cfg.identity, now) {
        LeaseDecision::Wait => return Ok(false),
        LeaseDecision::Create => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(lease_spec(None, &cfg.identity, now)),
            };
            api.create(&PostParams::default(), &lease).await.map(|_| ())
        }
        LeaseDecision::Take => {
            let mut lease = current.unwrap_or_default();
            lease.spec = Some(lease_spec(lease.spec.as_ref(), &cfg.identity, now));
            // replace carries resourceVersion: a concurrent writer makes this fail with 409.
            api.replace(&cfg.name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
    };
    match result {
        Ok(()) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waits until this replica holds the lease.
pub async fn acquire(client: &Client, cfg: &LeaseConfig) {
    loop {
        match try_acquire(client, cfg).await {
            Ok(true) => {
                tracing::info!(lease = %cfg.name, identity = %cfg.identity, "became leader");
                return;
            }
            Ok(false) => tracing::debug!(lease = %cfg.name, "another replica leads; waiting"),
            Err(e) => tracing::warn!(error = %e, "lease not readable; retrying"),
        }
        tokio::time::sleep(RENEW_EVERY).await;
    }
}

/// Renews the lease until it is lost; returns when it is.
pub async fn hold(client: &Client, cfg: &LeaseConfig) {
    let mut last_ok = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        match try_acquire(client, cfg).await {
            Ok(true) => last_ok = tokio::time::Instant::now(),
            Ok(false) => {
                tracing::error!(lease = %cfg.name, "leadership lost to another replica");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "lease renewal failed");
                if last_ok.elapsed()
                    > Duration::from_secs(u64::try_from(LEASE_SECONDS).unwrap_or(15))
                {
                    tracing::error!(lease = %cfg.name, "lease expired without renewal");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use super::*;

    fn lease(holder: Option<&str>, renewed_secs_ago: i64, now: jiff::Timestamp) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(
                    now - jiff::SignedDuration::from_secs(renewed_secs_ago),
                )),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn lease_decisions() {
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let cases = [
            (None, LeaseDecision::Create),
            (Some(lease(Some("a"), 3, now)), LeaseDecision::Take),
            (Some(lease(Some("b"), 3, now)), LeaseDecision::Wait),
            (Some(lease(Some("b"), 30, now)), LeaseDecision::Take),
            (Some(lease(None, 1, now)), LeaseDecision::Take),
        ];
        for (l, expected) in cases {
            assert_eq!(decide(l.as_ref(), "a", now), expected, "{l:?}");
        }
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_does_not() {
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let theirs = lease_spec(None, "b", now);
        let mine = lease_spec(Some(&theirs), "a", now);
        assert_eq!(mine.lease_transitions, Some(2));
        let renewed = lease_spec(Some(&mine), "a", now);
        assert_eq!(renewed.lease_transitions, Some(2));
        assert_eq!(renewed.acquire_time, mine.acquire_time);
    }
}
