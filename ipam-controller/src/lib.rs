//! The lifecycle of allocations on Kubernetes: which are leaked, and why.
//!
//! An address leaks when its Pod goes away without a CNI DEL reaching the plugin (a node
//! crashed, a Pod was force-deleted, a kubelet lost the DEL, a node was removed); containerd
//! never sends the CNI GC verb, so on most clusters nothing else finds them. [`leak`] holds
//! the rules, judged on one snapshot of the cluster's Pods and Nodes
//! ([`ipam_api::Workloads`]); `ipamctl gc --dry-run` prints what they find.
//!
//! The rules are pure: no I/O, no clock. Releasing a leak safely also needs time: [`tracker`]
//! makes a leak due once it has lasted a grace period at every look, also pure (the caller
//! passes the time). The process that releases (feature `controller`, the binary
//! `ipam-controller`) is [`controller`]: a Lease elects one replica, whose syncs release due
//! leaks after a fresh look at their Pod, by a compare-and-swap on the block, and keep the
//! pools' status and metrics current. Without the feature the crate is the rules alone (as
//! `ipamctl` uses it), with no Kubernetes client.

pub mod leak;
pub mod tracker;

#[cfg(feature = "controller")]
pub mod controller;
