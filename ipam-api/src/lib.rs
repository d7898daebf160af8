//! The Kubernetes documents of ipam-rs, written once: the types every program that reads or
//! writes them uses (the store's codec, `ipamctl apply` and `get -o json|yaml`, the CRD
//! generator of `deploy/`).
//!
//! - [`IPPool`] and [`ReservedIP`] (group `ipam.rs/v1alpha1`, cluster-scoped), their status
//!   ([`IPPoolStatus`], [`ReservedIPStatus`]) and kubectl's [`List`]. Their specs are
//!   ipam-core's wire forms ([`ipam_core::IpPoolSpec`], [`ipam_core::ReservedIpSpec`]), so a
//!   field is added in one place, and the CRD's schema, the manifests and the store follow.
//! - The allocation kinds the Kubernetes store keeps in its namespace ([`internal`]):
//!   `IPAMBlock`, `IPAMOwner`, `IPAMCursor`, `IPAMGuard`.
//! - Spiderpool's `SpiderIPPool` and `SpiderReservedIP` (`spiderpool.spidernet.io/v2beta1`,
//!   [`spiderpool`]), which an installation may serve instead of ours ([`Api::Spiderpool`]).
//! - What the plugin reads of a Pod ([`PodDetails`]), and what the lifecycle rules read of
//!   the cluster's Pods and Nodes ([`Workloads`]).
//!
//! No client: serde, schemars and kube's derive only. A library never picks the Kubernetes
//! API version of `k8s-openapi`: the binary that uses this crate enables one of its `v1_*`
//! features.
//!
//! ```
//! use ipam_api::{IPPool, IPPoolSpec};
//! let pool: IPPool = serde_json::from_str(r#"{
//!     "apiVersion": "ipam.rs/v1alpha1", "kind": "IPPool",
//!     "metadata": {"name": "test-ippool"},
//!     "spec": {"subnet": "10.6.0.0/16", "ips": ["10.6.168.131-10.6.168.133"]}
//! }"#).unwrap();
//! assert_eq!(pool.spec.subnet, "10.6.0.0/16");
//! let core = ipam_core::IpPool::new("test-ippool", pool.spec.0).unwrap();
//! assert_eq!(core.total(), 3);
//! ```

// kube's derive takes one `printcolumn(...)` per column, which clippy reads as the same
// attribute repeated.
#![allow(clippy::duplicated_attributes)]

pub mod decode;
pub mod fields;
pub mod internal;
mod objects;
pub mod spiderpool;
mod workloads;

use std::fmt;
use std::str::FromStr;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube_core::{ApiResource, CustomResourceExt, Resource};

pub use objects::{
    Count, IPPool, IPPoolSpec, IPPoolStatus, List, PodDetails, ReservedIP, ReservedIPSpec,
    ReservedIPStatus,
};
pub use workloads::{NodeFacts, PodFacts, PodPhase, StatefulSetFacts, Workloads};

/// The API group of this project's kinds.
pub const GROUP: &str = "ipam.rs";
/// The API version of this project's kinds.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of this project's kinds.
pub const API_VERSION: &str = "ipam.rs/v1alpha1";
/// Our kind for pools.
pub const KIND_POOL: &str = "IPPool";
/// Our kind for reservations.
pub const KIND_RESERVED: &str = "ReservedIP";

/// Which API an installation serves pools and reservations with. The allocation kinds
/// ([`internal`]) are ours in either.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Api {
    /// `IPPool` and `ReservedIP` of `ipam.rs/v1alpha1` (`deploy/crds/`).
    #[default]
    IpamRs,
    /// Spiderpool's `SpiderIPPool` and `SpiderReservedIP` of
    /// `spiderpool.spidernet.io/v2beta1` (`deploy/spiderpool-compat/`), with the same
    /// fields; Spiderpool's fields that ipam-rs does not implement are refused.
    Spiderpool,
}

impl Api {
    /// Every API, in the order of [`Api::name`]'s list in messages.
    pub const ALL: [Api; 2] = [Api::IpamRs, Api::Spiderpool];

    /// The name configurations and flags use: `ipam.rs` or `spiderpool`.
    pub fn name(self) -> &'static str {
        match self {
            Api::IpamRs => "ipam.rs",
            Api::Spiderpool => "spiderpool",
        }
    }

    /// The resource of pools.
    pub fn pools(self) -> ApiResource {
        match self {
            Api::IpamRs => ApiResource::erase::<IPPool>(&()),
            Api::Spiderpool => ApiResource::erase::<spiderpool::SpiderIPPool>(&()),
        }
    }

    /// The resource of reservations.
    pub fn reservations(self) -> ApiResource {
        match self {
            Api::IpamRs => ApiResource::erase::<ReservedIP>(&()),
            Api::Spiderpool => ApiResource::erase::<spiderpool::SpiderReservedIP>(&()),
        }
    }

    /// Every CustomResourceDefinition an installation of this API needs, in a stable order:
    /// the pools' and reservations' kinds, then the allocation kinds.
    pub fn crds(self) -> Vec<CustomResourceDefinition> {
        let mut crds = match self {
            Api::IpamRs => vec![IPPool::crd(), ReservedIP::crd()],
            Api::Spiderpool => vec![
                spiderpool::SpiderIPPool::crd(),
                spiderpool::SpiderReservedIP::crd(),
            ],
        };
        crds.extend(internal::crds());
        crds
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An API name that is none of [`Api::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{value:?}: must be \"ipam.rs\" or \"spiderpool\"")]
pub struct UnknownApi {
    /// The name given.
    pub value: String,
}

impl FromStr for Api {
    type Err = UnknownApi;
    fn from_str(s: &str) -> Result<Api, UnknownApi> {
        Api::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| UnknownApi {
                value: s.to_owned(),
            })
    }
}

/// The `apiVersion` of a kind, as its documents carry it.
pub fn api_version_of<K: Resource<DynamicType = ()>>() -> String {
    K::api_version(&()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_names_read_back() {
        for api in Api::ALL {
            assert_eq!(api.name().parse::<Api>(), Ok(api));
        }
        assert_eq!(
            "Spiderpool".parse::<Api>().unwrap_err().to_string(),
            r#""Spiderpool": must be "ipam.rs" or "spiderpool""#
        );
        assert_eq!(api_version_of::<IPPool>(), API_VERSION);
        assert_eq!(Api::IpamRs.pools().kind, KIND_POOL);
        assert_eq!(Api::IpamRs.reservations().kind, KIND_RESERVED);
        assert_eq!(Api::Spiderpool.pools().plural, "spiderippools");
        assert_eq!(Api::Spiderpool.reservations().plural, "spiderreservedips");
    }
}
