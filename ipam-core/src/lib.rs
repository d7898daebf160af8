//! # ipam-core
//!
//! The pure core of an IP address manager for container networks: address syntax, interval
//! sets, IPPools, cluster-wide ReservedIPs and allocation as set algebra over roaring
//! bitmaps, behind a [`Store`] trait.
//!
//! This crate does no I/O, spawns nothing and runs no async runtime: the [`Store`] trait's
//! methods are async, and their implementations (redb, sled, Kubernetes) live in other
//! crates; [`MemoryStore`] is the one kept here.
//!
//! ```
//! use ipam_core::*;
//! # pollster::block_on(async {
//! let ipam = Ipam::new(MemoryStore::new());
//! ipam.apply_reserved_ip(ReservedIp::new("test-reservedip", ReservedIpSpec {
//!     ips: vec!["10.6.168.131-10.6.168.132".into()],
//!     ip_version: None,
//! }).unwrap()).await.unwrap();
//! ipam.apply_pool(IpPool::new("test-ippool", IpPoolSpec {
//!     subnet: "10.6.0.0/16".into(),
//!     ips: vec!["10.6.168.131-10.6.168.133".into()],
//!     ..Default::default()
//! }).unwrap()).await.unwrap();
//!
//! let pod = |id: &str| {
//!     Request::new(Owner::new(id, "eth0").unwrap(), "macvlan")
//!         .slot(Slot::any_of([ObjectName::new("test-ippool").unwrap()]))
//! };
//! let first = ipam.allocate(&pod("a")).await.unwrap();
//! assert_eq!(first[0].allocation.address.to_string(), "10.6.168.133");
//! let second = ipam.allocate(&pod("b")).await.unwrap_err();
//! assert_eq!(
//!     second.to_string(),
//!     r#"all IP addresses used up: pool "test-ippool" (total 3, reserved 2, allocated 1, available 0)"#
//! );
//! # });
//! ```

// The README's examples compile and run as doctests of this crate.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

// The modules are private: the root below is the library's API, `backend` is what a store
// implementor needs, and `search` is the pure allocator. ARCHITECTURE.md states the boundary.
mod addr;
pub mod backend;
mod block;
mod engine;
mod error;
mod holder;
mod memory;
mod migrate;
mod name;
mod pool;
mod reserved;
pub mod search;
mod set;
mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
mod validation;

pub use addr::{parse_addr, parse_cidr, AddrError, AddrErrorKind, Family, IpRange};
pub use engine::{
    Applied, Config, EmptyBlock, Explanation, GcReport, Granted, Ipam, Leftovers, PoolFinding,
    Released, Request, Sleep, Slot, ThreadSleep,
};
pub use error::{Error, ObjectKind, PoolCounts, StillHeld, StoreError, Unavailable};
pub use holder::{Allocation, HeldFor, PodRef};
pub use memory::MemoryStore;
pub use name::{check_dns_label, check_dns_subdomain, ObjectName, Owner};
pub use pool::{IpPool, IpPoolSpec, PoolState, Route, RouteSpec, MAX_POOL_SIZE};
pub use reserved::{FamilySets, ReservedIp, ReservedIpSpec};
pub use search::Strategy;
pub use set::IntervalSet;
pub use store::{RecordSize, Store, Version, Versioned};
pub use validation::ValidationError;
