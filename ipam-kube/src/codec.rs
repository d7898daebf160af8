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

use ipam_core::backend::to_u128;
use ipam_core::backend::BLOCK_BITS;
use ipam_core::backend::{BlockRecord, Holder};
use ipam_core::backend::{Held, InvalidRecord, Key, KeyRange, Record};
use ipam_core::Family;
use ipam_core::{
    IpPool, IpPoolSpec, ObjectName, Owner, PodRef, PoolState, ReservedIp, ReservedIpSpec,
    StoreError,
};
use ipam_core::{Version, Versioned};
use kube::core::{ApiResource, DynamicObject, ObjectMeta};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use ipam_api::internal as crd;
use ipam_api::spiderpool::SpiderIPPoolSpec;
use ipam_api::Api;

/// The annotation that keeps an object's real name.
pub const NAME_ANNOTATION: &str = "ipam.rs/name";
/// The label that sets apart the cluster-scoped objects of one store (when it has a prefix).
pub const STORE_LABEL: &str = "ipam.rs/store";
/// The label of a block's family, `4` or `6`: lists of blocks select by it.
pub const FAMILY_LABEL: &str = "ipam.rs/family";
/// The annotation that holds a pool still while `ipamctl` deletes it (`deleting`) or moves
/// it to another subnet (`changing`): it hands out nothing then (see `ipam_core::PoolState`).
pub const STATE_ANNOTATION: &str = "ipam.rs/state";
/// The annotation naming the store namespace whose blocks hold a pool's addresses, on pools
/// of stores in a namespace other than the default (`ipam-rs`): a pool is used from one
/// store only, so that one address of it is held in one namespace's blocks.
pub const NAMESPACE_ANNOTATION: &str = "ipam.rs/namespace";

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
    /// `IPAMGuard`.
    Guard,
}

impl Kind {
    /// The API resource, for dynamic requests: pools and reservations are of the
    /// installation's `api`, the allocation kinds ours in either.
    pub fn resource(self, api: Api) -> ApiResource {
        use kube::Resource;
        fn of<K: Resource<DynamicType = ()>>() -> ApiResource {
            ApiResource::erase::<K>(&())
        }
        match self {
            Kind::Pool => api.pools(),
            Kind::ReservedIp => api.reservations(),
            Kind::Block => of::<crd::IPAMBlock>(),
            Kind::Owner => of::<crd::IPAMOwner>(),
            Kind::Cursor => of::<crd::IPAMCursor>(),
            Kind::Guard => of::<crd::IPAMGuard>(),
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
            KeyRange::Cursors => (Kind::Cursor, None),
        }
    }
}

/// How one store names its objects.
#[derive(Clone, Debug)]
pub struct Codec {
    /// Put before the names of cluster-scoped objects, and their label's value: sets apart
    /// stores that share a cluster (tests). Empty in production.
    pub prefix: String,
    /// The store's namespace, where its allocation objects live; pools belong to one.
    pub namespace: String,
    /// The API pools and reservations are served with.
    pub api: Api,
}

/// Where a key lives on the API server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// An object of this kind, under this name.
    Object(Kind, String),
    /// Nowhere: the reservation summary, which the store derives from the ReservedIP
    /// objects instead of keeping it (so that one applied with kubectl counts at once).
    Derived,
}

impl Codec {
    /// Where `key` lives: the kind and name of its object, or [`Place::Derived`] for the
    /// reservation summary.
    pub fn place(&self, key: &Key) -> Place {
        let (kind, name) = match key {
            Key::Pool(n) => (Kind::Pool, self.cluster_name(n)),
            Key::ReservedIp(n) => (Kind::ReservedIp, self.cluster_name(n)),
            Key::ReservedSummary => return Place::Derived,
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
            Key::PoolGuard => (Kind::Guard, "ippools".to_owned()),
            Key::Owner(o) => (
                Kind::Owner,
                format!(
                    "o-{}",
                    &hex(&format!("{}/{}", o.container_id(), o.ifname()))[..40]
                ),
            ),
        };
        Place::Object(kind, name)
    }

    /// The kind and object name of `key`; `None` for the reservation summary, which has no
    /// object of its own ([`Place::Derived`]).
    pub fn locate(&self, key: &Key) -> Option<(Kind, String)> {
        match self.place(key) {
            Place::Object(kind, name) => Some((kind, name)),
            Place::Derived => None,
        }
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

    /// The API resource of `kind` in this store's installation.
    pub fn resource(&self, kind: Kind) -> ApiResource {
        kind.resource(self.api)
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
                if self.namespace != crate::DEFAULT_NAMESPACE {
                    annotations.insert(NAMESPACE_ANNOTATION.to_owned(), self.namespace.clone());
                }
                match p.state() {
                    PoolState::Active => {}
                    PoolState::Deleting => {
                        annotations.insert(STATE_ANNOTATION.to_owned(), "deleting".to_owned());
                    }
                    PoolState::Changing => {
                        annotations.insert(STATE_ANNOTATION.to_owned(), "changing".to_owned());
                    }
                }
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
                        statefulset: h.pod.as_ref().and_then(|p| p.statefulset.clone()),
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
                serde_json::to_value(crd::IPAMOwnerSpec {
                    container_id: owner.container_id().to_owned(),
                    ifname: owner.ifname().to_owned(),
                    held: held
                        .iter()
                        .map(|h| crd::HeldSpec {
                            network: h.network.clone(),
                            address: h.address.to_string(),
                        })
                        .collect(),
                })
                .expect("an owner serializes")
            }
            Record::PoolRanges(ranges) => serde_json::to_value(crd::IPAMGuardSpec {
                pools: ranges
                    .0
                    .iter()
                    .map(|(name, (family, ips))| crd::GuardedPoolSpec {
                        name: name.to_string(),
                        ip_version: family.version(),
                        ips: ips
                            .intervals()
                            .iter()
                            .map(|&(a, b)| format!("{}-{}", family.addr(a), family.addr(b)))
                            .collect(),
                    })
                    .collect(),
            })
            .expect("a guard serializes"),
            Record::Cursor(next) => {
                let Key::Cursor { pool, node } = key else {
                    unreachable!("cursors live under cursor keys")
                };
                serde_json::to_value(crd::IPAMCursorSpec {
                    pool: pool.to_string(),
                    node: node.as_ref().map(ToString::to_string),
                    next: next.to_string(),
                })
                .expect("a cursor serializes")
            }
            // Never written as objects: the summary is derived from the ReservedIP objects
            // (`object` is only asked for keys `locate` places), and an invalid record is
            // never written (the `Store` contract).
            Record::ReservedSummary(_) | Record::Invalid(_) => Value::Null,
        };
        let resource = self.resource(kind);
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
    /// object of another store (another prefix, or a pool of another namespace's store).
    ///
    /// `asked` is the key the object was read by, if it was read by key. An object whose
    /// key is known (asked, or given by its name or its identifying fields) but whose content
    /// does not read as that key's record comes back as [`Record::Invalid`] with its version,
    /// so that it can be shown, replaced and deleted, and so that nothing it covers is handed
    /// out. An object whose key cannot be known is an error here; lists leave it out, as it
    /// lies under no key the engine ever reads.
    pub fn decode(
        &self,
        kind: Kind,
        obj: &DynamicObject,
        asked: Option<&Key>,
    ) -> Result<Option<(Key, Versioned<Record>)>, StoreError> {
        let name = obj.metadata.name.clone().unwrap_or_default();
        let what = format!("{}/{name}", self.resource(kind).plural);
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
        let key = match asked {
            Some(key) => key.clone(),
            None => match self.key_of(kind, obj, &spec) {
                Ok(Some(key)) => key,
                Ok(None) => return Ok(None),
                Err(reason) => return Err(corrupt(reason)),
            },
        };
        if kind == Kind::Pool {
            if let Some(owner) = self.foreign_pool(obj) {
                return Err(StoreError::Io {
                    context: format!("read {what}"),
                    source: format!(
                        "the pool belongs to the store in namespace {owner:?} (annotation {NAMESPACE_ANNOTATION}), not to this one in {:?}: \
                         a pool's addresses are held in one namespace's blocks, so it is used from that store only",
                        self.namespace
                    )
                    .into(),
                });
            }
        }
        let record = match self.record_of(&key, &spec, &name) {
            Ok(Record::Pool(pool)) => match pool_state(obj) {
                Ok(state) => Record::Pool(pool.with_state(state)),
                Err(reason) => Record::Invalid(InvalidRecord {
                    object: what,
                    reason,
                }),
            },
            Ok(record) => record,
            Err(reason) => Record::Invalid(InvalidRecord {
                object: what,
                reason,
            }),
        };
        Ok(Some((
            key,
            Versioned {
                value: record,
                version,
            },
        )))
    }

    /// The namespace whose store owns a pool object, if not this one: pools carry
    /// [`NAMESPACE_ANNOTATION`], and those without it (applied with kubectl, or by a store of
    /// the default namespace) belong to the default namespace's store.
    fn foreign_pool(&self, obj: &DynamicObject) -> Option<String> {
        let owner = obj
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(NAMESPACE_ANNOTATION))
            .map(String::as_str)
            .unwrap_or(crate::DEFAULT_NAMESPACE);
        (owner != self.namespace).then(|| owner.to_owned())
    }

    /// The key an object read in a list lies under, from its name or its identifying fields;
    /// `None` when it belongs to another store; an error when it lies under no key.
    fn key_of(&self, kind: Kind, obj: &DynamicObject, spec: &Value) -> Result<Option<Key>, String> {
        let name = obj.metadata.name.clone().unwrap_or_default();
        let key = match kind {
            Kind::Pool | Kind::ReservedIp => {
                if kind == Kind::Pool && self.foreign_pool(obj).is_some() {
                    return Ok(None);
                }
                // The real name is the annotation's when the object is where that name maps
                // to; otherwise the object's own (applied with kubectl, perhaps as a copy of
                // another object that carried the annotation along).
                let annotated = obj
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(NAME_ANNOTATION))
                    .filter(|a| mapped_name(a) == name);
                let real = annotated.unwrap_or(&name);
                let Some(real) = real.strip_prefix(&self.prefix) else {
                    return Ok(None);
                };
                let real = ObjectName::new(real).map_err(|e| e.to_string())?;
                if kind == Kind::Pool {
                    Key::Pool(real)
                } else {
                    Key::ReservedIp(real)
                }
            }
            Kind::Block => {
                let (family, hex_first) = match name.split_once('-') {
                    Some(("b4", h)) if h.len() == 8 => (Family::V4, h),
                    Some(("b6", h)) if h.len() == 32 => (Family::V6, h),
                    _ => return Err("not a block's name (b4-HEX8 or b6-HEX32)".into()),
                };
                let first = u128::from_str_radix(hex_first, 16)
                    .map_err(|_| "not a block's name (b4-HEX8 or b6-HEX32)".to_owned())?;
                if first & ((1 << BLOCK_BITS) - 1) != 0 || first > family.max_value() {
                    return Err("not a block's name: not the first address of a block".into());
                }
                Key::Block {
                    family,
                    index: first >> BLOCK_BITS,
                }
            }
            Kind::Owner => Key::Owner(
                Owner::new(text(spec, "containerID")?, text(spec, "ifname")?)
                    .map_err(|e| e.to_string())?,
            ),
            Kind::Guard if name == "ippools" => Key::PoolGuard,
            Kind::Guard => return Err("not the pools' guard (named ippools)".into()),
            Kind::Cursor => Key::Cursor {
                pool: ObjectName::new(text(spec, "pool")?).map_err(|e| e.to_string())?,
                node: match spec.get("node") {
                    None => None,
                    Some(_) => {
                        Some(ObjectName::new(text(spec, "node")?).map_err(|e| e.to_string())?)
                    }
                },
            },
        };
        // An object found under a name its content does not give lies under nobody's key.
        let expected = self.locate(&key).map(|(_, n)| n).unwrap_or_default();
        if expected != name {
            return Err(format!("its content belongs under {expected:?}"));
        }
        Ok(Some(key))
    }

    /// The record an object's `spec` gives under `key` (its object `name`), or what is wrong
    /// with it, naming the field.
    fn record_of(&self, key: &Key, spec: &Value, name: &str) -> Result<Record, String> {
        let address = |s: &str| -> Result<IpAddr, String> {
            s.parse().map_err(|_| format!("{s:?} is not an address"))
        };
        let expected = self.locate(key).map(|(_, n)| n).unwrap_or_default();
        if expected != name {
            return Err(format!("its content belongs under {expected:?}"));
        }
        Ok(match key {
            Key::Pool(real) => {
                let spec: IpPoolSpec = match self.api {
                    Api::IpamRs => {
                        serde_json::from_value(spec.clone()).map_err(|e| format!("spec: {e}"))?
                    }
                    // Spiderpool's fields that we do not implement make the pool invalid,
                    // named, rather than silently widened.
                    Api::Spiderpool => SpiderIPPoolSpec::to_pool_spec(spec)?,
                };
                Record::Pool(IpPool::new(real.as_str(), spec).map_err(|e| e.to_string())?)
            }
            Key::ReservedIp(real) => {
                let spec: ReservedIpSpec =
                    serde_json::from_value(spec.clone()).map_err(|e| format!("spec: {e}"))?;
                Record::ReservedIp(ReservedIp::new(real.as_str(), spec).map_err(|e| e.to_string())?)
            }
            Key::Block { family, index } => {
                let (family, index) = (*family, *index);
                // Holders one by one, so that a bad one is named by its index.
                let mut spec = spec.clone();
                let holders = spec.as_object_mut().and_then(|o| o.remove("holders"));
                let holders: Vec<Value> = match holders {
                    Some(Value::Array(all)) => all,
                    Some(Value::Null) | None => Vec::new(),
                    Some(other) => return Err(format!("spec.holders: {other} is not a list")),
                };
                let mut spec: crd::IPAMBlockSpec =
                    serde_json::from_value(spec).map_err(|e| format!("spec: {e}"))?;
                for (i, h) in holders.into_iter().enumerate() {
                    spec.holders.push(
                        serde_json::from_value(h).map_err(|e| format!("spec.holders[{i}]: {e}"))?,
                    );
                }
                let first = family.addr(index << BLOCK_BITS);
                let cidr = format!("{first}/{}", family.bits() - BLOCK_BITS);
                if spec.cidr != cidr {
                    return Err(format!("spec.cidr {:?} is not {cidr}", spec.cidr));
                }
                let mut block = BlockRecord::new(family, index);
                if let Some(node) = spec.node {
                    block.set_affinity(Some(
                        ObjectName::new(node).map_err(|e| format!("spec.node: {e}"))?,
                    ));
                }
                if let Some(next) = &spec.next {
                    let a = address(next).map_err(|e| format!("spec.next: {e}"))?;
                    if Family::of(a) != family {
                        return Err(format!("spec.next: {a} is not of {cidr}"));
                    }
                    block.set_next(Some(to_u128(a)));
                }
                for (i, h) in spec.holders.into_iter().enumerate() {
                    let field = format!("spec.holders[{i}]");
                    let a = address(&h.address).map_err(|e| format!("{field}: {e}"))?;
                    let value = to_u128(a);
                    if Family::of(a) != family || value >> BLOCK_BITS != index {
                        return Err(format!("{field}: {a} is outside {cidr}"));
                    }
                    let owner = Owner::new(h.container_id, h.ifname)
                        .map_err(|e| format!("{field}: {e}"))?;
                    let pool = ObjectName::new(h.pool).map_err(|e| format!("{field}: {e}"))?;
                    let node = match h.node {
                        Some(n) => Some(ObjectName::new(n).map_err(|e| format!("{field}: {e}"))?),
                        None => None,
                    };
                    let pod = h.pod_name.map(|name| PodRef {
                        namespace: h.pod_namespace,
                        name,
                        uid: h.pod_uid,
                        statefulset: h.statefulset,
                    });
                    let holder = Holder {
                        owner,
                        network: h.network,
                        pool,
                        pod,
                        node,
                    };
                    if !block.insert(value, holder) {
                        return Err(format!("{field}: {a} is held twice"));
                    }
                }
                Record::Block(block)
            }
            Key::Owner(owner) => {
                let found = Owner::new(text(spec, "containerID")?, text(spec, "ifname")?)
                    .map_err(|e| e.to_string())?;
                if found != *owner {
                    return Err(format!("spec names owner {found}, not {owner}"));
                }
                let mut held = Vec::new();
                for (i, h) in spec
                    .get("held")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let field = format!("spec.held[{i}]");
                    held.push(Held {
                        network: text(h, "network").map_err(|e| format!("{field}: {e}"))?,
                        address: address(&text(h, "address").map_err(|e| format!("{field}: {e}"))?)
                            .map_err(|e| format!("{field}.address: {e}"))?,
                    });
                }
                Record::Owner(held)
            }
            Key::PoolGuard => {
                let spec: crd::IPAMGuardSpec =
                    serde_json::from_value(spec.clone()).map_err(|e| format!("spec: {e}"))?;
                let mut pools = std::collections::BTreeMap::new();
                for (i, p) in spec.pools.into_iter().enumerate() {
                    let field = format!("spec.pools[{i}]");
                    let name = ObjectName::new(p.name).map_err(|e| format!("{field}.name: {e}"))?;
                    let family = Family::from_version(p.ip_version).ok_or_else(|| {
                        format!("{field}.ipVersion: {} is not 4 or 6", p.ip_version)
                    })?;
                    let mut intervals = Vec::with_capacity(p.ips.len());
                    for range in &p.ips {
                        let bad = || {
                            format!(
                                "{field}.ips: {range:?} is not FIRST-LAST of IPv{}",
                                family.version()
                            )
                        };
                        let (a, b) = range.split_once('-').ok_or_else(bad)?;
                        let (a, b): (IpAddr, IpAddr) =
                            (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                        if Family::of(a) != family || Family::of(b) != family {
                            return Err(bad());
                        }
                        intervals.push((to_u128(a), to_u128(b)));
                    }
                    let ips = ipam_core::IntervalSet::try_from(intervals)
                        .map_err(|e| format!("{field}.ips: {e}"))?;
                    pools.insert(name, (family, ips));
                }
                Record::PoolRanges(ipam_core::backend::PoolRanges(pools))
            }
            Key::Cursor { .. } => {
                let next = text(spec, "next")?
                    .parse::<u128>()
                    .map_err(|e| format!("spec.next: {e}"))?;
                Record::Cursor(next)
            }
            Key::ReservedSummary => unreachable!("{key} is derived, not an object"),
        })
    }
}

/// A pool object's state, from [`STATE_ANNOTATION`] (absent: active).
fn pool_state(obj: &DynamicObject) -> Result<PoolState, String> {
    match obj
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(STATE_ANNOTATION))
        .map(String::as_str)
    {
        None => Ok(PoolState::Active),
        Some("deleting") => Ok(PoolState::Deleting),
        Some("changing") => Ok(PoolState::Changing),
        Some(other) => Err(format!(
            "metadata.annotations[{STATE_ANNOTATION}]: {other:?} is not deleting or changing"
        )),
    }
}

/// `spec.FIELD` of `v` as a string, or what is wrong with it.
fn text(v: &Value, field: &str) -> Result<String, String> {
    v.get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("spec.{field} missing or not a string"))
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
            namespace: crate::DEFAULT_NAMESPACE.into(),
            api: Api::IpamRs,
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
                    statefulset: None,
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
            (
                Key::PoolGuard,
                Record::PoolRanges(ipam_core::backend::PoolRanges(
                    [
                        (pool.name().clone(), (Family::V4, pool.ips().clone())),
                        (
                            reserved.name().clone(),
                            (Family::V6, reserved.addresses().clone()),
                        ),
                    ]
                    .into(),
                )),
            ),
        ];
        for (key, record) in cases {
            let (kind, name) = c.locate(&key).unwrap();
            assert!(valid_object_name(&name), "{name}");
            let obj = with_version(c.object(&key, &record));
            let (k, v) = c.decode(kind, &obj, None).unwrap().expect("ours");
            assert_eq!((k, v.value), (key, record));
            assert_eq!(v.version, Version::new("42"));
        }
    }

    #[test]
    fn a_kubectl_applied_pool_reads_by_its_object_name_and_foreign_content_is_refused() {
        let c = codec();
        let mut obj = DynamicObject::new("test-ippool", &Kind::Pool.resource(Api::IpamRs));
        obj.metadata.resource_version = Some("7".into());
        obj.data = json!({"spec": {"subnet": "10.6.0.0/16", "ips": ["10.6.168.131-10.6.168.133"]}});
        let (key, _) = c.decode(Kind::Pool, &obj, None).unwrap().unwrap();
        assert_eq!(key, Key::Pool(ObjectName::new("test-ippool").unwrap()));
        // Invalid content reads as an invalid record under its key, naming the object and
        // the field, with the version to replace or delete it by.
        obj.data = json!({"spec": {"subnet": "10.6.0.5/16", "ips": []}});
        let (key, read) = c.decode(Kind::Pool, &obj, None).unwrap().unwrap();
        assert_eq!(key, Key::Pool(ObjectName::new("test-ippool").unwrap()));
        assert_eq!(read.version, Version::new("7"));
        let Record::Invalid(bad) = read.value else {
            panic!("{:?}", read.value)
        };
        assert_eq!(bad.object, "ippools/test-ippool");
        assert!(bad.reason.contains("spec.subnet"), "{}", bad.reason);
        // A store with a prefix does not see it.
        let other = Codec {
            prefix: "t1-".into(),
            namespace: crate::DEFAULT_NAMESPACE.into(),
            api: Api::IpamRs,
        };
        obj.data = json!({"spec": {"subnet": "10.6.0.0/16", "ips": []}});
        assert!(other.decode(Kind::Pool, &obj, None).unwrap().is_none());
        // Nor does a store of another namespace: the pool is the default namespace's.
        let elsewhere = Codec {
            prefix: String::new(),
            namespace: "ipam-other".into(),
            api: Api::IpamRs,
        };
        assert!(elsewhere.decode(Kind::Pool, &obj, None).unwrap().is_none());
        let asked = Key::Pool(ObjectName::new("test-ippool").unwrap());
        let err = elsewhere
            .decode(Kind::Pool, &obj, Some(&asked))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("belongs to the store in namespace \"ipam-rs\""),
            "{err}"
        );
        // A copy made with kubectl, renamed, carries the original's name annotation: it is
        // read under its own name.
        let mut copy = obj.clone();
        copy.metadata.name = Some("copy".into());
        copy.data = json!({"spec": {"subnet": "10.6.0.0/16", "ips": ["10.6.0.1"]}});
        copy.metadata.annotations =
            Some([(NAME_ANNOTATION.to_owned(), "test-ippool".to_owned())].into());
        let (key, read) = c.decode(Kind::Pool, &copy, None).unwrap().unwrap();
        assert_eq!(key, Key::Pool(ObjectName::new("copy").unwrap()));
        assert!(matches!(read.value, Record::Pool(_)));
    }

    #[test]
    fn spiderpool_objects_read_as_pools_and_reservations_and_unimplemented_fields_are_named() {
        let c = Codec {
            api: Api::Spiderpool,
            ..codec()
        };
        let pool =
            ipam_core::testkit::pool("test-ippool", "10.6.0.0/16", &["10.6.168.131-10.6.168.133"]);
        let reserved =
            ipam_core::testkit::reserved("test-reservedip", &["10.6.168.131-10.6.168.132"]);
        for (key, record, kind, api_kind) in [
            (
                Key::Pool(pool.name().clone()),
                Record::Pool(pool.clone()),
                Kind::Pool,
                "SpiderIPPool",
            ),
            (
                Key::ReservedIp(reserved.name().clone()),
                Record::ReservedIp(reserved.clone()),
                Kind::ReservedIp,
                "SpiderReservedIP",
            ),
        ] {
            let obj = with_version(c.object(&key, &record));
            let types = obj.types.clone().unwrap();
            assert_eq!(
                (types.api_version.as_str(), types.kind.as_str()),
                ("spiderpool.spidernet.io/v2beta1", api_kind)
            );
            let (k, v) = c.decode(kind, &obj, None).unwrap().expect("ours");
            assert_eq!((k, v.value), (key, record));
        }
        // As kubectl writes the seed's pool, with a field Spiderpool has and we do not.
        let mut obj = DynamicObject::new("test-ippool", &Kind::Pool.resource(Api::Spiderpool));
        obj.metadata.resource_version = Some("7".into());
        obj.data = json!({"spec": {"subnet": "10.6.0.0/16", "ips": ["10.6.168.131-10.6.168.133"],
            "podAffinity": {}, "disable": false}});
        let (_, read) = c.decode(Kind::Pool, &obj, None).unwrap().unwrap();
        assert_eq!(read.value, Record::Pool(pool));
        obj.data["spec"]["nodeName"] = json!(["node1"]);
        let (key, read) = c.decode(Kind::Pool, &obj, None).unwrap().unwrap();
        assert_eq!(key, Key::Pool(ObjectName::new("test-ippool").unwrap()));
        let Record::Invalid(bad) = read.value else {
            panic!("{:?}", read.value)
        };
        assert_eq!(bad.object, "spiderippools/test-ippool");
        assert!(
            bad.reason
                .starts_with(r#"spec.nodeName: ["node1"]: not implemented by ipam-rs: "#),
            "{}",
            bad.reason
        );
    }
}
