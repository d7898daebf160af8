//! `IPPool` and `ReservedIP`: the documents, their status, and kubectl's `List`.

use std::ops::{Deref, DerefMut};

use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An IPPool's spec: ipam-core's `IpPoolSpec`, with Spiderpool's field names.
// The type is ipam_core::IpPoolSpec, written as it is: this wrapper derefs to it, so
// `pool.spec.subnet` reads the subnet. (Not a doc comment: the CRD's schema takes those.)
#[derive(
    CustomResource, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema,
)]
#[kube(
    group = "ipam.rs",
    version = "v1alpha1",
    kind = "IPPool",
    plural = "ippools",
    status = "IPPoolStatus",
    derive = "PartialEq",
    crates(kube_core = "::kube_core"),
    doc = "An IPPool: addresses a CNI network may hand out (Spiderpool's `SpiderIPPool` fields).",
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
#[serde(transparent)]
pub struct IPPoolSpec(pub ipam_core::IpPoolSpec);

/// A ReservedIP's spec: ipam-core's `ReservedIpSpec`, written as it is.
// This wrapper derefs to it. (Not a doc comment: the CRD's schema takes those.)
#[derive(
    CustomResource, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema,
)]
#[kube(
    group = "ipam.rs",
    version = "v1alpha1",
    kind = "ReservedIP",
    plural = "reservedips",
    status = "ReservedIPStatus",
    derive = "PartialEq",
    crates(kube_core = "::kube_core"),
    doc = "A ReservedIP: addresses no pool of the store hands out (Spiderpool's `SpiderReservedIP`).",
    printcolumn(name = "VERSION", type_ = "integer", json_path = ".spec.ipVersion")
)]
#[serde(transparent)]
pub struct ReservedIPSpec(pub ipam_core::ReservedIpSpec);

macro_rules! wraps {
    ($outer:ty, $inner:ty) => {
        impl Deref for $outer {
            type Target = $inner;
            fn deref(&self) -> &$inner {
                &self.0
            }
        }
        impl DerefMut for $outer {
            fn deref_mut(&mut self) -> &mut $inner {
                &mut self.0
            }
        }
        impl From<$inner> for $outer {
            fn from(spec: $inner) -> $outer {
                Self(spec)
            }
        }
    };
}
wraps!(IPPoolSpec, ipam_core::IpPoolSpec);
wraps!(ReservedIPSpec, ipam_core::ReservedIpSpec);

/// A number of addresses: an integer up to [`Count::MAX_EXACT`], a string of its digits
/// above (an IPv6 /64 is `"18446744073709551616"`), so that no JSON reader rounds it and
/// readers that stop at 64 bits still read the document. Reads either form.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Count(pub u128);

impl Count {
    /// The largest integer every JSON reader holds exactly (2^53 − 1: JavaScript's
    /// `Number.MAX_SAFE_INTEGER`, and where a double stops holding every integer).
    pub const MAX_EXACT: u128 = (1 << 53) - 1;
}

impl Serialize for Count {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match u64::try_from(self.0) {
            Ok(small) if self.0 <= Count::MAX_EXACT => serializer.serialize_u64(small),
            _ => serializer.collect_str(&self.0),
        }
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Count, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Count;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a count: a non-negative integer, or its decimal digits")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Count, E> {
                Ok(Count(v.into()))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Count, E> {
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(E::invalid_value(serde::de::Unexpected::Str(v), &self));
                }
                v.parse().map(Count).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for Count {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Count".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "An integer up to 2^53-1, its decimal digits as a string above",
            "x-kubernetes-int-or-string": true
        })
    }
}

impl From<u128> for Count {
    fn from(n: u128) -> Count {
        Count(n)
    }
}

/// The counts of a pool, as the contract defines them: what `ipamctl get -o json` prints
/// and what `kubectl get ippools` reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct IPPoolStatus {
    /// `totalIPCount`.
    #[serde(rename = "totalIPCount")]
    pub total_ip_count: Count,
    /// `reservedIPCount`.
    #[serde(rename = "reservedIPCount")]
    pub reserved_ip_count: Count,
    /// `allocatedIPCount`.
    #[serde(rename = "allocatedIPCount")]
    pub allocated_ip_count: Count,
    /// `availableIPCount`.
    #[serde(rename = "availableIPCount")]
    pub available_ip_count: Count,
}

impl From<&ipam_core::PoolCounts> for IPPoolStatus {
    fn from(c: &ipam_core::PoolCounts) -> IPPoolStatus {
        IPPoolStatus {
            total_ip_count: c.total.into(),
            reserved_ip_count: c.reserved.into(),
            allocated_ip_count: c.allocated.into(),
            available_ip_count: c.available.into(),
        }
    }
}

/// The status of a ReservedIP: how many addresses it covers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReservedIPStatus {
    /// The number of addresses its `ips` cover (overlaps counted once).
    #[serde(rename = "reservedIPCount")]
    pub reserved_ip_count: Count,
}

impl IPPool {
    /// The document of a pool and its counts, as `ipamctl get -o json` prints it.
    pub fn of(pool: &ipam_core::IpPool, counts: &ipam_core::PoolCounts) -> IPPool {
        let mut doc = IPPool::new(pool.name().as_str(), IPPoolSpec(pool.spec().clone()));
        doc.status = Some(counts.into());
        doc
    }
}

impl ReservedIP {
    /// The document of a reservation, with its count, as `ipamctl get -o json` prints it.
    pub fn of(reserved: &ipam_core::ReservedIp) -> ReservedIP {
        let mut doc = ReservedIP::new(
            reserved.name().as_str(),
            ReservedIPSpec(reserved.spec().clone()),
        );
        doc.status = Some(ReservedIPStatus {
            reserved_ip_count: reserved.addresses().len().into(),
        });
        doc
    }
}

/// Several objects, as kubectl prints a list: `apiVersion: v1`, `kind: List`, `items`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct List<T> {
    /// `v1`.
    pub api_version: String,
    /// `List`.
    pub kind: String,
    /// The objects.
    pub items: Vec<T>,
}

impl<T> List<T> {
    /// A list of `items`.
    pub fn new(items: Vec<T>) -> List<T> {
        List {
            api_version: "v1".to_owned(),
            kind: "List".to_owned(),
            items,
        }
    }
}

/// What the plugin reads of a Pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodDetails {
    /// `metadata.uid`.
    pub uid: Option<String>,
    /// `metadata.annotations`.
    pub annotations: std::collections::BTreeMap<String, String>,
    /// The StatefulSet that controls the Pod (its controller owner reference of kind
    /// `StatefulSet` in `apps`), where one does.
    pub statefulset: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_integers_while_exact_and_read_either_form() {
        let big = Count(1 << 64);
        assert_eq!(
            serde_json::to_value(Count(3)).unwrap(),
            serde_json::json!(3)
        );
        assert_eq!(
            serde_json::to_value(big).unwrap(),
            serde_json::json!("18446744073709551616")
        );
        assert_eq!(
            serde_json::to_value(Count(Count::MAX_EXACT + 1)).unwrap(),
            serde_json::json!("9007199254740992")
        );
        // Status written by earlier builds holds strings.
        for (v, n) in [
            (serde_json::json!("3"), 3),
            (serde_json::json!(3), 3),
            (serde_json::json!("18446744073709551616"), 1 << 64),
        ] {
            assert_eq!(serde_json::from_value::<Count>(v).unwrap(), Count(n));
        }
        for bad in [
            serde_json::json!("-1"),
            serde_json::json!(""),
            serde_json::json!(-1),
        ] {
            assert!(serde_json::from_value::<Count>(bad).is_err());
        }
    }
}
