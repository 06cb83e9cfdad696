//! Classifying a spec change: each field has a class and a change is the largest class among
//! the fields that differ (as the Flink operator tags spec fields with a diff type).

use weir_crds::StreamJobSpec;

/// How much a spec change needs. Ordered: the maximum over changed fields wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SpecChange {
    /// Nothing for the pods to do (nonces, policies the operator reads, `upgradeMode`).
    Ignore,
    /// The pods restart from their newest checkpoint whatever the upgrade mode: state stays
    /// compatible (resources, Secrets, checkpoint timing).
    Restart,
    /// The job changes (pipeline, parallelism, pods, image, storage): it goes through
    /// `upgradeMode`.
    Upgrade,
}

/// The class of the change from `old` to `new`, and the names of the fields that decided it.
/// Performs no I/O.
#[must_use]
pub fn classify(old: &StreamJobSpec, new: &StreamJobSpec) -> (SpecChange, Vec<&'static str>) {
    let mut fields: Vec<(SpecChange, &'static str)> = Vec::new();
    let mut check = |changed: bool, class, name| {
        if changed {
            fields.push((class, name));
        }
    };
    let (o, n) = (old, new);
    let (oc, nc) = (&o.checkpoint, &n.checkpoint);
    check(o.image != n.image, SpecChange::Upgrade, "image");
    check(
        o.parallelism != n.parallelism,
        SpecChange::Upgrade,
        "parallelism",
    );
    // A rescale like `parallelism`: the pods stop (with a savepoint in `savepoint` mode) and
    // every pod of the new layout restores its slice of the key groups from it.
    check(o.pods != n.pods, SpecChange::Upgrade, "pods");
    check(
        o.max_parallelism != n.max_parallelism,
        SpecChange::Upgrade,
        "maxParallelism",
    );
    check(o.pipeline != n.pipeline, SpecChange::Upgrade, "pipeline");
    check(
        o.allow_non_restored_state != n.allow_non_restored_state,
        SpecChange::Upgrade,
        "allowNonRestoredState",
    );
    check(
        oc.storage != nc.storage,
        SpecChange::Upgrade,
        "checkpoint.storage",
    );
    check(oc.s3 != nc.s3, SpecChange::Upgrade, "checkpoint.s3");
    check(
        oc.exactly_once != nc.exactly_once,
        SpecChange::Upgrade,
        "checkpoint.exactlyOnce",
    );
    check(o.resources != n.resources, SpecChange::Restart, "resources");
    check(
        o.secret_env != n.secret_env,
        SpecChange::Restart,
        "secretEnv",
    );
    check(
        oc.interval != nc.interval,
        SpecChange::Restart,
        "checkpoint.interval",
    );
    check(
        oc.timeout != nc.timeout,
        SpecChange::Restart,
        "checkpoint.timeout",
    );
    check(
        oc.min_pause != nc.min_pause,
        SpecChange::Restart,
        "checkpoint.minPause",
    );
    check(
        oc.retained != nc.retained,
        SpecChange::Restart,
        "checkpoint.retained",
    );
    // Read by the operator, not the pods: state, upgradeMode, nonces, initialSavepointPath
    // (first deploy only), savepointOnDelete, savepoint, restart and upgrade policies,
    // checkpoint.progressTimeout.
    let class = fields
        .iter()
        .map(|(c, _)| *c)
        .max()
        .unwrap_or(SpecChange::Ignore);
    let names = fields
        .into_iter()
        .filter(|(c, _)| *c == class)
        .map(|(_, n)| n)
        .collect();
    (class, names)
}
