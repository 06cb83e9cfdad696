//! Suspend and resume: the stop follows `upgradeMode`, and resuming starts from what the stop
//! left, with the spec and the operator's default image as they are by then.

use weir_crds::{
    DesiredState, LifecycleState, OperationKind, OperationPhase, SavepointTrigger, StopMode,
    UpgradeMode,
};

use super::fixture::*;
use crate::events::Reason;

const SAVEPOINT: &str = "s3://b/sp-7";

/// A suspend and resume in one upgrade mode.
struct Suspend {
    what: &'static str,
    mode: UpgradeMode,
    /// Happens while the job is suspended.
    meanwhile: fn(&mut Fx),
    /// Where the suspend leaves the job, and so where resuming starts it.
    start: Start,
    /// In the `Resumed` event.
    resumed: &'static str,
    /// The image the resumed pod runs.
    image: &'static str,
}

#[test]
fn suspend_stops_as_the_upgrade_mode_says_and_resume_starts_from_there() {
    let rows = [
        Suspend {
            what: "savepoint mode",
            mode: UpgradeMode::Savepoint,
            meanwhile: |_| {},
            start: Start::From(SAVEPOINT),
            resumed: "resuming from s3://b/sp-7",
            image: "weir-runtime:test",
        },
        Suspend {
            what: "savepoint mode, the default image changes while suspended",
            mode: UpgradeMode::Savepoint,
            meanwhile: |fx| fx.default_image("weir-runtime:2"),
            start: Start::From(SAVEPOINT),
            resumed: "image changed from weir-runtime:test to weir-runtime:2",
            image: "weir-runtime:2",
        },
        Suspend {
            what: "last-state mode: a final checkpoint, the lineage goes on",
            mode: UpgradeMode::LastState,
            meanwhile: |_| {},
            start: Start::Newest,
            resumed: "resuming from the newest checkpoint",
            image: "weir-runtime:test",
        },
        Suspend {
            what: "stateless mode: resuming starts empty",
            mode: UpgradeMode::Stateless,
            meanwhile: |_| {},
            start: Start::Empty,
            resumed: "resuming from empty state",
            image: "weir-runtime:test",
        },
    ];
    for r in rows {
        let step = |s: &str| format!("{}: {s}", r.what);
        let mut fx = Fx::running().spec(|s| {
            s.upgrade_mode = r.mode;
            s.state = DesiredState::Suspended;
        });
        let (stop, how) = match r.mode {
            UpgradeMode::Savepoint => (stop_with_savepoint(1), StopMode::Savepoint),
            UpgradeMode::LastState => (delete_pod(1), StopMode::Checkpoint),
            UpgradeMode::Stateless => (delete_pod(1), StopMode::Stateless),
        };
        let suspending = Has::Operation(OperationKind::Suspend, OperationPhase::Stopping, how);
        fx.expect(
            &step("stop"),
            10,
            &[stop],
            LifecycleState::Running,
            &[],
            &[suspending],
        );
        if how == StopMode::Savepoint {
            fx.exited_with_savepoint(1, SAVEPOINT);
            fx.expect(
                &step("savepoint taken"),
                20,
                &[delete_pod(1)],
                LifecycleState::Running,
                &[Reason::SavepointCompleted],
                &[Has::Savepoints(&[(SAVEPOINT, SavepointTrigger::Suspend)])],
            );
        }
        fx.no_pods();
        fx.expect(
            &step("pods gone"),
            22,
            &[],
            LifecycleState::Suspended,
            &[Reason::Suspended],
            &[Has::Start(r.start), Has::NoOperation],
        );
        (r.meanwhile)(&mut fx);
        fx.expect(
            &step("stays suspended, nothing runs to upgrade"),
            100,
            &[],
            LifecycleState::Suspended,
            &[],
            &[],
        );
        let mut fx = fx.spec(|s| s.state = DesiredState::Running);
        fx.expect(
            &step("resumed"),
            200,
            &new_pod(2),
            LifecycleState::Deploying,
            &[Reason::Resumed],
            &[
                Has::Says(r.resumed),
                Has::Start(r.start),
                Has::Image(r.image),
            ],
        );
    }
}
