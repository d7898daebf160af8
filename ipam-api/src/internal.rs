//! The kinds the Kubernetes store keeps in its namespace (`ipam-rs` by default), group
//! `ipam.rs/v1alpha1` whichever API serves pools ([`crate::Api`]): `IPAMBlock` (who holds
//! each address of a 64-address window: the record that decides), `IPAMOwner` (an owner's
//! index), `IPAMCursor` (where a pool's round-robin search resumes, a hint) and `IPAMGuard`
//! (the pools' guard). The union of all reservations, which the embedded stores keep as a
//! record, is derived from the reservation objects on every read, so that one applied with
//! kubectl counts at once.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube_core::CustomResourceExt;
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Who holds one address of a block.
///
/// Written as one line of text, fields separated by spaces (none of them can hold one):
/// `ADDRESS CONTAINERID IFNAME NETWORK POOL [@NODE] [NAMESPACE/POD [UID]]`, for example
/// `10.6.0.5 3f2a...e1 eth0 macvlan-net test-ippool @node1 default/app-7d4b 1c9e...`.
/// `@NODE` is the node whose plugin took the address (a node name holds no `@`, and a
/// Pod's namespace neither, so the field cannot be mistaken); lines written before holders
/// recorded their node have none. A block holds
/// up to 64 of them, and the API server decodes, validates and re-encodes the whole object
/// on every write: one string each costs it far less than an object each (see
/// `ipam-cni/bench/RESULTS.md`). Objects written in the earlier form (one object per
/// holder, the same field names) are still read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HolderSpec {
    /// The address.
    pub address: String,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// The CNI network's `name`.
    pub network: String,
    /// The pool (or inline pool label) it was taken from.
    pub pool: String,
    /// The Pod's namespace, where given.
    pub pod_namespace: Option<String>,
    /// The Pod's name, where given.
    pub pod_name: Option<String>,
    /// The Pod's UID, where given.
    pub pod_uid: Option<String>,
    /// The node whose plugin took the address, where recorded.
    pub node: Option<String>,
    /// The StatefulSet of the Pod, where the plugin looked it up: the address is kept for
    /// the Pod's identity. Written in the object form only (one line has no place for it).
    pub statefulset: Option<String>,
}

/// [`HolderSpec`] as one object: the earlier form, and the form of a holder that one line
/// cannot carry (a field with a space, an empty one).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HolderObject {
    address: String,
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
    network: String,
    pool: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pod_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pod_name: Option<String>,
    #[serde(default, rename = "podUID", skip_serializing_if = "Option::is_none")]
    pod_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    #[serde(
        default,
        rename = "statefulSet",
        skip_serializing_if = "Option::is_none"
    )]
    statefulset: Option<String>,
}

impl HolderSpec {
    /// Whether [`HolderSpec::to_line`] reads back as this holder: no field is empty or holds
    /// a space, and the namespace holds no `/`. The plugin's own values always are (the CNI
    /// contract's charsets); a Pod name from `CNI_ARGS` need not be.
    pub fn fits_one_line(&self) -> bool {
        let word = |s: &str| !s.is_empty() && !s.contains(' ');
        self.statefulset.is_none()
            && [
                &self.address,
                &self.container_id,
                &self.ifname,
                &self.network,
                &self.pool,
            ]
            .iter()
            .all(|s| word(s))
            && self
                .pod_namespace
                .as_deref()
                .is_none_or(|n| word(n) && !n.contains('/'))
            && self.pod_name.as_deref().is_none_or(word)
            && self.pod_uid.as_deref().is_none_or(word)
            && self
                .node
                .as_deref()
                .is_none_or(|n| word(n) && !n.contains('/'))
            && !self
                .pod_namespace
                .as_deref()
                .is_some_and(|n| n.starts_with('@'))
            && (self.pod_name.is_some() || (self.pod_namespace.is_none() && self.pod_uid.is_none()))
    }

    /// The one-line form (see [`HolderSpec::fits_one_line`]).
    pub fn to_line(&self) -> String {
        let mut line = [
            self.address.as_str(),
            &self.container_id,
            &self.ifname,
            &self.network,
            &self.pool,
        ]
        .join(" ");
        if let Some(node) = &self.node {
            line.push_str(" @");
            line.push_str(node);
        }
        if let Some(name) = &self.pod_name {
            line.push(' ');
            line.push_str(self.pod_namespace.as_deref().unwrap_or(""));
            line.push('/');
            line.push_str(name);
            if let Some(uid) = &self.pod_uid {
                line.push(' ');
                line.push_str(uid);
            }
        }
        line
    }

    /// Reads [`HolderSpec::to_line`]'s form.
    pub fn from_line(line: &str) -> Result<HolderSpec, String> {
        let fields: Vec<&str> = line.split(' ').collect();
        let text = |s: &str| s.to_owned();
        match fields.as_slice() {
            [address, container_id, ifname, network, pool, rest @ ..] => {
                let (node, pod) = match rest.split_first() {
                    Some((first, pod)) if first.starts_with('@') => (Some(text(&first[1..])), pod),
                    _ => (None, rest),
                };
                if pod.len() > 2 {
                    return Err(format!(
                        "holder {line:?}: not ADDRESS CONTAINERID IFNAME NETWORK POOL [@NODE] [NAMESPACE/POD [UID]]"
                    ));
                }
                let (pod_namespace, pod_name, pod_uid) = match pod {
                    [] => (None, None, None),
                    [pod, uid @ ..] => {
                        let (ns, name) = pod.split_once('/').ok_or_else(|| {
                            format!("holder {line:?}: {pod:?} is not NAMESPACE/POD")
                        })?;
                        (
                            (!ns.is_empty()).then(|| text(ns)),
                            Some(text(name)),
                            uid.first().map(|u| text(u)),
                        )
                    }
                };
                Ok(HolderSpec {
                    address: text(address),
                    container_id: text(container_id),
                    ifname: text(ifname),
                    network: text(network),
                    pool: text(pool),
                    pod_namespace,
                    pod_name,
                    pod_uid,
                    node,
                    statefulset: None,
                })
            }
            _ => Err(format!(
                "holder {line:?}: not ADDRESS CONTAINERID IFNAME NETWORK POOL [@NODE] [NAMESPACE/POD [UID]]"
            )),
        }
    }
}

impl Serialize for HolderSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.fits_one_line() {
            return serializer.serialize_str(&self.to_line());
        }
        HolderObject {
            address: self.address.clone(),
            container_id: self.container_id.clone(),
            ifname: self.ifname.clone(),
            network: self.network.clone(),
            pool: self.pool.clone(),
            pod_namespace: self.pod_namespace.clone(),
            pod_name: self.pod_name.clone(),
            pod_uid: self.pod_uid.clone(),
            node: self.node.clone(),
            statefulset: self.statefulset.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for HolderSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Line(String),
            Object(Box<HolderObject>),
        }
        match Either::deserialize(deserializer)? {
            Either::Line(line) => HolderSpec::from_line(&line).map_err(serde::de::Error::custom),
            Either::Object(o) => Ok(HolderSpec {
                address: o.address,
                container_id: o.container_id,
                ifname: o.ifname,
                network: o.network,
                pool: o.pool,
                pod_namespace: o.pod_namespace,
                pod_name: o.pod_name,
                pod_uid: o.pod_uid,
                node: o.node,
                statefulset: o.statefulset,
            }),
        }
    }
}

impl JsonSchema for HolderSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HolderSpec".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // Untyped, so that the API server neither prunes nor refuses holders in the earlier
        // form (it prunes an object's fields that a string schema does not list): the codec
        // validates each holder as it reads it.
        schemars::json_schema!({
            "description": "ADDRESS CONTAINERID IFNAME NETWORK POOL [@NODE] [NAMESPACE/POD [UID]]",
            "x-kubernetes-preserve-unknown-fields": true
        })
    }
}

/// One block: the holders of the taken addresses of a 64-address window.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ipam.rs",
    version = "v1alpha1",
    kind = "IPAMBlock",
    plural = "ipamblocks",
    namespaced,
    derive = "PartialEq",
    crates(kube_core = "::kube_core"),
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
    derive = "PartialEq",
    crates(kube_core = "::kube_core"),
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
    namespaced,
    derive = "PartialEq",
    crates(kube_core = "::kube_core")
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

/// The pools' guard: what every pool applied with `ipamctl` lists. An apply checks new pools
/// against it and replaces it (conditioned on the version read) before it writes them, so
/// that two applies that would overlap cannot both land; a deletion removes its pool's
/// entry last. One object, named `ippools`, in the store's namespace.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ipam.rs",
    version = "v1alpha1",
    kind = "IPAMGuard",
    plural = "ipamguards",
    namespaced,
    derive = "PartialEq",
    crates(kube_core = "::kube_core")
)]
#[serde(rename_all = "camelCase")]
pub struct IPAMGuardSpec {
    /// Each applied pool and the addresses it lists.
    #[serde(default)]
    pub pools: Vec<GuardedPoolSpec>,
}

/// One pool of the guard.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GuardedPoolSpec {
    /// The pool's name.
    pub name: String,
    /// 4 or 6.
    #[serde(rename = "ipVersion")]
    pub ip_version: u8,
    /// The addresses it lists, as ranges `FIRST-LAST`.
    pub ips: Vec<String>,
}

/// The CustomResourceDefinitions of the allocation kinds, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        IPAMBlock::crd(),
        IPAMOwner::crd(),
        IPAMCursor::crd(),
        IPAMGuard::crd(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn holder() -> impl Strategy<Value = HolderSpec> {
        // Any text, spaces and slashes included: the encoding must never mix fields up.
        let text = "[a-z0-9 /._-]{0,12}";
        (
            (text, text, text, text, text),
            proptest::option::of(text),
            proptest::option::of(text),
            proptest::option::of(text),
            proptest::option::of("[a-z0-9 @/._-]{0,12}"),
            proptest::option::of(text),
        )
            .prop_map(
                |((address, container_id, ifname, network, pool), ns, name, uid, node, sts)| {
                    HolderSpec {
                        address,
                        container_id,
                        ifname,
                        network,
                        pool,
                        pod_namespace: ns,
                        pod_name: name,
                        pod_uid: uid,
                        node,
                        statefulset: sts,
                    }
                },
            )
    }

    proptest! {
        /// Every holder reads back as written: as one line where that is faithful, as an
        /// object otherwise.
        #[test]
        fn holders_read_back_as_written(h in holder()) {
            let json = serde_json::to_value(&h).unwrap();
            prop_assert_eq!(json.is_string(), h.fits_one_line());
            let back: HolderSpec = serde_json::from_value(json).unwrap();
            prop_assert_eq!(back, h);
        }
    }

    #[test]
    fn holders_in_the_earlier_object_form_are_read() {
        let old = serde_json::json!({
            "address": "10.6.0.5", "containerID": "c1", "ifname": "eth0",
            "network": "net1", "pool": "p", "podNamespace": "default", "podName": "app",
            "podUID": "u-1"
        });
        let h: HolderSpec = serde_json::from_value(old).unwrap();
        assert_eq!(h.to_line(), "10.6.0.5 c1 eth0 net1 p default/app u-1");
        assert_eq!(
            serde_json::to_value(&h).unwrap(),
            serde_json::json!("10.6.0.5 c1 eth0 net1 p default/app u-1")
        );
        let err =
            serde_json::from_value::<HolderSpec>(serde_json::json!("10.6.0.5 c1")).unwrap_err();
        assert!(err.to_string().contains("not ADDRESS CONTAINERID"), "{err}");
        // Lines of before holders recorded their node read as holders without one.
        let h: HolderSpec =
            serde_json::from_value(serde_json::json!("10.6.0.5 c1 eth0 net1 p default/app u-1"))
                .unwrap();
        assert_eq!((h.node, h.pod_name.as_deref()), (None, Some("app")));
        let h: HolderSpec =
            serde_json::from_value(serde_json::json!("10.6.0.5 c1 eth0 net1 p @node1 /app"))
                .unwrap();
        assert_eq!(
            (h.node.as_deref(), h.pod_namespace, h.pod_name.as_deref()),
            (Some("node1"), None, Some("app"))
        );
    }
}
