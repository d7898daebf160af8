//! What the cluster says of its Pods and Nodes, at one instant: the facts the lifecycle rules
//! (which allocations are leaks) are judged on. Read by the Kubernetes store
//! (`KubeStore::workloads`), judged by `ipam_controller::leak`.

use std::collections::BTreeMap;

/// A Pod's `status.phase`, as far as the lifecycle rules care.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PodPhase {
    /// `Pending`, `Running`, `Unknown`, no phase yet, or one this build does not know: the
    /// Pod may hold its sandbox.
    Live,
    /// `Succeeded`: terminal, its containers will not run again.
    Succeeded,
    /// `Failed`: terminal, its containers will not run again.
    Failed,
}

impl PodPhase {
    /// The phase of `status.phase` text (`None`: not set yet).
    ///
    /// ```
    /// use ipam_api::PodPhase;
    /// assert_eq!(PodPhase::of(Some("Failed")), PodPhase::Failed);
    /// assert_eq!(PodPhase::of(Some("Running")), PodPhase::Live);
    /// assert_eq!(PodPhase::of(None), PodPhase::Live);
    /// ```
    pub fn of(phase: Option<&str>) -> PodPhase {
        match phase {
            Some("Succeeded") => PodPhase::Succeeded,
            Some("Failed") => PodPhase::Failed,
            _ => PodPhase::Live,
        }
    }

    /// Whether the Pod's containers are done for good.
    pub fn is_terminal(self) -> bool {
        self != PodPhase::Live
    }
}

/// What a Pod is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFacts {
    /// `metadata.uid`.
    pub uid: String,
    /// `status.phase`.
    pub phase: PodPhase,
    /// `spec.nodeName`: the node it is bound to (`None`: not scheduled yet).
    pub node: Option<String>,
}

/// What a Node is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeFacts {
    /// Its `Ready` condition is `True`: the kubelet reports, so it has seen which Pods the
    /// API still binds to it and stops the sandboxes of the others.
    pub ready: bool,
}

/// Every Pod and Node of the cluster, from one complete list of each.
///
/// Only a complete list makes one: a Pod missing from a partial list would look deleted, so a
/// list that failed part-way is an error, never a smaller `Workloads`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Workloads {
    /// Pods by `(namespace, name)`.
    pub pods: BTreeMap<(String, String), PodFacts>,
    /// The Node objects, by name.
    pub nodes: BTreeMap<String, NodeFacts>,
    /// The StatefulSets, by `(namespace, name)`.
    pub statefulsets: BTreeMap<(String, String), StatefulSetFacts>,
}

/// What the lifecycle rules read of a StatefulSet: which ordinals it wants.
///
/// ```
/// use ipam_api::StatefulSetFacts;
/// let db = StatefulSetFacts { start: 0, replicas: 3, deleting: false };
/// assert!(db.wants(2));
/// assert!(!db.wants(3));
/// assert!(!StatefulSetFacts { deleting: true, ..db }.wants(0));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatefulSetFacts {
    /// `spec.ordinals.start` (0 when absent).
    pub start: u32,
    /// `spec.replicas` (1 when absent, as Kubernetes defaults it).
    pub replicas: u32,
    /// `metadata.deletionTimestamp` is set: the StatefulSet goes, and its Pods with it.
    pub deleting: bool,
}

impl StatefulSetFacts {
    /// Whether the StatefulSet wants a Pod of `ordinal`: it is not being deleted and the
    /// ordinal is in `start..start + replicas`.
    pub fn wants(&self, ordinal: u32) -> bool {
        !self.deleting
            && ordinal >= self.start
            && u64::from(ordinal) < u64::from(self.start) + u64::from(self.replicas)
    }
}

impl Workloads {
    /// The Pod `namespace/name`, if it exists.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&PodFacts> {
        self.pods.get(&(namespace.to_owned(), name.to_owned()))
    }

    /// The Node `name`, if it exists.
    pub fn node(&self, name: &str) -> Option<&NodeFacts> {
        self.nodes.get(name)
    }

    /// The StatefulSet `namespace/name`, if it exists.
    pub fn statefulset(&self, namespace: &str, name: &str) -> Option<&StatefulSetFacts> {
        self.statefulsets
            .get(&(namespace.to_owned(), name.to_owned()))
    }
}
