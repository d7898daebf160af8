//! Records as Kubernetes objects and back: which kind and object name a [`Key`] lives at,
//! and the object a [`Record`] is written as.
//!
//! Object names must be RFC 1123 subdomains (lowercase). A pool or reservation whose name
//! already is one keeps it (so `kubectl get ippool test-ippool` finds the seed's pool);
//! another is mapped to a valid name with a hash suffix, and every object we write carries its
//! real name in the annotation `ipam.rs/name`. Owners are named by a hash of
//! `containerID/ifname` (a container ID may be longer than a name allows), blocks by their
//! family and first address.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipam_core::addr::{to_u128, Family};
use ipam_core::alloc::BLOCK_BITS;
use ipam_core::block::{BlockRecord, Holder};
use ipam_core::store::{Held, Key, KeyRange, Record, Version, Versioned};
use ipam_core::{
    IpPool, IpPoolSpec, ObjectName, Owner, PodRef, ReservedIp, ReservedIpSpec, StoreError,
};
use kube::core::{ApiResource, DynamicObject, ObjectMeta};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::crd;

/// The annotation that keeps an object's real name.
pub const NAME_ANNOTATION: &str = "ipam.rs/name";
/// The label that sets apart the cluster-scoped objects of one store (when it has a prefix).
pub const STORE_LABEL: &str = "ipam.rs/store";
/// The label of a block's family, `4` or `6`: lists of blocks select by it.
pub const FAMILY_LABEL: &str = "ipam.rs/family";

/// The kinds the store writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `IPPool`, cluster-scoped.
    Pool,
    /// `ReservedIP`, cluster-scoped.
    ReservedIp,
    /// `IPAMBlock`.
    Block,
    /// `IPAMOwner`.
    Owner,
    /// `IPAMCursor`.
    Cursor,
}

impl Kind {
    /// The API resource, for dynamic requests.
    pub fn resource(self) -> ApiResource {
        use kube::Resource;
        fn of<K: Resource<DynamicType = ()>>() -> ApiResource {
            ApiResource::erase::<K>(&())
        }
        match self {
            Kind::Pool => of::<crd::IPPool>(),
            Kind::ReservedIp => of::<crd::ReservedIP>(),
            Kind::Block => of::<crd::IPAMBlock>(),
            Kind::Owner => of::<crd::IPAMOwner>(),
            Kind::Cursor => of::<crd::IPAMCursor>(),
        }
    }

    /// Whether the kind lives in the store's namespace (else cluster-scoped).
    pub fn namespaced(self) -> bool {
        !matches!(self, Kind::Pool | Kind::ReservedIp)
    }

    /// The kind that holds the keys of `range`, and the label selector that narrows a list.
    pub fn of_range(range: &KeyRange) -> (Kind, Option<String>) {
        match range {
            KeyRange::Pools => (Kind::Pool, None),
            KeyRange::ReservedIps => (Kind::ReservedIp, None),
            KeyRange::Blocks { family, .. } => (
                Kind::Block,
                Some(format!("{FAMILY_LABEL}={}", family.version())),
            ),
            KeyRange::Owners => (Kind::Owner, None),
            _ => (Kind::Cursor, None),
        }
    }
}

/// How one store names its objects.
#[derive(Clone, Debug)]
pub struct Codec {
    /// Put before the names of cluster-scoped objects, and their label's value: sets apart
    /// stores that share a cluster (tests). Empty in production.
    pub prefix: String,
}

impl Codec {
    /// The kind and object name of `key`; `None` for the reservation summary, which the
    /// store derives from the ReservedIP objects instead of keeping it (so that one applied
    /// with kubectl counts at once).
    pub fn locate(&self, key: &Key) -> Option<(Kind, String)> {
        Some(match key {
            Key::Pool(n) => (Kind::Pool, self.cluster_name(n)),
            Key::ReservedIp(n) => (Kind::ReservedIp, self.cluster_name(n)),
            Key::ReservedSummary => return None,
            Key::Block { family, index } => {
                let first = index << BLOCK_BITS;
                let name = match family {
                    Family::V4 => format!("b4-{first:08x}"),
                    Family::V6 => format!("b6-{first:032x}"),
                };
                (Kind::Block, name)
            }
            Key::Cursor { pool, node: None } => (Kind::Cursor, mapped_name(&format!("c-{pool}"))),
            Key::Cursor {
                pool,
                node: Some(node),
            } => (Kind::Cursor, mapped_name(&format!("c-{pool}.on.{node}"))),
            Key::Owner(o) => (
                Kind::Owner,
                format!(
                    "o-{}",
                    &hex(&format!("{}/{}", o.container_id(), o.ifname()))[..40]
                ),
            ),
            _ => return None,
        })
    }

    fn cluster_name(&self, name: &ObjectName) -> String {
        mapped_name(&format!("{}{}", self.prefix, name.as_str()))
    }

    /// The label selector that lists this store's objects of `kind`, and `extra`. The
    /// cluster-scoped objects of a store with a prefix carry its label; the default store's
    /// are those that carry none (so that stores set apart in one cluster, such as tests,
    /// never see each other's pools).
    pub fn selector(&self, kind: Kind, extra: Option<String>) -> Option<String> {
        let mine = (!kind.namespaced()).then(|| {
            if self.prefix.is_empty() {
                format!("!{STORE_LABEL}")
            } else {
                format!("{STORE_LABEL}={}", label_value(&self.prefix))
            }
        });
        match (mine, extra) {
            (Some(a), Some(b)) => Some(format!("{a},{b}")),
            (a, b) => a.or(b),
        }
    }

    /// The object `record` is written as under `key` (a key [`Codec::locate`] places).
    pub fn object(&self, key: &Key, record: &Record) -> DynamicObject {
        let (kind, name) = self.locate(key).expect("a stored key");
        let mut labels = BTreeMap::new();
        labels.insert(
            "app.kubernetes.io/managed-by".to_owned(),
            "ipam-rs".to_owned(),
        );
        if !kind.namespaced() && !self.prefix.is_empty() {
            labels.insert(STORE_LABEL.to_owned(), label_value(&self.prefix));
        }
        let mut annotations = BTreeMap::new();
        let spec = match record {
            Record::Pool(p) => {
                annotations.insert(
                    NAME_ANNOTATION.to_owned(),
                    format!("{}{}", self.prefix, p.name()),
                );
                serde_json::to_value(p.spec()).expect("a spec serializes")
            }
            Record::ReservedIp(r) => {
                annotations.insert(
                    NAME_ANNOTATION.to_owned(),
                    format!("{}{}", self.prefix, r.name()),
                );
                serde_json::to_value(r.spec()).expect("a spec serializes")
            }
            Record::Block(b) => {
                labels.insert(FAMILY_LABEL.to_owned(), b.family().version().to_string());
                let first = b.family().addr(b.index() << BLOCK_BITS);
                let holders: Vec<crd::HolderSpec> = b
                    .iter()
                    .map(|(v, h)| crd::HolderSpec {
                        address: b.family().addr(v).to_string(),
                        container_id: h.owner.container_id().to_owned(),
                        ifname: h.owner.ifname().to_owned(),
                        network: h.network.clone(),
                        pool: h.pool.to_string(),
                        pod_namespace: h.pod.as_ref().and_then(|p| p.namespace.clone()),
                        pod_name: h.pod.as_ref().map(|p| p.name.clone()),
                        pod_uid: h.pod.as_ref().and_then(|p| p.uid.clone()),
                        node: h.node.as_ref().map(ToString::to_string),
                    })
                    .collect();
                serde_json::to_value(crd::IPAMBlockSpec {
                    cidr: format!("{first}/{}", b.family().bits() - BLOCK_BITS),
                    node: b.affinity().map(ToString::to_string),
                    holders,
                    next: b
                        .next()
                        .filter(|&n| n <= b.family().max_value())
                        .map(|n| b.family().addr(n).to_string()),
                })
                .expect("a block serializes")
            }
            Record::Owner(held) => {
                let Key::Owner(owner) = key else {
                    unreachable!("owner records live under owner keys")
                };
                json!({
                    "containerID": owner.container_id(),
                    "ifname": owner.ifname(),
                    "held": held.iter().map(|h| json!({
                        "network": h.network,
                        "address": h.address.to_string(),
                    })).collect::<Vec<_>>(),
                })
            }
            Record::Cursor(next) => {
                let Key::Cursor { pool, node } = key else {
                    unreachable!("cursors live under cursor keys")
                };
                let mut spec = json!({"pool": pool.as_str(), "next": next.to_string()});
                if let Some(node) = node {
                    spec["node"] = json!(node.as_str());
                }
                spec
            }
            _ => Value::Null,
        };
        let resource = kind.resource();
        let mut obj = DynamicObject::new(&name, &resource);
        obj.metadata = ObjectMeta {
            name: Some(name),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..ObjectMeta::default()
        };
        obj.data = json!({ "spec": spec });
        obj
    }

    /// The key and record of an object of `kind` read from the cluster; `None` for an
    /// object of another store (another prefix).
    pub fn decode(
        &self,
        kind: Kind,
        obj: &DynamicObject,
    ) -> Result<Option<(Key, Versioned<Record>)>, StoreError> {
        let name = obj.metadata.name.clone().unwrap_or_default();
        let what = format!("{}/{name}", kind.resource().plural);
        let corrupt = |reason: String| StoreError::Corrupt {
            key: what.clone(),
            reason,
        };
        let version = Version::new(
            obj.metadata
                .resource_version
                .clone()
                .ok_or_else(|| corrupt("no resourceVersion".into()))?,
        );
        let spec = obj.data.get("spec").cloned().unwrap_or(Value::Null);
        let text = |v: &Value, field: &str| -> Result<String, StoreError> {
            v.get(field)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| corrupt(format!("spec.{field} missing or not a string")))
        };
        let address = |s: &str| -> Result<IpAddr, StoreError> {
            s.parse()
                .map_err(|_| corrupt(format!("{s:?} is not an address")))
        };
        let (key, record) = match kind {
            Kind::Pool | Kind::ReservedIp => {
                let real = match obj
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(NAME_ANNOTATION))
                {
                    Some(real) => real.clone(),
                    // Applied by kubectl: the object's name is the pool's.
                    None => name.clone(),
                };
                let Some(real) = real.strip_prefix(&self.prefix) else {
                    return Ok(None);
                };
                let real = real.to_owned();
                if kind == Kind::Pool {
                    let spec: IpPoolSpec =
                        serde_json::from_value(spec).map_err(|e| corrupt(e.to_string()))?;
                    let pool = IpPool::new(&real, spec).map_err(|e| corrupt(e.to_string()))?;
                    (Key::Pool(pool.name().clone()), Record::Pool(pool))
                } else {
                    let spec: ReservedIpSpec =
                        serde_json::from_value(spec).map_err(|e| corrupt(e.to_string()))?;
                    let r = ReservedIp::new(&real, spec).map_err(|e| corrupt(e.to_string()))?;
                    (Key::ReservedIp(r.name().clone()), Record::ReservedIp(r))
                }
            }
            Kind::Block => {
                let spec: crd::IPAMBlockSpec =
                    serde_json::from_value(spec).map_err(|e| corrupt(e.to_string()))?;
                let (first, bits) = spec
                    .cidr
                    .split_once('/')
                    .ok_or_else(|| corrupt(format!("spec.cidr {:?}", spec.cidr)))?;
                let first = address(first)?;
                let family = Family::of(first);
                if bits != (family.bits() - BLOCK_BITS).to_string() {
                    return Err(corrupt(format!("spec.cidr {:?} is not a block", spec.cidr)));
                }
                let index = to_u128(first) >> BLOCK_BITS;
                let mut block = BlockRecord::new(family, index);
                if let Some(node) = spec.node {
                    block.set_affinity(Some(
                        ObjectName::new(node).map_err(|e| corrupt(e.to_string()))?,
                    ));
                }
                if let Some(next) = &spec.next {
                    let a = address(next)?;
                    if Family::of(a) != family {
                        return Err(corrupt(format!("spec.next {a} is not of {}", spec.cidr)));
                    }
                    block.set_next(Some(to_u128(a)));
                }
                for h in spec.holders {
                    let a = address(&h.address)?;
                    let value = to_u128(a);
                    if Family::of(a) != family || value >> BLOCK_BITS != index {
                        return Err(corrupt(format!("{a} is outside {}", spec.cidr)));
                    }
                    let owner =
                        Owner::new(h.container_id, h.ifname).map_err(|e| corrupt(e.to_string()))?;
                    let pool = ObjectName::new(h.pool).map_err(|e| corrupt(e.to_string()))?;
                    let pod = h.pod_name.map(|name| PodRef {
                        namespace: h.pod_namespace,
                        name,
                        uid: h.pod_uid,
                    });
                    let node = match h.node {
                        Some(n) => Some(ObjectName::new(n).map_err(|e| corrupt(e.to_string()))?),
                        None => None,
                    };
                    let holder = Holder {
                        owner,
                        network: h.network,
                        pool,
                        pod,
                        node,
                    };
                    if !block.insert(value, holder) {
                        return Err(corrupt(format!("{a} is held twice")));
                    }
                }
                (Key::Block { family, index }, Record::Block(block))
            }
            Kind::Owner => {
                let owner = Owner::new(text(&spec, "containerID")?, text(&spec, "ifname")?)
                    .map_err(|e| corrupt(e.to_string()))?;
                let mut held = Vec::new();
                for h in spec
                    .get("held")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    held.push(Held {
                        network: text(h, "network")?,
                        address: address(&text(h, "address")?)?,
                    });
                }
                (Key::Owner(owner), Record::Owner(held))
            }
            Kind::Cursor => {
                let pool =
                    ObjectName::new(text(&spec, "pool")?).map_err(|e| corrupt(e.to_string()))?;
                let next = text(&spec, "next")?
                    .parse::<u128>()
                    .map_err(|e| corrupt(format!("spec.next: {e}")))?;
                let node = match spec.get("node") {
                    None => None,
                    Some(_) => Some(
                        ObjectName::new(text(&spec, "node")?)
                            .map_err(|e| corrupt(e.to_string()))?,
                    ),
                };
                (Key::Cursor { pool, node }, Record::Cursor(next))
            }
        };
        // An object found under a name its content does not give belongs to nobody's key.
        let expected = self.locate(&key).map(|(_, n)| n).unwrap_or_default();
        if expected != name {
            return Err(corrupt(format!("its content belongs under {expected:?}")));
        }
        Ok(Some((
            key,
            Versioned {
                value: record,
                version,
            },
        )))
    }
}

fn hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `name` is a valid object name (an RFC 1123 subdomain).
pub fn valid_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// `name` if it is a valid object name, else a valid name made from it and a hash of it.
pub fn mapped_name(name: &str) -> String {
    if valid_object_name(name) {
        return name.to_owned();
    }
    let mut base: String = name
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    base = base.trim_matches('-').to_owned();
    let suffix = &hex(name)[..12];
    if base.is_empty() {
        format!("x-{suffix}")
    } else {
        format!("{base}-{suffix}")
    }
}

/// A label value (≤ 63 characters of `[A-Za-z0-9_.-]`, alphanumeric at both ends).
fn label_value(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    let trimmed = cleaned.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if trimmed.len() <= 63 && trimmed == text {
        trimmed.to_owned()
    } else {
        hex(text)[..40].to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> Codec {
        Codec {
            prefix: String::new(),
        }
    }

    fn with_version(mut obj: DynamicObject) -> DynamicObject {
        obj.metadata.resource_version = Some("42".into());
        obj
    }

    #[test]
    fn names_are_valid_and_kept_where_they_can_be() {
        assert_eq!(mapped_name("test-ippool"), "test-ippool");
        for odd in ["Net_1-0", "UPPER", "a_b", "-", "x".repeat(253).as_str()] {
            let m = mapped_name(odd);
            assert!(valid_object_name(&m), "{odd} -> {m}");
            assert_ne!(mapped_name(odd), mapped_name(&format!("{odd}2")));
        }
        assert!(!valid_object_name("a..b") && !valid_object_name("a-") && !valid_object_name("A"));
    }

    #[test]
    fn every_record_round_trips_through_its_object() {
        let c = codec();
        let pool = ipam_core::testkit::pool("Net_1-0", "10.6.0.0/24", &["10.6.0.10-10.6.0.20"]);
        let reserved = ipam_core::testkit::reserved("r", &["fd00::1-fd00::9"]);
        let index = 0x0a06_0040u128 >> BLOCK_BITS;
        let mut block = BlockRecord::new(Family::V4, index);
        block.insert(
            0x0a06_0041,
            Holder {
                owner: Owner::new("c1", "eth0").unwrap(),
                network: "net1".into(),
                pool: pool.name().clone(),
                pod: Some(PodRef {
                    namespace: None,
                    name: "web".into(),
                    uid: Some("u".into()),
                }),
                node: Some(ObjectName::new("node-1").unwrap()),
            },
        );
        let owner = Owner::new("A".repeat(200), "eth0").unwrap();
        let cases = [
            (Key::Pool(pool.name().clone()), Record::Pool(pool.clone())),
            (
                Key::ReservedIp(reserved.name().clone()),
                Record::ReservedIp(reserved.clone()),
            ),
            (
                Key::Block {
                    family: Family::V4,
                    index,
                },
                Record::Block(block),
            ),
            (
                Key::Owner(owner),
                Record::Owner(vec![Held {
                    network: "net1".into(),
                    address: "10.6.0.65".parse().unwrap(),
                }]),
            ),
            (
                Key::Cursor {
                    pool: pool.name().clone(),
                    node: Some(ObjectName::new("worker-1.example").unwrap()),
                },
                Record::Cursor(0x0a06_0042),
            ),
            (
                Key::Cursor {
                    pool: pool.name().clone(),
                    node: None,
                },
                Record::Cursor(7),
            ),
        ];
        for (key, record) in cases {
            let (kind, name) = c.locate(&key).unwrap();
            assert!(valid_object_name(&name), "{name}");
            let obj = with_version(c.object(&key, &record));
            let (k, v) = c.decode(kind, &obj).unwrap().expect("ours");
            assert_eq!((k, v.value), (key, record));
            assert_eq!(v.version, Version::new("42"));
        }
    }

    #[test]
    fn a_kubectl_applied_pool_reads_by_its_object_name_and_foreign_content_is_refused() {
        let c = codec();
        let mut obj = DynamicObject::new("test-ippool", &Kind::Pool.resource());
        obj.metadata.resource_version = Some("7".into());
        obj.data = json!({"spec": {"subnet": "10.6.0.0/16", "ips": ["10.6.168.131-10.6.168.133"]}});
        let (key, _) = c.decode(Kind::Pool, &obj).unwrap().unwrap();
        assert_eq!(key, Key::Pool(ObjectName::new("test-ippool").unwrap()));
        obj.data = json!({"spec": {"subnet": "10.6.0.5/16", "ips": []}});
        let err = c.decode(Kind::Pool, &obj).unwrap_err().to_string();
        assert!(err.contains("ippools/test-ippool"), "{err}");
        // A store with a prefix does not see it.
        let other = Codec {
            prefix: "t1-".into(),
        };
        obj.data = json!({"spec": {"subnet": "10.6.0.0/16", "ips": []}});
        assert!(other.decode(Kind::Pool, &obj).unwrap().is_none());
    }
}
