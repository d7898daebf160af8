//! The custom resources, as Rust types: the source of `deploy/crds/` (see [`all`]).
//!
//! Group `ipam.rs`, version `v1alpha1`, so that nothing clashes with a real Spiderpool.
//! `IPPool` and `ReservedIP` are cluster-scoped and carry Spiderpool's field names, so a
//! seed manifest ports by changing `apiVersion` and `kind`. The allocation state lives in
//! namespaced kinds in the store's namespace: `IPAMBlock` (who holds each address of a
//! 64-address window: the record that decides), `IPAMOwner` (an owner's index),
//! and `IPAMCursor` (where a pool's round-robin search resumes, a hint). The union of all
//! ReservedIPs, which the embedded stores keep as a record, is derived from the ReservedIP
//! objects on every read, so that one applied with kubectl counts at once.
//!
//! The store reads and writes them as dynamic objects (`codec`); these types give the
//! schema the API server validates against and `kubectl` prints.

// kube's derive takes one `printcolumn(...)` per column, which clippy reads as the same
// attribute repeated.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group.
pub const GROUP: &str = "ipam.rs";
/// The API version.
pub const VERSION: &str = "v1alpha1";

/// A route of a pool (`spec.routes[]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RouteSpec {
    /// Destination, a CIDR.
    pub dst: String,
    /// Gateway; the pool's gateway when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

/// An IPPool: addresses a CNI network may hand out (Spiderpool's `SpiderIPPool` fields).
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ipam.rs",
    version = "v1alpha1",
    kind = "IPPool",
    plural = "ippools",
    status = "IPPoolStatus",
    printcolumn(name = "VERSION", type_ = "integer", json_path = ".spec.ipVersion"),
    printcolumn(name = "SUBNET", type_ = "string", json_path = ".spec.subnet"),
    printcolumn(name = "TOTAL", type_ = "string", json_path = ".status.totalIPCount"),
    printcolumn(
        name = "RESERVED",
        type_ = "string",
        json_path = ".status.reservedIPCount"
    ),
    printcolumn(
        name = "ALLOCATED",
        type_ = "string",
        json_path = ".status.allocatedIPCount"
    ),
    printcolumn(
        name = "AVAILABLE",
        type_ = "string",
        json_path = ".status.availableIPCount"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct IPPoolSpec {
    /// The subnet, a CIDR.
    pub subnet: String,
    /// The addresses the pool hands out: single addresses, `A-B` ranges or CIDRs.
    #[serde(default)]
    pub ips: Vec<String>,
    /// Addresses never handed out.
    #[serde(default, rename = "excludeIPs", skip_serializing_if = "Vec::is_empty")]
    pub exclude_ips: Vec<String>,
    /// The gateway, never handed out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Routes given with an address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteSpec>,
    /// 4 or 6; inferred from the subnet when absent.
    #[serde(default, rename = "ipVersion", skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<u8>,
    /// Whether Pods without an annotation use the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<bool>,
}

/// The counts of a pool, as the contract defines them. Strings: an IPv6 pool counts past
/// what a JSON integer holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IPPoolStatus {
    /// `totalIPCount`.
    #[serde(rename = "totalIPCount")]
    pub total_ip_count: String,
    /// `reservedIPCount`.
    #[serde(rename = "reservedIPCount")]
    pub reserved_ip_count: String,
    /// `allocatedIPCount`.
    #[serde(rename = "allocatedIPCount")]
    pub allocated_ip_count: String,
    /// `availableIPCount`.
    #[serde(rename = "availableIPCount")]
    pub available_ip_count: String,
}

/// A ReservedIP: addresses no pool of the store hands out (Spiderpool's `SpiderReservedIP`).
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ipam.rs",
    version = "v1alpha1",
    kind = "ReservedIP",
    plural = "reservedips",
    printcolumn(name = "VERSION", type_ = "integer", json_path = ".spec.ipVersion")
)]
#[serde(rename_all = "camelCase")]
pub struct ReservedIPSpec {
    /// The reserved addresses: single addresses, `A-B` ranges or CIDRs.
    #[serde(default)]
    pub ips: Vec<String>,
    /// 4 or 6; inferred from the addresses when absent.
    #[serde(default, rename = "ipVersion", skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<u8>,
}

/// Who holds one address of a block.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HolderSpec {
    /// The address.
    pub address: String,
    /// `CNI_CONTAINERID`.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// The CNI network's `name`.
    pub network: String,
    /// The pool (or inline pool label) it was taken from.
    pub pool: String,
    /// The Pod's namespace, where given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    /// The Pod's name, where given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// The Pod's UID, where given.
    #[serde(default, rename = "podUID", skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
}

/// One block: the holders of the taken addresses of a 64-address window.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ipam.rs",
    version = "v1alpha1",
    kind = "IPAMBlock",
    plural = "ipamblocks",
    namespaced,
    printcolumn(name = "CIDR", type_ = "string", json_path = ".spec.cidr"),
    printcolumn(name = "NODE", type_ = "string", json_path = ".spec.node")
)]
#[serde(rename_all = "camelCase")]
pub struct IPAMBlockSpec {
    /// The window, as a CIDR.
    pub cidr: String,
    /// The node that claimed the block: other nodes leave it alone while they have blocks
    /// of their own or new ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The holders, in address order.
    #[serde(default)]
    pub holders: Vec<HolderSpec>,
    /// The address after the last one handed out of this block: where a round-robin search
    /// in the block goes on (a hint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// An address an owner was given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HeldSpec {
    /// The CNI network's `name`.
    pub network: String,
    /// The address.
    pub address: String,
}

/// An owner's index: what a container's interface was given, on every network.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ipam.rs",
    version = "v1alpha1",
    kind = "IPAMOwner",
    plural = "ipamowners",
    namespaced,
    printcolumn(name = "CONTAINER", type_ = "string", json_path = ".spec.containerID"),
    printcolumn(name = "IFNAME", type_ = "string", json_path = ".spec.ifname")
)]
#[serde(rename_all = "camelCase")]
pub struct IPAMOwnerSpec {
    /// `CNI_CONTAINERID`.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// The addresses, by network.
    #[serde(default)]
    pub held: Vec<HeldSpec>,
}

/// Where a pool's round-robin search resumes: a hint.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ipam.rs",
    version = "v1alpha1",
    kind = "IPAMCursor",
    plural = "ipamcursors",
    namespaced
)]
#[serde(rename_all = "camelCase")]
pub struct IPAMCursorSpec {
    /// The pool.
    pub pool: String,
    /// The node whose cursor it is (none: every process's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The next number on the pool's family's line, in decimal.
    pub next: String,
}

/// Every CustomResourceDefinition of the project, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    use kube::CustomResourceExt;
    vec![
        IPPool::crd(),
        ReservedIP::crd(),
        IPAMBlock::crd(),
        IPAMOwner::crd(),
        IPAMCursor::crd(),
    ]
}
