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
