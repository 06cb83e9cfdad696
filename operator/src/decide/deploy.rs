//! Starting and removing incarnations: the first deploy, a resume from `Suspended`, a
//! redeploy after `Failed`, and the two primitives every other decision uses to start the
//! next incarnation (all its pods) or remove every pod.

use weir_crds::{DesiredState, LifecycleState, StartPoint};

use super::{Action, Facts, POLL, SHORT, Step, pods_of, spec_json};
use crate::events::Reason;

/// Pods still exist after asking them to go: the caller waits for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pods {
    /// No pod of the job exists, not even a terminating one.
    Gone,
    /// Some are still there (deletion was asked for those not already going).
    Remaining,
}

/// The first pass that finds the job valid: deploy it (or record it suspended).
pub(crate) fn first(f: &Facts<'_>, s: &mut Step) {
    let spec = &f.job.spec;
    if spec.state == DesiredState::Suspended {
        s.st.lifecycle_state = LifecycleState::Suspended;
        return;
    }
    s.st.last_reconciled_spec = Some(spec_json(&f.target));
    s.st.observed_restart_nonce = spec.restart_nonce;
    s.st.observed_savepoint_trigger_nonce = spec.savepoint_trigger_nonce;
    s.st.start = spec.initial_savepoint_path.clone().map(|from| StartPoint {
        id: f.start_id(&s.st),
        from: Some(from),
    });
    let from =
        s.st.start
            .as_ref()
            .and_then(|p| p.from.clone())
            .unwrap_or_else(|| "empty state (or the newest checkpoint in storage)".into());
    s.event(
        Reason::Deploying,
        format!(
            "first deploy at parallelism {}{} from {from}",
            spec.parallelism,
            on_pods(spec.pods)
        ),
    );
    create_pod(f, s);
}

/// ` on N pods` for a job of several pods, nothing for one (its messages stay as they were).
pub(crate) fn on_pods(pods: u32) -> String {
    if pods > 1 {
        format!(" on {pods} pods")
    } else {
        String::new()
    }
}

/// Start the next incarnation from the reconciled spec: all of its `spec.pods` pods at once
/// (a pod waits for the others to join, so starting them one by one gains nothing). The
/// callers start one only when no pod of the job is left.
pub(crate) fn create_pod(f: &Facts<'_>, s: &mut Step) {
    s.st.incarnation += 1;
    s.st.incarnation_started_at = Some(f.now_time());
    s.st.running_since = None;
    s.st.pending_savepoint = None;
    // The reconciled spec's image: a heal (same reconciled spec) starts the image that ran
    // before, whatever the operator's default is now.
    s.st.deployed_image = Some(
        s.reconciled()
            .and_then(|spec| spec.image)
            .or_else(|| s.st.deployed_image.clone())
            .unwrap_or_else(|| f.settings.default_image.clone()),
    );
    s.st.lifecycle_state = match s.st.operation {
        Some(_) => LifecycleState::Upgrading,
        None => LifecycleState::Deploying,
    };
    s.actions.push(Action::EnsureConfig);
    for index in 0..pods_of(&s.st) {
        s.actions.push(Action::CreatePod {
            incarnation: s.st.incarnation,
            index,
        });
    }
    s.requeue = SHORT;
}

/// Delete every pod that is not already going.
pub(crate) fn delete_all_pods(f: &Facts<'_>, s: &mut Step) -> Pods {
    for p in &f.obs.pods {
        if !p.deleting {
            s.actions.push(Action::DeletePod {
                name: p.name.clone(),
            });
        }
    }
    if f.obs.pods.is_empty() {
        Pods::Gone
    } else {
        Pods::Remaining
    }
}

/// Keep a suspended job without pods; resume it when `state: running` comes back.
pub(crate) fn while_suspended(f: &Facts<'_>, s: &mut Step) {
    if delete_all_pods(f, s) == Pods::Remaining {
        s.requeue = SHORT;
        return;
    }
    if f.job.spec.state == DesiredState::Suspended {
        return;
    }
    // Resume from where the suspend left the job (its savepoint, its newest checkpoint, or
    // empty state; see `operation::stopping`), with the spec as it is now: changes made while
    // suspended take effect on resume, a new default image too (nothing ran to upgrade, so
    // the event says it).
    let image_change = match s.reconciled().and_then(|spec| spec.image) {
        Some(old) if Some(&old) != f.target.image.as_ref() => format!(
            "; image changed from {old} to {}",
            f.target.image.as_deref().unwrap_or_default()
        ),
        _ => String::new(),
    };
    s.st.last_reconciled_spec = Some(spec_json(&f.target));
    s.st.observed_restart_nonce = f.job.spec.restart_nonce;
    let from = match &s.st.start {
        Some(p) => p.from.clone().unwrap_or_else(|| "empty state".into()),
        None => "the newest checkpoint".into(),
    };
    s.event(
        Reason::Resumed,
        format!("resuming from {from}{image_change}"),
    );
    create_pod(f, s);
}

/// A failed or finished job stays so until the user changes the spec or the restart nonce.
pub(crate) fn while_failed(f: &Facts<'_>, s: &mut Step) {
    // A new operator default image alone does not bring back a job that failed or finished:
    // that waits for the user, and then takes the new default.
    let mut wanted = f.target.clone();
    if f.job.spec.image.is_none()
        && let Some(old) = s.reconciled()
    {
        wanted.image = old.image;
    }
    let retry = s.st.last_reconciled_spec.as_deref() != Some(spec_json(&wanted).as_str())
        || f.job.spec.restart_nonce != s.st.observed_restart_nonce;
    if !retry {
        s.requeue = POLL * 6;
        return;
    }
    if delete_all_pods(f, s) == Pods::Remaining {
        s.requeue = SHORT;
        return;
    }
    // Restarted by the user: the budget starts over, state comes from the newest checkpoint
    // of the lineage (the runtime finds it).
    s.st.restarts.recent.clear();
    s.st.restarts.last_failure_at = None;
    s.st.observed_restart_nonce = f.job.spec.restart_nonce;
    s.st.last_reconciled_spec = Some(spec_json(&f.target));
    let mut message = "redeploying after Failed: spec or restartNonce changed".to_string();
    if f.target.checkpoint.skip_unreadable {
        message.push_str(
            "; checkpoint.skipUnreadable is set: an unreadable newest checkpoint is passed over \
             for an older one, and output committed after that one may be written again",
        );
    }
    s.event(Reason::Deploying, message);
    create_pod(f, s);
}
