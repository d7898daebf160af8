//! An [`ipam_core::Store`] on Kubernetes custom resources, through kube-rs.
//!
//! Pools and reservations are the cluster's `IPPool` and `ReservedIP` objects (group
//! `ipam.rs/v1alpha1`, Spiderpool's field names), or, where the installation serves
//! Spiderpool's API instead ([`KubeOptions::api`], [`Api::Spiderpool`]), its
//! `SpiderIPPool` and `SpiderReservedIP` objects; the allocation state is a set of small
//! objects in one namespace, each the unit of compare-and-swap: an `IPAMBlock` per 64
//! addresses decides who holds them, an `IPAMOwner` per container interface indexes what it
//! holds. The kinds are [`ipam_api`]'s; [`codec`] says which object a record lives at and
//! [`KubeStore`] how a transaction becomes requests.
//!
//! A library never picks the Kubernetes API version of `k8s-openapi`: the binary that uses
//! this crate enables one of its `v1_*` features (the plugin and the tests use `v1_33`).
//!
//! ```no_run
//! use ipam_kube::{KubeOptions, KubeStore};
//! let store = KubeStore::connect(&KubeOptions {
//!     kubeconfig: Some("/etc/cni/net.d/ipam-cni.kubeconfig".into()),
//!     ..KubeOptions::default()
//! }).unwrap();
//! // Each node allocates from blocks of its own.
//! let config = ipam_core::Config {
//!     node: Some(ipam_core::ObjectName::new("node-1").unwrap()),
//!     ..ipam_core::Config::default()
//! };
//! let ipam = ipam_core::Ipam::with_config(store, config);
//! ```

pub mod codec;
mod connection;
mod store;

pub use ipam_api::{Api, PodDetails};
pub use store::{
    node_facts, pod_facts, statefulset_facts, ApiRequests, KubeOptions, KubeStore, CACHE_LIMIT,
    DEFAULT_NAMESPACE, ETCD_REQUEST_LIMIT, MAX_OBJECT_BYTES,
};
