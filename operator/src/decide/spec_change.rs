//! Classifying a spec change: each field has a class and a change is the largest class among
//! the fields that differ (as the Flink operator tags spec fields with a diff type).
//!
//! Every field of [`StreamJobSpec`] and of its checkpoint block is named below, in patterns
//! without `..`: a field added to the spec does not compile until it is given a class here,
//! so no change can be ignored by omission (a pod template edit once waited, unseen, for the
//! next crash to take effect).

use weir_crds::{JobCheckpointSpec, StreamJobSpec};

/// How much a spec change needs. Ordered: the maximum over changed fields wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SpecChange {
    /// Nothing for the pods to do (nonces, policies the operator reads, `upgradeMode`).
    Ignore,
    /// The pods restart from their newest checkpoint whatever the upgrade mode: state stays
    /// compatible (resources, Secrets, checkpoint timing, the pod template, logging).
    Restart,
    /// The job changes (pipeline, parallelism, pods, image, storage): it goes through
    /// `upgradeMode`.
    Upgrade,
}

/// The changed fields with their classes, in spec order.
struct Changes(Vec<(SpecChange, &'static str)>);

impl Changes {
    /// Records `name` when it changed and the pods must do something about it.
    fn field<T: PartialEq>(&mut self, name: &'static str, old: &T, new: &T, class: SpecChange) {
        if old != new && class != SpecChange::Ignore {
            self.0.push((class, name));
        }
    }
}

/// The class of the change from `old` to `new`, and the names of the fields that decided it.
/// Performs no I/O.
#[must_use]
pub fn classify(old: &StreamJobSpec, new: &StreamJobSpec) -> (SpecChange, Vec<&'static str>) {
    use SpecChange::{Ignore, Restart, Upgrade};
    let StreamJobSpec {
        image,
        parallelism,
        pods,
        max_parallelism,
        state,
        upgrade_mode,
        restart_nonce,
        savepoint_trigger_nonce,
        initial_savepoint_path,
        allow_non_restored_state,
        drop_state,
        savepoint_on_delete,
        checkpoint,
        state_backend,
        savepoint,
        restart,
        upgrade,
        resources,
        service_account_name,
        image_pull_secrets,
        logging,
        pod_template,
        secret_env,
        pipeline,
    } = old;
    let mut c = Changes(Vec::new());
    c.field("image", image, &new.image, Upgrade);
    c.field("parallelism", parallelism, &new.parallelism, Upgrade);
    // A rescale like `parallelism`: the pods stop (with a savepoint in `savepoint` mode) and
    // every pod of the new layout restores its slice of the key groups from it.
    c.field("pods", pods, &new.pods, Upgrade);
    c.field(
        "maxParallelism",
        max_parallelism,
        &new.max_parallelism,
        Upgrade,
    );
    // Read by the operator, not the pods.
    c.field("state", state, &new.state, Ignore);
    c.field("upgradeMode", upgrade_mode, &new.upgrade_mode, Ignore);
    c.field("restartNonce", restart_nonce, &new.restart_nonce, Ignore);
    c.field(
        "savepointTriggerNonce",
        savepoint_trigger_nonce,
        &new.savepoint_trigger_nonce,
        Ignore,
    );
    // Used on the first deploy only.
    c.field(
        "initialSavepointPath",
        initial_savepoint_path,
        &new.initial_savepoint_path,
        Ignore,
    );
    c.field(
        "allowNonRestoredState",
        allow_non_restored_state,
        &new.allow_non_restored_state,
        Upgrade,
    );
    // Like allowNonRestoredState: read when the pods restore, so the next start must see it.
    c.field("dropState", drop_state, &new.drop_state, Upgrade);
    c.field(
        "savepointOnDelete",
        savepoint_on_delete,
        &new.savepoint_on_delete,
        Ignore,
    );
    checkpoint_fields(&mut c, checkpoint, &new.checkpoint);
    // The pods open their stores at start. Moving between backends needs a savepoint (the
    // one format both read); a `last-state` restore of disk state into memory is refused by
    // name, never misread.
    c.field("stateBackend", state_backend, &new.state_backend, Upgrade);
    c.field("savepoint", savepoint, &new.savepoint, Ignore);
    c.field("restart", restart, &new.restart, Ignore);
    c.field("upgrade", upgrade, &new.upgrade, Ignore);
    c.field("resources", resources, &new.resources, Restart);
    // What the pods are made of: each lands in a new pod, so the pods restart now instead of
    // picking the change up at the next crash.
    c.field(
        "serviceAccountName",
        service_account_name,
        &new.service_account_name,
        Restart,
    );
    c.field(
        "imagePullSecrets",
        image_pull_secrets,
        &new.image_pull_secrets,
        Restart,
    );
    c.field("logging", logging, &new.logging, Restart);
    c.field("podTemplate", pod_template, &new.pod_template, Restart);
    c.field("secretEnv", secret_env, &new.secret_env, Restart);
    c.field("pipeline", pipeline, &new.pipeline, Upgrade);

    let class = c.0.iter().map(|(c, _)| *c).max().unwrap_or(Ignore);
    let names =
        c.0.into_iter()
            .filter(|(c, _)| *c == class)
            .map(|(_, n)| n)
            .collect();
    (class, names)
}

fn checkpoint_fields(c: &mut Changes, old: &JobCheckpointSpec, new: &JobCheckpointSpec) {
    use SpecChange::{Ignore, Restart, Upgrade};
    let JobCheckpointSpec {
        interval,
        timeout,
        min_pause,
        storage,
        retained,
        s3,
        cloud,
        exactly_once,
        progress_timeout,
        skip_unreadable,
    } = old;
    c.field("checkpoint.interval", interval, &new.interval, Restart);
    c.field("checkpoint.timeout", timeout, &new.timeout, Restart);
    c.field("checkpoint.minPause", min_pause, &new.min_pause, Restart);
    c.field("checkpoint.storage", storage, &new.storage, Upgrade);
    c.field("checkpoint.retained", retained, &new.retained, Restart);
    c.field("checkpoint.s3", s3, &new.s3, Upgrade);
    // Only credentials: the pods read them at start.
    c.field("checkpoint.cloud", cloud, &new.cloud, Restart);
    c.field(
        "checkpoint.exactlyOnce",
        exactly_once,
        &new.exactly_once,
        Upgrade,
    );
    // Read by the operator (when to restart a job that makes no progress).
    c.field(
        "checkpoint.progressTimeout",
        progress_timeout,
        &new.progress_timeout,
        Ignore,
    );
    // Passed to the pods at their next start: restart them so it takes effect (and the
    // event records the user's choice).
    c.field(
        "checkpoint.skipUnreadable",
        skip_unreadable,
        &new.skip_unreadable,
        Restart,
    );
}
