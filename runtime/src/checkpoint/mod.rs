//! The checkpoint protocol, in one place (aligned barriers, as in Chandy–Lamport and Flink).
//!
//! ```text
//!  coordinator            source subtasks        keyed subtasks            sink side
//!  ───────────            ───────────────        ──────────────            ─────────
//!  trigger(n) ──────────► record split offsets
//!                         forward barrier n ───► align: block each input
//!                                                that delivered n until all
//!                                                have; snapshot state;
//!                                                forward barrier n ───────► pre_commit()
//!             ◄── ack(n, state uploaded off the hot path, committables) ── (every subtask)
//!  all acks ─► check generation (fencing)
//!           ─► create chk-n/_metadata if absent   ◄── THE COMMIT POINT
//!           ─► commit(n) to every subtask ─────────────────────────────► commit()
//!           ─► retention: delete completed checkpoints beyond `retained`
//! ```
//!
//! Modules: [`startup`] (where a new incarnation starts: restore point, generation claim,
//! commit-phase recovery inputs), [`barrier`] (what travels), [`align`] (pure: when to snapshot),
//! [`layout`] (the only place that formats storage paths), [`metadata`] (`_metadata` and
//! state-file encoding with checksums), [`fencing`] (generation claims), [`restore`] (which
//! checkpoint to load, skipping corrupt ones), [`retention`] (pure: what to delete),
//! [`schedule`] (pure: when to trigger, abandon or wait), [`messages`] (what the coordinator
//! and tasks tell each other), [`snapshot`] (a subtask's state on its way to storage),
//! [`parts`] (keyed state too large for memory, stored and read in parts),
//! [`progress`] (what the coordinator reports, for status and metrics to show), [`state`]
//! (what a checkpoint stores per subtask),
//! [`coordinator`] (the I/O shell that triggers, collects, commits).

pub mod align;
pub mod barrier;
pub mod compat;
pub mod coordinator;
pub mod fencing;
pub mod layout;
pub mod messages;
pub mod metadata;
pub mod parts;
pub mod progress;
pub mod restore;
pub mod retention;
pub mod schedule;
pub mod shared_tables;
pub mod snapshot;
pub mod startup;
pub mod state;

pub use barrier::{Barrier, BarrierKind};
