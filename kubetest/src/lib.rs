//! Test support for Kubernetes-facing tests: a real kube-apiserver with its etcd on
//! loopback ([`envtest`]), a harness playing the kubelet for one namespace ([`kubelet`]),
//! and `helm template` of the chart ([`helm`]).
//!
//! It is its own crate rather than files that the operator's tests include from the
//! runtime's by path, so each suite compiles it once as a normal dependency and the
//! operator's tests never build the engine: nothing here depends on `weir-runtime` (the
//! kubelet starts the runtime as a binary the caller names).
//!
//! Test support panics on failure: a panic in a test is its failure report, so the
//! `expect`s here name what was being done.

pub mod envtest;
pub mod helm;
pub mod kubelet;
