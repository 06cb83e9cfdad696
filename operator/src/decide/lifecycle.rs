//! Conditions: `Ready`, `Progressing` and `Degraded`, derived from the lifecycle state and
//! the operation in flight, so they can never disagree with it.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use weir_crds::{LifecycleState, OperationKind, StreamJobStatus};

/// Reason of the `Ready=False` condition while the spec is invalid.
pub(crate) const INVALID_SPEC: &str = "InvalidSpec";

/// Marks the spec invalid; returns whether it was not already marked with this message.
pub(crate) fn mark_invalid(st: &mut StreamJobStatus, message: &str) -> bool {
    let same = st
        .conditions
        .iter()
        .any(|c| c.type_ == "SpecValid" && c.status == "False" && c.message == message);
    upsert(
        st,
        "SpecValid",
        false,
        INVALID_SPEC,
        message,
        Timestamp::UNIX_EPOCH,
    );
    !same
}

/// The spec is valid again.
pub(crate) fn clear_invalid(st: &mut StreamJobStatus) {
    st.conditions.retain(|c| c.type_ != "SpecValid");
}

fn invalid_message(st: &StreamJobStatus) -> Option<String> {
    st.conditions
        .iter()
        .find(|c| c.type_ == "SpecValid" && c.status == "False")
        .map(|c| c.message.clone())
}

/// Recompute `Ready`, `Progressing` and `Degraded` from the state. Transition times only
/// move when a condition's status changes, so an unchanged job writes an unchanged status.
pub(crate) fn set_conditions(st: &mut StreamJobStatus, now: Timestamp) {
    let invalid = invalid_message(st);
    let op = st.operation.clone();
    let waiting = op.as_ref().and_then(|o| o.waiting.clone());
    let (ready, ready_reason, ready_msg) = match (&invalid, st.lifecycle_state) {
        (Some(m), LifecycleState::Created) => (false, INVALID_SPEC.to_string(), m.clone()),
        (_, LifecycleState::Running) => (
            true,
            "Running".to_string(),
            "the runtime is processing".to_string(),
        ),
        (_, LifecycleState::Failed) => (
            false,
            "Failed".to_string(),
            st.restarts
                .last_reason
                .clone()
                .unwrap_or_else(|| "failed".into()),
        ),
        (_, s) => (
            false,
            s.as_str().to_string(),
            format!("job is {}", s.as_str()),
        ),
    };
    upsert(st, "Ready", ready, &ready_reason, &ready_msg, now);

    let (progressing, p_reason, p_msg) = match (&invalid, &op, &waiting) {
        (Some(m), _, _) if st.lifecycle_state != LifecycleState::Created => (
            false,
            INVALID_SPEC.to_string(),
            format!("the new spec is not deployed: {m}"),
        ),
        (_, Some(o), Some(w)) => (false, format!("{:?}Waiting", o.kind), w.clone()),
        (_, Some(o), None) => (
            true,
            format!("{:?}InProgress", o.kind),
            format!("{:?} in phase {:?}", o.kind, o.phase).to_lowercase(),
        ),
        _ if st.lifecycle_state == LifecycleState::Deploying => (
            true,
            "Deploying".to_string(),
            "pods are starting".to_string(),
        ),
        _ => (
            false,
            "Stable".to_string(),
            "no change in progress".to_string(),
        ),
    };
    upsert(st, "Progressing", progressing, &p_reason, &p_msg, now);

    let restarting = st.lifecycle_state == LifecycleState::Deploying && st.restarts.count > 0;
    let rolled_back = matches!(&op, Some(o) if o.kind == OperationKind::Rollback);
    let (degraded, d_reason, d_msg) = if st.lifecycle_state == LifecycleState::Failed {
        (true, "Failed".to_string(), ready_msg.clone())
    } else if rolled_back {
        (
            true,
            "RollingBack".to_string(),
            "upgrade failed; rolling back".to_string(),
        )
    } else if restarting {
        (
            true,
            "Restarting".to_string(),
            st.restarts.last_reason.clone().unwrap_or_default(),
        )
    } else {
        (false, "Healthy".to_string(), "no failure".to_string())
    };
    upsert(st, "Degraded", degraded, &d_reason, &d_msg, now);
}

fn upsert(
    st: &mut StreamJobStatus,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let observed_generation = st.observed_generation;
    if let Some(c) = st.conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status {
            c.last_transition_time = Time(now);
        }
        c.status = status;
        c.reason = reason.to_string();
        c.message = message.to_string();
        c.observed_generation = observed_generation;
    } else {
        st.conditions.push(Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message: message.to_string(),
            last_transition_time: Time(now),
            observed_generation,
        });
    }
}
