//! The lifecycle of allocations on Kubernetes: which are leaked, and why.
//!
//! An address leaks when its Pod goes away without a CNI DEL reaching the plugin (a node
//! crashed, a Pod was force-deleted, a kubelet lost the DEL, a node was removed); containerd
//! never sends the CNI GC verb, so on most clusters nothing else finds them. [`leak`] holds
//! the rules, judged on one snapshot of the cluster's Pods and Nodes
//! ([`ipam_api::Workloads`]); `ipamctl gc --dry-run` prints what they find.
//!
//! The rules are pure: no I/O, no clock. Releasing a leak safely also needs time (a grace
//! period, a live re-check of the Pod, a compare-and-swap on its block) and is the job of the
//! controller process this crate is to grow; it does not release anything yet.

pub mod leak;
pub mod tracker;

#[cfg(feature = "controller")]
pub mod controller;
