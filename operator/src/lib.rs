//! The Weir operator: turns `StreamJob`s into runtime pods and keeps its promises when things
//! go wrong.
//!
//! One reconcile is observe -> decide -> act:
//!
//! ```text
//! controller (watch StreamJobs, owned Pods/ConfigMaps/Services)
//!   └─ reconcile ── observe (pods, runtime GET /v1/job, Secrets)
//!                ├─ decide  (pure: spec + status + observed + now -> status, actions, events)
//!                ├─ act     (pods, ConfigMap/Service by server-side apply, runtime stop/savepoint)
//!                └─ events + status (server-side apply, only when changed)
//! ```
//!
//! - [`decide`] holds every decision and is tested as tables;
//! - [`pods`] builds the owned objects (security context, Secret references);
//! - [`reconcile`] is the shell; [`controller`] the wiring; [`leader`] the Lease election;
//! - [`network_policy`] writes the NetworkPolicy that keeps other pods off a job's ports;
//! - [`rbac`] lists every permission the operator uses (the chart's Roles follow it);
//! - [`console`] is the web console (job list, job pages, actions checked against the
//!   person's own Kubernetes rights);
//! - [`watched`] decodes each watched StreamJob on its own, so one the operator cannot read
//!   is refused by name instead of stopping the watch.

pub mod act;
pub mod claims;
pub mod console;
pub mod context;
pub mod controller;
pub mod decide;
pub mod dispose;
pub mod error;
pub mod events;
pub mod leader;
pub mod metrics;
pub mod network_policy;
pub mod observe;
pub mod pods;
pub mod rbac;
pub mod reconcile;
pub mod runtime_client;
pub mod tls;
pub mod watched;
pub mod written;
