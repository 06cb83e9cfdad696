//! Decision tables. [`decide`](super::decide) is a pure function of the job, what is observed
//! and the time, so each transition is a row: a fixture, one decision, and everything that
//! decision must show (actions, lifecycle state and events exactly, plus the facts the row
//! names). Stories whose steps depend on each other (a rollback, a savepoint that cannot be
//! taken) stay scripts, built from the same fixture steps and checks.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod changes;
mod deletion;
mod deploy;
mod fixture;
mod healing;
mod pods;
mod savepoints;
mod suspend;
mod upgrades;
