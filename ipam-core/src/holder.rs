//! Who holds an address: the facts every layer shares about one allocation.
//!
//! Below both the store (whose owner index lists [`Held`] entries) and the blocks (whose
//! entries are [`Holder`]s), so that neither imports the other for them.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::name::{ObjectName, Owner};

/// One allocation: an address held by an owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Allocation {
    /// The address.
    pub address: IpAddr,
    /// The pool it came from.
    pub pool: ObjectName,
    /// The network (CNI `name`) it was allocated for.
    pub network: String,
    /// Who holds it.
    pub owner: Owner,
    /// The Pod, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodRef>,
    /// The node whose process took it, where nodes share the store (see
    /// [`Holder::node`](crate::holder::Holder::node)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectName>,
}

/// Why an address is held: for what the allocation's owner stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeldFor {
    /// A sandbox of a Pod.
    Pod,
    /// A sandbox of a StatefulSet's Pod: a DEL keeps the address for the Pod's identity.
    StatefulSetPod {
        /// The StatefulSet.
        statefulset: String,
    },
    /// No sandbox: kept for a StatefulSet Pod's identity until the Pod's next sandbox.
    StatefulSetIdentity {
        /// The StatefulSet.
        statefulset: String,
    },
    /// An owner without a Pod (a runtime that is not Kubernetes, or no `K8S_POD_*`).
    NoPod,
}

impl HeldFor {
    /// One camelCase word: `pod`, `statefulSetPod`, `statefulSetIdentity`, `noPod`.
    pub fn code(&self) -> &'static str {
        match self {
            HeldFor::Pod => "pod",
            HeldFor::StatefulSetPod { .. } => "statefulSetPod",
            HeldFor::StatefulSetIdentity { .. } => "statefulSetIdentity",
            HeldFor::NoPod => "noPod",
        }
    }
}

impl fmt::Display for HeldFor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeldFor::Pod => f.write_str("Pod"),
            HeldFor::StatefulSetPod { statefulset } => {
                write!(f, "Pod of StatefulSet {statefulset}")
            }
            HeldFor::StatefulSetIdentity { statefulset } => {
                write!(
                    f,
                    "StatefulSet {statefulset}: no sandbox, kept for the Pod's next"
                )
            }
            HeldFor::NoPod => f.write_str("no Pod"),
        }
    }
}

impl Allocation {
    /// Why the address is held.
    ///
    /// ```
    /// use ipam_core::{Allocation, HeldFor, Owner, PodRef};
    /// let pod = PodRef {
    ///     namespace: Some("prod".into()),
    ///     name: "db-0".into(),
    ///     statefulset: Some("db".into()),
    ///     ..PodRef::default()
    /// };
    /// let kept = Allocation {
    ///     address: "10.0.0.5".parse().unwrap(),
    ///     pool: ipam_core::ObjectName::new("pool").unwrap(),
    ///     network: "net1".into(),
    ///     owner: pod.identity_owner("eth0").unwrap(),
    ///     pod: Some(pod),
    ///     node: None,
    /// };
    /// assert_eq!(kept.held_for(), HeldFor::StatefulSetIdentity { statefulset: "db".into() });
    /// ```
    pub fn held_for(&self) -> HeldFor {
        let statefulset = self.pod.as_ref().and_then(|p| p.statefulset.clone());
        match (&self.pod, statefulset) {
            (None, _) => HeldFor::NoPod,
            (Some(_), Some(statefulset)) if self.owner.is_statefulset_identity() => {
                HeldFor::StatefulSetIdentity { statefulset }
            }
            (Some(_), Some(statefulset)) => HeldFor::StatefulSetPod { statefulset },
            (Some(_), None) => HeldFor::Pod,
        }
    }
}

/// The Pod an allocation was made for: what the runtime said of it (`K8S_POD_*`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRef {
    /// `metadata.namespace`, where given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The StatefulSet that owns the Pod (its controller), where the plugin looked it up:
    /// the Pod's address is kept for its identity (namespace and name) across sandboxes,
    /// see [`PodRef::identity_owner`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statefulset: Option<String>,
}

/// The prefix of the container ID of [`PodRef::identity_owner`]: `_` never appears in a
/// namespace or a Pod name, nor in a runtime's container IDs (hexadecimal).
const IDENTITY_PREFIX: &str = "statefulset_";

impl PodRef {
    /// The owner that holds this StatefulSet Pod's address while no sandbox of the Pod
    /// does (between a DEL and the next ADD of a Pod of the same name), for the interface
    /// `ifname`: `statefulset_NAMESPACE_NAME/IFNAME`. `None` for a Pod without a
    /// StatefulSet or a namespace, or whose names make too long a container ID.
    ///
    /// ```
    /// use ipam_core::PodRef;
    /// let pod = PodRef {
    ///     namespace: Some("prod".into()),
    ///     name: "db-0".into(),
    ///     statefulset: Some("db".into()),
    ///     ..PodRef::default()
    /// };
    /// let owner = pod.identity_owner("eth0").unwrap();
    /// assert_eq!(owner.to_string(), "statefulset_prod_db-0/eth0");
    /// assert!(owner.is_statefulset_identity());
    /// ```
    pub fn identity_owner(&self, ifname: &str) -> Option<Owner> {
        self.statefulset.as_ref()?;
        let namespace = self.namespace.as_ref()?;
        Owner::new(
            format!("{IDENTITY_PREFIX}{namespace}_{}", self.name),
            ifname,
        )
        .ok()
    }

    /// Whether `other` is the same Pod identity: namespace, name and StatefulSet.
    pub fn same_identity(&self, other: &PodRef) -> bool {
        self.statefulset.is_some()
            && self.namespace == other.namespace
            && self.name == other.name
            && self.statefulset == other.statefulset
    }

    /// The Pod's ordinal in its StatefulSet: the number after the last `-` of its name, when
    /// the name is the StatefulSet's name, `-`, and a number (`db-2`: 2).
    pub fn ordinal(&self) -> Option<u32> {
        let sts = self.statefulset.as_ref()?;
        let rest = self.name.strip_prefix(sts.as_str())?.strip_prefix('-')?;
        if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        rest.parse().ok()
    }
}

impl Owner {
    /// Whether this owner is a StatefulSet Pod's identity ([`PodRef::identity_owner`]),
    /// not a container: its addresses wait for the Pod's next sandbox.
    pub fn is_statefulset_identity(&self) -> bool {
        self.container_id().starts_with(IDENTITY_PREFIX)
    }
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// One entry of an owner's index: an address it was given on a network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The network (CNI `name`).
    pub network: String,
    /// The address.
    pub address: IpAddr,
}

/// Who holds one address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    /// The owner: `(containerID, ifname)`.
    pub owner: Owner,
    /// The network (CNI `name`) the address was allocated for.
    pub network: String,
    /// The pool it was allocated from (an applied pool, or a network's inline pool).
    pub pool: ObjectName,
    /// The Pod, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodRef>,
    /// The node whose process took it, where processes of many nodes share the store
    /// (the engine's [`Config::node`](crate::Config::node)). Not the block's affinity: a
    /// node whose own blocks are full takes addresses from other nodes' blocks. A runtime's
    /// GC knows only its own node's attachments, so it releases only holders of its node;
    /// holders written before this field existed have none, and a node's GC leaves them
    /// alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectName>,
}
