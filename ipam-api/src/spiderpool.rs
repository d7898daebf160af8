//! Spiderpool's `SpiderIPPool` and `SpiderReservedIP` (`spiderpool.spidernet.io/v2beta1`),
//! which an installation may serve instead of our kinds ([`crate::Api::Spiderpool`],
//! `deploy/spiderpool-compat/`), so that Spiderpool's manifests and kubectl commands work
//! as written.
//!
//! Cluster-scoped as Spiderpool's, with Spiderpool's plurals, singulars and short names
//! (`sp`, `sr`) and our fields. Spiderpool's other v2beta1 pool fields are declared too, so
//! that the API server keeps them instead of pruning them silently, each with a constraint
//! that only an empty value meets ([`UNIMPLEMENTED`]): `kubectl apply` of a pool that uses
//! one is refused naming the field, and the store reads an object that uses one anyway
//! (written before the schema, or with a schema of Spiderpool's own) as invalid, naming it
//! ([`SpiderIPPoolSpec::to_pool_spec`]).

use std::collections::BTreeMap;

use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{IPPoolStatus, ReservedIPStatus};

/// The API group of Spiderpool's kinds.
pub const GROUP: &str = "spiderpool.spidernet.io";
/// `apiVersion` of Spiderpool's kinds.
pub const API_VERSION: &str = "spiderpool.spidernet.io/v2beta1";
/// Spiderpool's kind for pools.
pub const KIND_POOL: &str = "SpiderIPPool";
/// Spiderpool's kind for reservations.
pub const KIND_RESERVED: &str = "SpiderReservedIP";

/// Spiderpool's v2beta1 pool fields that ipam-rs does not implement, each with why, as
/// messages continue `spec.FIELD: `. Exactly the fields of [`Unimplemented`].
pub const UNIMPLEMENTED: &[(&str, &str)] = &[
    (
        "vlan",
        "deprecated in Spiderpool and not used for allocation",
    ),
    (
        "podAffinity",
        "pool selection filters are not implemented: the pool serves every network that names it",
    ),
    (
        "namespaceAffinity",
        "pool selection filters are not implemented: the pool serves every network that names it",
    ),
    (
        "namespaceName",
        "pool selection filters are not implemented: the pool serves every network that names it",
    ),
    (
        "nodeAffinity",
        "pool selection filters are not implemented: the pool serves every network that names it",
    ),
    (
        "nodeName",
        "pool selection filters are not implemented: the pool serves every network that names it",
    ),
    (
        "multusName",
        "pool selection filters are not implemented: the pool serves every network that names it",
    ),
    (
        "disable",
        "disabled pools are not supported: ipam-cni would hand out its addresses; \
         delete the pool instead, or reserve its addresses with a ReservedIP",
    ),
];

/// A SpiderIPPool's spec: our pool's fields and Spiderpool's that we do not implement.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "spiderpool.spidernet.io",
    version = "v2beta1",
    kind = "SpiderIPPool",
    plural = "spiderippools",
    singular = "spiderippool",
    shortname = "sp",
    category = "spiderpool",
    status = "IPPoolStatus",
    derive = "PartialEq",
    crates(kube_core = "::kube_core"),
    doc = "A SpiderIPPool, read by ipam-rs as an IPPool: addresses a CNI network may hand out.",
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
pub struct SpiderIPPoolSpec {
    /// Our fields.
    #[serde(flatten)]
    pub pool: ipam_core::IpPoolSpec,
    /// Spiderpool's fields that we do not implement: only empty values are taken.
    #[serde(flatten)]
    pub unimplemented: Unimplemented,
}

/// Spiderpool's v2beta1 SpiderIPPool fields that ipam-rs does not implement. Declared so
/// that the API server keeps them (it prunes undeclared fields silently), each with a
/// constraint that only an empty value (or `false`, `0`) meets, so that `kubectl apply`
/// refuses a manifest that uses one, naming the field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Unimplemented {
    /// Deprecated in Spiderpool (0 to 4094 there): only 0 here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 0))]
    pub vlan: Option<i64>,
    /// Pods that may use the pool: not implemented, only `{}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 0))]
    pub pod_affinity: Option<LabelSelector>,
    /// Namespaces that may use the pool: not implemented, only `{}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 0))]
    pub namespace_affinity: Option<LabelSelector>,
    /// Namespaces that may use the pool: not implemented, only `[]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 0))]
    pub namespace_name: Option<Vec<String>>,
    /// Nodes that may use the pool: not implemented, only `{}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 0))]
    pub node_affinity: Option<LabelSelector>,
    /// Nodes that may use the pool: not implemented, only `[]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 0))]
    pub node_name: Option<Vec<String>>,
    /// Multus networks that may use the pool: not implemented, only `[]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 0))]
    pub multus_name: Option<Vec<String>>,
    /// A pool switched off: not supported, only `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = [false]))]
    pub disable: Option<bool>,
}

/// Kubernetes' label selector (`metav1.LabelSelector`), as Spiderpool's affinities are.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Requirements on labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_expressions: Option<Vec<LabelSelectorRequirement>>,
    /// Labels and the values they must have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
}

/// One requirement of a label selector.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LabelSelectorRequirement {
    /// The label.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// The values, for `In` and `NotIn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
}

/// A SpiderReservedIP's spec: exactly our ReservedIP's (ipam-core's `ReservedIpSpec`).
#[derive(
    CustomResource, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema,
)]
#[kube(
    group = "spiderpool.spidernet.io",
    version = "v2beta1",
    kind = "SpiderReservedIP",
    plural = "spiderreservedips",
    singular = "spiderreservedip",
    shortname = "sr",
    category = "spiderpool",
    status = "ReservedIPStatus",
    derive = "PartialEq",
    crates(kube_core = "::kube_core"),
    doc = "A SpiderReservedIP, read by ipam-rs as a ReservedIP: addresses no pool hands out.",
    printcolumn(name = "VERSION", type_ = "integer", json_path = ".spec.ipVersion")
)]
#[serde(transparent)]
pub struct SpiderReservedIPSpec(pub ipam_core::ReservedIpSpec);

/// A Spiderpool field of a spec that ipam-rs does not implement, given a value that is not
/// empty.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("spec.{field}: {value}: not implemented by ipam-rs: {why}")]
pub struct UnimplementedField {
    /// The field (`podAffinity`).
    pub field: &'static str,
    /// Its value, as JSON.
    pub value: String,
    /// Why it is not taken ([`UNIMPLEMENTED`]).
    pub why: &'static str,
}

impl UnimplementedField {
    /// The field's full path (`spec.podAffinity`).
    pub fn path(&self) -> String {
        format!("spec.{}", self.field)
    }
}

/// Whether `value` is what an absent field means: `null`, `{}`, `[]`, `false` or `0`.
pub fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_i64() == Some(0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Takes Spiderpool's unimplemented fields ([`UNIMPLEMENTED`]) out of a SpiderIPPool's
/// spec: what is left is our pool's spec. Empty values are dropped; the first that is not
/// is refused.
pub fn take_unimplemented(spec: &mut Map<String, Value>) -> Result<(), UnimplementedField> {
    for (field, why) in UNIMPLEMENTED {
        if let Some(value) = spec.remove(*field) {
            if !is_empty(&value) {
                return Err(UnimplementedField {
                    field,
                    value: value.to_string(),
                    why,
                });
            }
        }
    }
    Ok(())
}

impl SpiderIPPoolSpec {
    /// The pool spec of a SpiderIPPool's `spec` as read from the cluster: refused (naming
    /// the field) when it uses a Spiderpool field we do not implement, otherwise read as
    /// our pool's spec, as strictly as ours (an unknown field is refused).
    pub fn to_pool_spec(spec: &Value) -> Result<ipam_core::IpPoolSpec, String> {
        let mut map = match spec {
            Value::Object(map) => map.clone(),
            Value::Null => Map::new(),
            other => return Err(format!("spec: {other} is not an object")),
        };
        take_unimplemented(&mut map).map_err(|e| e.to_string())?;
        serde_json::from_value(Value::Object(map)).map_err(|e| format!("spec: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unimplemented_fields_are_those_of_the_type() {
        let listed: Vec<&str> = UNIMPLEMENTED.iter().map(|(f, _)| *f).collect();
        assert_eq!(listed, crate::fields::of::<Unimplemented>());
        // None of them is one of ours.
        let ours = crate::fields::of::<ipam_core::IpPoolSpec>();
        assert!(listed.iter().all(|f| !ours.contains(f)), "{ours:?}");
    }

    #[test]
    fn a_spiderpool_pool_reads_as_ours_unless_it_uses_an_unimplemented_field() {
        let seed =
            serde_json::json!({"subnet": "10.6.0.0/16", "ips": ["10.6.168.131-10.6.168.133"]});
        let spec = SpiderIPPoolSpec::to_pool_spec(&seed).unwrap();
        assert_eq!(serde_json::to_value(&spec).unwrap(), seed);
        let mut empty = seed.clone();
        for (k, v) in [
            ("vlan", serde_json::json!(0)),
            ("podAffinity", serde_json::json!({})),
            ("nodeName", serde_json::json!([])),
            ("disable", serde_json::json!(false)),
        ] {
            empty[k] = v;
        }
        assert_eq!(SpiderIPPoolSpec::to_pool_spec(&empty).unwrap(), spec);
        let mut used = seed.clone();
        used["podAffinity"] = serde_json::json!({"matchLabels": {"app": "web"}});
        assert_eq!(
            SpiderIPPoolSpec::to_pool_spec(&used).unwrap_err(),
            r#"spec.podAffinity: {"matchLabels":{"app":"web"}}: not implemented by ipam-rs: pool selection filters are not implemented: the pool serves every network that names it"#
        );
        let mut disabled = seed.clone();
        disabled["disable"] = serde_json::json!(true);
        assert!(SpiderIPPoolSpec::to_pool_spec(&disabled)
            .unwrap_err()
            .starts_with("spec.disable: true: not implemented by ipam-rs: disabled pools"));
        let mut unknown = seed;
        unknown["frobnicate"] = serde_json::json!(1);
        assert!(SpiderIPPoolSpec::to_pool_spec(&unknown)
            .unwrap_err()
            .contains("unknown field `frobnicate`"));
    }
}
