//! Opening the store that a network configuration, a command line or a service names: the
//! one place that knows the backends (redb, sled, Kubernetes). The CNI plugin, `ipamctl`
//! and any other program on the store open it here, so that a backend is added once.
//!
//! A [`StoreChoice`] can only name a backend this build has: a store the contract names but
//! the build lacks (Kubernetes or sled without their features) is refused with [`NotBuilt`]
//! when the configuration or the command line is read, never as a failure to open it. The
//! caller says how its advice quotes store names ([`Quoting`]); nothing here knows the CNI
//! protocol or a command line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ipam_core::{Store, StoreError};

/// The default data directory, as host-local's is `/var/lib/cni/networks`.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/ipam-cni";

/// How long a process waits for others holding an embedded store before failing as busy
/// (CNI code 11). A runtime starting many Pods at once serializes them here.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(30);

/// Which backend holds the state: one of those built in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StoreChoice {
    /// redb in the data directory (the default).
    #[default]
    Redb,
    /// sled in the data directory.
    #[cfg(feature = "sled")]
    Sled,
    /// Custom resources of a Kubernetes API server.
    #[cfg(feature = "kube")]
    Kubernetes(KubeChoice),
}

/// Where the Kubernetes store is: every field has a default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KubeChoice {
    /// The kubeconfig; `None`: the in-cluster service account, else `$KUBECONFIG` or
    /// `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// The node; `None`: this host's name.
    pub node: Option<String>,
    /// The namespace of the allocation objects; `None`: `ipam-rs`.
    pub namespace: Option<String>,
    /// The API pools and reservations are served with (`ipam.rs` by default).
    pub api: ipam_api::Api,
}

impl StoreChoice {
    /// The store, as messages name it: `the store at DIR`, or `the Kubernetes store`.
    pub fn describe(&self, data_dir: &Path) -> String {
        if self.is_embedded() {
            format!("the store at {}", data_dir.display())
        } else {
            "the Kubernetes store".to_owned()
        }
    }

    /// Whether the store lives in the data directory (redb, sled).
    pub fn is_embedded(&self) -> bool {
        match self {
            #[cfg(feature = "kube")]
            StoreChoice::Kubernetes(_) => false,
            _ => true,
        }
    }
}

/// A store kind the contract names but this build does not have. It is a mistake in what
/// the caller read (the plugin answers CNI code 7, `ipamctl` exits 1): nothing was tried.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("this build has no {what} backend{reason}; use {instead}")]
pub struct NotBuilt {
    /// The backend (`Kubernetes`, `sled`).
    pub what: &'static str,
    /// Why it is missing, as it continues the sentence (` yet`).
    pub reason: &'static str,
    /// What to use instead, quoted as the caller asked ([`Quoting`]).
    pub instead: String,
}

/// How store names are written in the advice of a [`NotBuilt`]: as the caller's input
/// writes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quoting {
    /// Quoted as JSON strings (`"redb"`), as in a configuration file.
    Quoted,
    /// As they are (`redb`), as in a command-line value.
    Bare,
}

impl Quoting {
    // Only a build without a backend gives this advice.
    #[cfg_attr(all(feature = "sled", feature = "kube"), allow(dead_code))]
    fn alternatives(self) -> String {
        let names: &[&str] = if cfg!(feature = "sled") {
            &["redb", "sled"]
        } else {
            &["redb"]
        };
        let quoted: Vec<String> = names
            .iter()
            .map(|n| match self {
                Quoting::Quoted => format!("{n:?}"),
                Quoting::Bare => (*n).to_owned(),
            })
            .collect();
        quoted.join(" or ")
    }
}

/// The sled store, if this build has it (the `sled` feature, on by default).
pub fn sled(quoting: Quoting) -> Result<StoreChoice, NotBuilt> {
    #[cfg(feature = "sled")]
    {
        let _ = quoting;
        Ok(StoreChoice::Sled)
    }
    #[cfg(not(feature = "sled"))]
    Err(NotBuilt {
        what: "sled",
        reason: " (it needs the `sled` feature)",
        instead: quoting.alternatives(),
    })
}

/// The Kubernetes store, if this build has it (the `kube` feature, on by default).
pub fn kubernetes(choice: KubeChoice, quoting: Quoting) -> Result<StoreChoice, NotBuilt> {
    #[cfg(feature = "kube")]
    {
        let _ = quoting;
        Ok(StoreChoice::Kubernetes(choice))
    }
    #[cfg(not(feature = "kube"))]
    {
        let _ = choice;
        Err(NotBuilt {
            what: "Kubernetes",
            reason: " (it needs the `kube` feature)",
            instead: quoting.alternatives(),
        })
    }
}

/// This host's name, as the kubelet names its node by default.
pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// An opened store, with what its users need of it besides records.
pub struct Opened {
    /// The store.
    pub store: Box<dyn Store>,
    /// The node this process allocates for, where many nodes share the store (Kubernetes):
    /// the engine's [`Config::node`](ipam_core::Config::node).
    pub node: Option<ipam_core::ObjectName>,
    /// Where Pods are looked up (their annotations and UID), if the store knows them.
    pub pods: Option<Box<dyn PodDirectory>>,
    /// Where pools' counts are published for others to read (`kubectl get ippools`), if the
    /// store has such a place.
    pub counts: Option<Box<dyn CountsBoard>>,
    /// The requests the store has sent to its server, where it has one (Kubernetes).
    pub requests: Option<Box<dyn ServerRequests>>,
}

/// A store's requests to its server, counted since it was opened (the node agent reports
/// them per call).
pub trait ServerRequests: Send {
    /// The counts so far.
    fn so_far(&self) -> RequestCounts;
}

/// Requests a store has sent to its server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Requests that change nothing (reads, lists).
    pub reads: u64,
    /// Requests that write.
    pub writes: u64,
    /// Writes refused because another writer got there first.
    pub conflicts: u64,
}

impl RequestCounts {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        RequestCounts {
            reads: self.reads.saturating_sub(earlier.reads),
            writes: self.writes.saturating_sub(earlier.writes),
            conflicts: self.conflicts.saturating_sub(earlier.conflicts),
        }
    }
}

#[cfg(feature = "kube")]
impl ServerRequests for std::sync::Arc<ipam_kube::KubeStore> {
    fn so_far(&self) -> RequestCounts {
        let r = self.requests();
        RequestCounts {
            reads: r.reads,
            writes: r.writes,
            conflicts: r.conflicts,
        }
    }
}

/// Where a pool's counts are shown outside ipamctl: an IPPool object's `status`.
pub trait CountsBoard {
    /// Publishes `counts` for its pool.
    fn publish(&self, counts: &ipam_core::PoolCounts) -> Result<(), StoreError>;
}

#[cfg(feature = "kube")]
impl CountsBoard for std::sync::Arc<ipam_kube::KubeStore> {
    fn publish(&self, counts: &ipam_core::PoolCounts) -> Result<(), StoreError> {
        pollster::block_on(self.publish_pool_status(counts))
    }
}

/// Where Pods are looked up: the plugin reads the Pod a call is for, `ipamctl gc` every Pod
/// and Node of the cluster.
pub trait PodDirectory {
    /// The Pod's UID and annotations; `None` if there is no such Pod.
    fn pod(&self, namespace: &str, name: &str) -> Result<Option<PodDetails>, StoreError>;

    /// Every Pod and Node, from complete lists (an error, never a part).
    fn workloads(&self) -> Result<Workloads, StoreError>;

    /// Whether the StatefulSet `namespace/name` wants a Pod of `ordinal`: it exists, is not
    /// being deleted, and the ordinal is in its range (`spec.ordinals.start` to start +
    /// `spec.replicas`).
    fn statefulset_wants(
        &self,
        namespace: &str,
        name: &str,
        ordinal: u32,
    ) -> Result<bool, StoreError>;
}

pub use ipam_api::{PodDetails, Workloads};

#[cfg(feature = "kube")]
impl PodDirectory for std::sync::Arc<ipam_kube::KubeStore> {
    fn pod(&self, namespace: &str, name: &str) -> Result<Option<PodDetails>, StoreError> {
        pollster::block_on(ipam_kube::KubeStore::pod(self, namespace, name))
    }

    fn workloads(&self) -> Result<Workloads, StoreError> {
        pollster::block_on(ipam_kube::KubeStore::workloads(self))
    }

    fn statefulset_wants(
        &self,
        namespace: &str,
        name: &str,
        ordinal: u32,
    ) -> Result<bool, StoreError> {
        let found = pollster::block_on(ipam_kube::KubeStore::statefulset(self, namespace, name))?;
        Ok(found.is_some_and(|s| s.wants(ordinal)))
    }
}

/// Opens the chosen store (in `data_dir` for the embedded ones), waiting up to `lock_wait`
/// for other processes, for one call: the Kubernetes store stops sending requests
/// `lock_wait` after it is opened (a CNI call never waits longer for the cluster than for an
/// embedded store's lock).
pub fn open(
    choice: &StoreChoice,
    data_dir: &Path,
    lock_wait: Duration,
) -> Result<Opened, StoreError> {
    open_bounded(choice, data_dir, lock_wait, Some(lock_wait))
}

/// [`open`] for a process that keeps the store open for many calls (the node agent): the
/// Kubernetes store has no deadline from its opening, each request its own timeout, and it
/// keeps a cache of what it reads and writes ([`ipam_kube::KubeOptions::cache`]), so that
/// an ADD reads from the API server only what its compare-and-swaps cannot check.
pub fn open_for_service(
    choice: &StoreChoice,
    data_dir: &Path,
    lock_wait: Duration,
) -> Result<Opened, StoreError> {
    open_bounded(choice, data_dir, lock_wait, None)
}

fn open_bounded(
    choice: &StoreChoice,
    data_dir: &Path,
    lock_wait: Duration,
    #[cfg_attr(not(feature = "kube"), allow(unused_variables))] deadline: Option<Duration>,
) -> Result<Opened, StoreError> {
    let embedded = |store: Box<dyn Store>| Opened {
        store,
        node: None,
        pods: None,
        counts: None,
        requests: None,
    };
    match choice {
        StoreChoice::Redb => Ok(embedded(Box::new(ipam_redb::RedbStore::open(
            data_dir,
            &ipam_redb::OpenOptions { lock_wait },
        )?))),
        #[cfg(feature = "sled")]
        StoreChoice::Sled => Ok(embedded(Box::new(ipam_sled::SledStore::open(
            data_dir,
            &ipam_sled::OpenOptions { lock_wait },
        )?))),
        #[cfg(feature = "kube")]
        StoreChoice::Kubernetes(k) => {
            let node = k.node.clone().or_else(hostname);
            let options = ipam_kube::KubeOptions {
                kubeconfig: k.kubeconfig.clone(),
                namespace: k
                    .namespace
                    .clone()
                    .unwrap_or_else(|| ipam_kube::DEFAULT_NAMESPACE.to_owned()),
                // A request may take what one waiting for the lock of an embedded store may.
                request_timeout: lock_wait.min(Duration::from_secs(10)),
                deadline,
                api: k.api,
                // A process of one call has nothing to reuse a cache for.
                cache: deadline.is_none(),
                ..ipam_kube::KubeOptions::default()
            };
            let store = std::sync::Arc::new(ipam_kube::KubeStore::connect(&options)?);
            Ok(Opened {
                store: Box::new(store.clone()),
                // A node name that cannot name a cursor only loses its own cursor.
                node: node.and_then(|n| ipam_core::ObjectName::new(n).ok()),
                pods: Some(Box::new(store.clone())),
                counts: Some(Box::new(store.clone())),
                requests: Some(Box::new(store)),
            })
        }
    }
}

// The default build has every backend.
#[cfg(all(test, feature = "sled", feature = "kube"))]
mod tests {
    use super::*;

    #[test]
    fn the_default_build_has_every_store() {
        assert!(sled(Quoting::Bare).is_ok());
        let k = kubernetes(KubeChoice::default(), Quoting::Quoted).unwrap();
        assert!(!k.is_embedded() && StoreChoice::Redb.is_embedded());
    }
}
