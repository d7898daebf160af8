//! Which allocations are leaked: the rules, on one snapshot of the cluster.
//!
//! An allocation records the Pod it was made for (namespace, name, UID, from the runtime's
//! `K8S_POD_*` arguments). Judged against the cluster's Pods and Nodes, it is
//!
//! - [`Leak::PodGone`] when no Pod of that namespace and name exists;
//! - [`Leak::OtherPod`] when one exists with another UID (the Pod was deleted and a new one
//!   of the same name made: a StatefulSet's, or a bare Pod re-created);
//! - [`Leak::Finished`] when the Pod has `Succeeded` or `Failed` (its containers never run
//!   again; the kubelet's DEL of its sandbox was lost);
//! - [`Leak::NodeGone`] when the Pod is bound to a node whose Node object is gone (the Pod
//!   garbage collector deletes such Pods; their sandboxes ran on a machine that left).
//!
//! It is never a leak when it names no Pod ([`Kept::NoPod`]: a runtime that is not
//! Kubernetes, or a network used by something else), and the Pod's node is the one the API
//! says it is bound to, not the node recorded with the allocation: a plugin that records its
//! host's name where the kubelet uses another would otherwise make every running Pod look
//! like a leak.
//!
//! A leak whose sandbox may still run is kept: while the node that made the allocation
//! exists and is not Ready ([`Kept::NodeNotReady`]), a Pod deleted from the API may still
//! run there with the address.
//!
//! These rules see one instant. A Pod's status lags its sandbox, and a list is older than
//! the moment it is read; what is judged a leak here becomes safe to release only when it
//! stays one for a grace period and a fresh read of its Pod agrees.
//!
//! ```
//! use ipam_api::{PodFacts, PodPhase, Workloads};
//! use ipam_controller::leak::{judge, Kept, Leak, Verdict};
//! use ipam_core::{Allocation, ObjectName, Owner, PodRef};
//!
//! let allocation = Allocation {
//!     address: "10.6.168.131".parse().unwrap(),
//!     pool: ObjectName::new("test-ippool").unwrap(),
//!     network: "k8s-pod-network".into(),
//!     owner: Owner::new("c0ffee", "eth0").unwrap(),
//!     pod: Some(PodRef { namespace: Some("default".into()), name: "web-0".into(), uid: Some("u1".into()), statefulset: None }),
//!     node: None,
//! };
//! let mut cluster = Workloads::default();
//! assert_eq!(judge(&allocation, &cluster), Verdict::Leaked(Leak::PodGone));
//!
//! let running = PodFacts { uid: "u1".into(), phase: PodPhase::Live, node: None };
//! cluster.pods.insert(("default".into(), "web-0".into()), running);
//! assert_eq!(judge(&allocation, &cluster), Verdict::Kept(Kept::PodLive));
//! ```

use std::fmt;

use ipam_api::{PodPhase, Workloads};
use ipam_core::{Allocation, PodRef};
use serde::Serialize;

/// What the rules say of one allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Still held by what it was made for, or not ours to judge.
    Kept(Kept),
    /// Held for nothing that runs.
    Leaked(Leak),
}

/// Why an allocation is not a leak.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kept {
    /// It names no Kubernetes Pod (no `K8S_POD_NAMESPACE` and `K8S_POD_NAME`, or ones no Pod
    /// can have): never touched.
    NoPod,
    /// Its Pod exists, is not finished, and its node (if it is bound) exists.
    PodLive,
    /// A live Pod of its name exists, and it recorded no UID to tell whether it is the same
    /// one: kept, as it may be.
    UidUnknown,
    /// Its Pod is gone or done, but the node that made the allocation is not Ready: the
    /// sandbox may still run there, with the address.
    NodeNotReady {
        /// The node.
        node: String,
    },
    /// Kept for a StatefulSet Pod's identity (no sandbox holds it), and the StatefulSet
    /// still wants that Pod: its next sandbox gets the address.
    WaitsForPod {
        /// The StatefulSet.
        statefulset: String,
    },
}

/// Why an allocation is a leak.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "camelCase")]
pub enum Leak {
    /// No Pod of its namespace and name exists.
    PodGone,
    /// The Pod of its name is another one (another UID).
    #[serde(rename_all = "camelCase")]
    OtherPod {
        /// The UID of the Pod that exists now.
        current_uid: String,
    },
    /// Its Pod has finished (`Succeeded` or `Failed`).
    Finished {
        /// `Succeeded` or `Failed`.
        phase: &'static str,
    },
    /// Its Pod is bound to a node that no longer exists.
    NodeGone {
        /// The node's name.
        node: String,
    },
    /// Kept for a StatefulSet Pod's identity, and the StatefulSet no longer wants that Pod:
    /// it was deleted, is being deleted, or was scaled below the Pod's ordinal.
    StatefulSetDone {
        /// The StatefulSet.
        statefulset: String,
    },
}

impl Leak {
    /// The reason as one camelCase word (`podGone`, `otherPod`, `finished`, `nodeGone`,
    /// `statefulSetDone`), as
    /// JSON output and metrics label it.
    pub fn code(&self) -> &'static str {
        match self {
            Leak::PodGone => "podGone",
            Leak::OtherPod { .. } => "otherPod",
            Leak::Finished { .. } => "finished",
            Leak::NodeGone { .. } => "nodeGone",
            Leak::StatefulSetDone { .. } => "statefulSetDone",
        }
    }
}

impl fmt::Display for Leak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Leak::PodGone => f.write_str("the Pod no longer exists"),
            Leak::OtherPod { current_uid } => {
                write!(f, "the Pod of this name is another one (UID {current_uid})")
            }
            Leak::Finished { phase } => write!(f, "the Pod has {phase}"),
            Leak::NodeGone { node } => write!(f, "the Pod's node {node} no longer exists"),
            Leak::StatefulSetDone { statefulset } => write!(
                f,
                "StatefulSet {statefulset} no longer wants the Pod (deleted, or scaled below its ordinal)"
            ),
        }
    }
}

/// Judges one allocation by its Pod alone, on `cluster`, a complete snapshot of its Pods
/// and Nodes: whether anything that runs is what it was made for.
///
/// An address kept for a StatefulSet Pod's identity (its owner is the identity, no sandbox)
/// is judged by the StatefulSet alone: kept while it wants the Pod.
pub fn judge_pod(allocation: &Allocation, cluster: &Workloads) -> Verdict {
    let Some((namespace, pod)) = kubernetes_pod(allocation.pod.as_ref()) else {
        return Verdict::Kept(Kept::NoPod);
    };
    if allocation.owner.is_statefulset_identity() {
        let statefulset = pod.statefulset.clone().unwrap_or_default();
        return match statefulset_wants(namespace, pod, cluster) {
            Some(false) => Verdict::Leaked(Leak::StatefulSetDone { statefulset }),
            _ => Verdict::Kept(Kept::WaitsForPod { statefulset }),
        };
    }
    let Some(now) = cluster.pod(namespace, &pod.name) else {
        return Verdict::Leaked(Leak::PodGone);
    };
    if let Some(uid) = &pod.uid {
        if *uid != now.uid {
            return Verdict::Leaked(Leak::OtherPod {
                current_uid: now.uid.clone(),
            });
        }
    }
    // Without a recorded UID the allocation is this Pod's or an earlier one's of the same
    // name: a finished Pod, or one on a deleted node, runs neither.
    match now.phase {
        PodPhase::Succeeded => return Verdict::Leaked(Leak::Finished { phase: "Succeeded" }),
        PodPhase::Failed => return Verdict::Leaked(Leak::Finished { phase: "Failed" }),
        PodPhase::Live => {}
    }
    if let Some(node) = now.node.as_ref().filter(|n| cluster.node(n).is_none()) {
        return Verdict::Leaked(Leak::NodeGone { node: node.clone() });
    }
    match pod.uid {
        Some(_) => Verdict::Kept(Kept::PodLive),
        None => Verdict::Kept(Kept::UidUnknown),
    }
}

/// Judges one allocation on `cluster`, as [`judge_pod`] does, and then keeps a leak whose
/// sandbox may still run: the node that made the allocation exists and is not Ready.
///
/// A Pod force-deleted on an unreachable node is gone from the API while its sandbox, and
/// the address in it, may live on; handing the address to another Pod then would put it
/// twice on the network. Once the node is Ready again its kubelet has seen that the Pod is
/// gone and stops the sandbox; a node that was deleted is, by the operator's word, gone.
pub fn judge(allocation: &Allocation, cluster: &Workloads) -> Verdict {
    let verdict = judge_pod(allocation, cluster);
    if let Verdict::Leaked(Leak::StatefulSetDone { .. }) = verdict {
        return verdict;
    }
    if let Verdict::Leaked(_) = verdict {
        if let Some(node) = &allocation.node {
            if cluster.node(node.as_str()).is_some_and(|n| !n.ready) {
                return Verdict::Kept(Kept::NodeNotReady {
                    node: node.to_string(),
                });
            }
        }
    }
    verdict
}

/// Whether the StatefulSet of the Pod `namespace/pod` wants it, on `cluster`: `None` for a
/// Pod of no StatefulSet. A Pod whose name carries no ordinal of its StatefulSet is wanted
/// while the StatefulSet exists and is not being deleted.
fn statefulset_wants(namespace: &str, pod: &PodRef, cluster: &Workloads) -> Option<bool> {
    let name = pod.statefulset.as_ref()?;
    Some(match cluster.statefulset(namespace, name) {
        None => false,
        Some(sts) => pod.ordinal().map_or(!sts.deleting, |o| sts.wants(o)),
    })
}

/// Whether a leaked sandbox's address is kept for its StatefulSet Pod's identity rather than
/// released: the allocation records a StatefulSet that, on `cluster`, still wants the Pod.
/// The Pod's next sandbox then gets the address (and while the earlier sandbox still held
/// it, that next sandbox's ADD waited).
pub fn keeps_for_statefulset(allocation: &Allocation, cluster: &Workloads) -> bool {
    !allocation.owner.is_statefulset_identity()
        && kubernetes_pod(allocation.pod.as_ref())
            .and_then(|(ns, pod)| statefulset_wants(ns, pod, cluster))
            .unwrap_or(false)
}

/// The allocations of `allocations` that are leaked on `cluster`, with why.
pub fn leaks<'a>(
    allocations: &'a [Allocation],
    cluster: &Workloads,
) -> Vec<(&'a Allocation, Leak)> {
    allocations
        .iter()
        .filter_map(|a| match judge(a, cluster) {
            Verdict::Leaked(why) => Some((a, why)),
            Verdict::Kept(_) => None,
        })
        .collect()
}

/// The namespace and Pod an allocation names, if it names one Kubernetes could have: a Pod
/// without a namespace, or with a namespace or name no Pod can have, is not a Kubernetes
/// Pod (a runtime that sets `K8S_POD_*` its own way), and is never judged.
fn kubernetes_pod(pod: Option<&PodRef>) -> Option<(&str, &PodRef)> {
    let pod = pod?;
    let namespace = pod.namespace.as_deref()?;
    let valid = ipam_core::check_dns_label("namespace", namespace).is_ok()
        && ipam_core::check_dns_subdomain("name", &pod.name).is_ok();
    valid.then_some((namespace, pod))
}

/// The namespace and name of the Kubernetes Pod `allocation` names, if it names one (see
/// [`judge`]): what a fresh look reads.
pub fn pod_of(allocation: &Allocation) -> Option<(&str, &str)> {
    kubernetes_pod(allocation.pod.as_ref()).map(|(ns, p)| (ns, p.name.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipam_api::{NodeFacts, PodFacts};
    use ipam_core::{ObjectName, Owner};
    use proptest::prelude::*;

    fn allocation(pod: Option<PodRef>) -> Allocation {
        allocation_on(pod, "node1")
    }

    fn allocation_on(pod: Option<PodRef>, node: &str) -> Allocation {
        Allocation {
            address: "10.6.168.131".parse().unwrap(),
            pool: ObjectName::new("test-ippool").unwrap(),
            network: "k8s-pod-network".into(),
            owner: Owner::new("c0ffee", "eth0").unwrap(),
            pod,
            node: Some(ObjectName::new(node).unwrap()),
        }
    }

    fn pod_ref(namespace: Option<&str>, name: &str, uid: Option<&str>) -> PodRef {
        PodRef {
            namespace: namespace.map(Into::into),
            name: name.into(),
            uid: uid.map(Into::into),
            statefulset: None,
        }
    }

    fn cluster(pods: &[(&str, &str, &str, PodPhase, Option<&str>)], nodes: &[&str]) -> Workloads {
        Workloads {
            pods: pods
                .iter()
                .map(|&(ns, name, uid, phase, node)| {
                    let facts = PodFacts {
                        uid: uid.into(),
                        phase,
                        node: node.map(Into::into),
                    };
                    ((ns.into(), name.into()), facts)
                })
                .collect(),
            nodes: nodes
                .iter()
                .map(|&n| (n.into(), NodeFacts { ready: true }))
                .collect(),
            statefulsets: Default::default(),
        }
    }

    #[test]
    fn statefulset_pods_are_kept_while_their_statefulset_wants_them() {
        let live = PodPhase::Live;
        let db = |name: &str, uid: &str| PodRef {
            statefulset: Some("db".into()),
            ..pod_ref(Some("default"), name, Some(uid))
        };
        let with_db = |replicas: u32, deleting: bool| {
            let mut c = cluster(
                &[("default", "db-0", "u2", live, Some("node1"))],
                &["node1"],
            );
            if replicas > 0 {
                let facts = ipam_api::StatefulSetFacts {
                    start: 0,
                    replicas,
                    deleting,
                };
                c.statefulsets
                    .insert(("default".into(), "db".into()), facts);
            }
            c
        };
        let waiting = |name: &str| Allocation {
            owner: db(name, "u1").identity_owner("eth0").unwrap(),
            ..allocation(Some(db(name, "u1")))
        };
        let db_done = Verdict::Leaked(Leak::StatefulSetDone {
            statefulset: "db".into(),
        });
        let waits = Verdict::Kept(Kept::WaitsForPod {
            statefulset: "db".into(),
        });
        // Kept for the identity: judged by the StatefulSet alone, whatever Pods run.
        assert_eq!(judge(&waiting("db-1"), &with_db(3, false)), waits);
        assert_eq!(judge(&waiting("db-1"), &with_db(1, false)), db_done);
        assert_eq!(judge(&waiting("db-0"), &with_db(1, true)), db_done);
        assert_eq!(judge(&waiting("db-0"), &with_db(0, false)), db_done);
        // A sandbox of an earlier db-0 is a leak as any (another UID now); its address is
        // kept for the identity while the StatefulSet wants db-0, released when not.
        let earlier = allocation(Some(db("db-0", "u1")));
        assert!(matches!(
            judge(&earlier, &with_db(3, false)),
            Verdict::Leaked(Leak::OtherPod { .. })
        ));
        assert!(keeps_for_statefulset(&earlier, &with_db(3, false)));
        assert!(!keeps_for_statefulset(&earlier, &with_db(0, false)));
        assert!(!keeps_for_statefulset(&waiting("db-0"), &with_db(3, false)));
        // A Pod of no StatefulSet is never kept so.
        let web = allocation(Some(pod_ref(Some("default"), "db-0", Some("u1"))));
        assert!(!keeps_for_statefulset(&web, &with_db(3, false)));
    }

    #[test]
    fn each_rule_on_its_own() {
        let live = PodPhase::Live;
        let recorded = Some(pod_ref(Some("default"), "web-0", Some("u1")));
        for (what, pods, nodes, expect) in [
            (
                "the Pod runs",
                vec![("default", "web-0", "u1", live, Some("node1"))],
                vec!["node1"],
                Verdict::Kept(Kept::PodLive),
            ),
            (
                "not scheduled yet",
                vec![("default", "web-0", "u1", live, None)],
                vec![],
                Verdict::Kept(Kept::PodLive),
            ),
            (
                "deleted",
                vec![],
                vec!["node1"],
                Verdict::Leaked(Leak::PodGone),
            ),
            (
                "same name, other namespace",
                vec![("other", "web-0", "u1", live, Some("node1"))],
                vec!["node1"],
                Verdict::Leaked(Leak::PodGone),
            ),
            (
                "re-created",
                vec![("default", "web-0", "u2", live, Some("node1"))],
                vec!["node1"],
                Verdict::Leaked(Leak::OtherPod {
                    current_uid: "u2".into(),
                }),
            ),
            (
                "succeeded",
                vec![("default", "web-0", "u1", PodPhase::Succeeded, Some("node1"))],
                vec!["node1"],
                Verdict::Leaked(Leak::Finished { phase: "Succeeded" }),
            ),
            (
                "failed",
                vec![("default", "web-0", "u1", PodPhase::Failed, Some("node1"))],
                vec!["node1"],
                Verdict::Leaked(Leak::Finished { phase: "Failed" }),
            ),
            (
                "its node deleted",
                vec![("default", "web-0", "u1", live, Some("node2"))],
                vec!["node1"],
                Verdict::Leaked(Leak::NodeGone {
                    node: "node2".into(),
                }),
            ),
        ] {
            let c = cluster(&pods, &nodes);
            assert_eq!(judge(&allocation(recorded.clone()), &c), expect, "{what}");
        }
    }

    #[test]
    fn what_names_no_kubernetes_pod_is_never_judged() {
        let empty = Workloads::default();
        for pod in [
            None,
            Some(pod_ref(None, "web-0", Some("u1"))),
            Some(pod_ref(Some(""), "web-0", None)),
            Some(pod_ref(Some("default"), "", None)),
            // Names no Kubernetes Pod can have: another runtime's.
            Some(pod_ref(Some("Default"), "web-0", Some("u1"))),
            Some(pod_ref(Some("default"), "web 0", Some("u1"))),
            Some(pod_ref(Some("a.b"), "web-0", Some("u1"))),
        ] {
            assert_eq!(
                judge(&allocation(pod.clone()), &empty),
                Verdict::Kept(Kept::NoPod),
                "{pod:?}"
            );
        }
    }

    #[test]
    fn without_a_recorded_uid_a_pod_of_the_name_keeps_it() {
        let recorded = Some(pod_ref(Some("default"), "web-0", None));
        let c = cluster(&[("default", "web-0", "u9", PodPhase::Live, None)], &[]);
        assert_eq!(
            judge(&allocation(recorded.clone()), &c),
            Verdict::Kept(Kept::UidUnknown)
        );
        assert_eq!(
            judge(&allocation(recorded.clone()), &Workloads::default()),
            Verdict::Leaked(Leak::PodGone)
        );
        // Whichever instance it was made for, a finished Pod of the name runs none.
        let done = cluster(&[("default", "web-0", "u9", PodPhase::Failed, None)], &[]);
        assert_eq!(
            judge(&allocation(recorded), &done),
            Verdict::Leaked(Leak::Finished { phase: "Failed" })
        );
    }

    #[test]
    fn the_recorded_node_is_not_the_pods_node() {
        // The plugin recorded its host name "node1"; the kubelet calls the node "worker-a".
        let recorded = Some(pod_ref(Some("default"), "web-0", Some("u1")));
        let c = cluster(
            &[("default", "web-0", "u1", PodPhase::Live, Some("worker-a"))],
            &["worker-a"],
        );
        assert_eq!(
            judge(&allocation(recorded), &c),
            Verdict::Kept(Kept::PodLive)
        );
    }

    #[test]
    fn a_leak_whose_sandbox_may_run_on_a_node_not_ready_is_kept() {
        // web-0 was force-deleted while node1 was unreachable.
        let recorded = Some(pod_ref(Some("default"), "web-0", Some("u1")));
        let mut c = cluster(&[], &["node1"]);
        assert_eq!(
            judge(&allocation(recorded.clone()), &c),
            Verdict::Leaked(Leak::PodGone)
        );
        c.nodes.insert("node1".into(), NodeFacts { ready: false });
        assert_eq!(
            judge(&allocation(recorded.clone()), &c),
            Verdict::Kept(Kept::NodeNotReady {
                node: "node1".into()
            })
        );
        // The rule is about the node that made the allocation, not about others.
        assert_eq!(
            judge(&allocation_on(recorded.clone(), "node2"), &c),
            Verdict::Leaked(Leak::PodGone)
        );
        // A node that was deleted takes its sandboxes with it.
        c.nodes.clear();
        assert_eq!(
            judge(&allocation(recorded), &c),
            Verdict::Leaked(Leak::PodGone)
        );
    }

    #[test]
    fn reasons_read_as_sentences_and_codes() {
        let node = Leak::NodeGone {
            node: "node2".into(),
        };
        assert_eq!(node.to_string(), "the Pod's node node2 no longer exists");
        assert_eq!(node.code(), "nodeGone");
        let other = Leak::OtherPod {
            current_uid: "u2".into(),
        };
        assert_eq!(
            serde_json::to_value(&other).unwrap(),
            serde_json::json!({"reason": "otherPod", "currentUid": "u2"})
        );
    }

    fn arb_pod_ref() -> impl Strategy<Value = Option<PodRef>> {
        let ns = prop::option::of(prop::sample::select(vec!["", "a", "b", "B"]));
        let name = prop::sample::select(vec!["", "p0", "p1", "p 1"]);
        let uid = prop::option::of(prop::sample::select(vec!["u0", "u1"]));
        prop::option::of((ns, name, uid).prop_map(|(ns, name, uid)| pod_ref(ns, name, uid)))
    }

    fn arb_cluster() -> impl Strategy<Value = Workloads> {
        let phase =
            prop::sample::select(vec![PodPhase::Live, PodPhase::Succeeded, PodPhase::Failed]);
        let node = prop::option::of(prop::sample::select(vec!["n0", "n1"]));
        let pod = (
            prop::sample::select(vec!["a", "b"]),
            prop::sample::select(vec!["p0", "p1"]),
            prop::sample::select(vec!["u0", "u1"]),
            phase,
            node,
        );
        let nodes = prop::collection::btree_map(
            prop::sample::select(vec!["n0", "n1"]),
            any::<bool>().prop_map(|ready| NodeFacts { ready }),
            0..3,
        );
        (prop::collection::vec(pod, 0..5), nodes).prop_map(|(pods, nodes)| Workloads {
            pods: pods
                .into_iter()
                .map(|(ns, name, uid, phase, node)| {
                    let facts = PodFacts {
                        uid: uid.into(),
                        phase,
                        node: node.map(Into::into),
                    };
                    ((ns.into(), name.into()), facts)
                })
                .collect(),
            nodes: nodes.into_iter().map(|(n, f)| (n.to_owned(), f)).collect(),
            statefulsets: Default::default(),
        })
    }

    /// The rules as one plain statement: a leak is an allocation naming a Kubernetes Pod
    /// (namespace and name) with no live instance of that Pod: one of the same UID (any UID
    /// when none was recorded), unfinished, on an existing node or on none yet.
    fn model_is_leak(a: &Allocation, c: &Workloads) -> bool {
        let Some(p) = &a.pod else { return false };
        let Some(ns) = p.namespace.as_deref() else {
            return false;
        };
        // The generated names: lowercase letters, digits and dashes make a valid one.
        let dns = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if !dns(ns) || !dns(&p.name) {
            return false;
        }
        let live_instance = c.pods.iter().any(|((pns, pname), f)| {
            pns == ns
                && *pname == p.name
                && p.uid.as_ref().is_none_or(|u| *u == f.uid)
                && !f.phase.is_terminal()
                && f.node.as_ref().is_none_or(|n| c.nodes.contains_key(n))
        });
        let recorded_node_unready = a
            .node
            .as_ref()
            .and_then(|n| c.nodes.get(n.as_str()))
            .is_some_and(|n| !n.ready);
        !live_instance && !recorded_node_unready
    }

    fn arb_node() -> impl Strategy<Value = Option<&'static str>> {
        prop::option::of(prop::sample::select(vec!["n0", "n1"]))
    }

    fn allocation_with(pod: Option<PodRef>, node: Option<&str>) -> Allocation {
        Allocation {
            node: node.map(|n| ObjectName::new(n).unwrap()),
            ..allocation(pod)
        }
    }

    proptest! {
        #[test]
        fn judged_as_the_model_says(pod in arb_pod_ref(), node in arb_node(), c in arb_cluster()) {
            let a = allocation_with(pod, node);
            let leaked = matches!(judge(&a, &c), Verdict::Leaked(_));
            prop_assert_eq!(leaked, model_is_leak(&a, &c));
        }

        #[test]
        fn more_pods_and_nodes_never_make_a_leak(
            pod in arb_pod_ref(),
            node in arb_node(),
            c in arb_cluster(),
            extra in arb_cluster(),
        ) {
            // Pods of other names and Nodes that were missing: what was kept stays kept.
            let a = allocation_with(pod, node);
            let mut bigger = c.clone();
            for (k, v) in extra.pods {
                bigger.pods.entry(k).or_insert(v);
            }
            for (k, v) in extra.nodes {
                bigger.nodes.entry(k).or_insert(v);
            }
            if matches!(judge(&a, &c), Verdict::Kept(_)) {
                prop_assert!(matches!(judge(&a, &bigger), Verdict::Kept(_)));
            }
        }
    }
}
