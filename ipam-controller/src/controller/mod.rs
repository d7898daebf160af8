//! The controller process: elected by a Lease, it looks at the cluster every interval,
//! releases the leaks that have lasted ([`crate::tracker`]) after a fresh look at each, and
//! keeps every pool's `status` counts current; [`metrics`] shows what it does.
//!
//! A sync reads every allocation (the store's blocks), then every Pod and Node, and only
//! when both reads are complete judges anything: a failed read releases nothing. At most
//! `max_releases` leaks are released per sync; each is judged again, just before its release,
//! on its Pod and Nodes read one by one from the API server (not from the lists), and its
//! release is the engine's compare-and-swap on its block that gives back exactly that
//! address if that owner still holds it. An owner is one sandbox's `(containerID, ifname)`:
//! it never comes to hold an address for another Pod, so a release can only miss (the DEL
//! came first), never take an address from a Pod that runs.
//!
//! A StatefulSet Pod's leaked sandbox gives its address to the Pod's identity instead, while
//! the StatefulSet wants the Pod (the next sandbox, whose ADD waited meanwhile, takes it);
//! an address kept for an identity is released once the StatefulSet no longer wants the Pod.

pub mod lease;
pub mod metrics;
pub mod tls;
pub mod watch;
pub mod webhook;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipam_api::Workloads;
use ipam_core::{Allocation, Ipam, Leftovers, ObjectName, PoolCounts, StoreError};
use ipam_kube::KubeStore;
use pollster::block_on;

use crate::leak::{judge, keeps_for_statefulset, Verdict};
use crate::tracker::Tracker;

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long an allocation must be a leak, at every look, before it is released.
    pub leak_grace: Duration,
    /// Time between syncs.
    pub interval: Duration,
    /// Releases per sync, at most.
    pub max_releases: usize,
}

/// What one sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Allocations read.
    pub allocations: usize,
    /// Allocations that are leaks now.
    pub leaks: usize,
    /// Addresses kept for StatefulSet Pods' identities (no sandbox holds them).
    pub waiting_for_statefulset_pods: usize,
    /// Leaks released.
    pub released: usize,
    /// Leaked sandboxes of StatefulSet Pods whose address now waits for the Pod's next
    /// sandbox (the StatefulSet still wants the Pod).
    pub kept_for_statefulset: usize,
    /// Leaks due whose fresh look kept them.
    pub kept_by_fresh_look: usize,
    /// Pools whose status was written.
    pub counts_published: usize,
    /// Owner index entries and empty blocks left by crashes, swept (see
    /// `Controller::sweep`).
    pub leftovers_swept: usize,
}

/// The controller's state between syncs.
pub struct Controller {
    metrics: Arc<metrics::Metrics>,
    store: Arc<KubeStore>,
    ipam: Ipam<Arc<KubeStore>>,
    settings: Settings,
    tracker: Tracker,
    published: HashMap<ObjectName, PoolCounts>,
    /// The last look for what crashes leave behind, and when it was.
    last_sweep: Option<(Instant, Leftovers)>,
    /// The cluster as watches keep it; without them each sync lists it.
    watch: Option<watch::ClusterWatch>,
}

/// Until when this replica may act as the leader (`None`: it is not the leader).
pub type Leadership = Arc<Mutex<Option<Instant>>>;

/// Whether `leadership` holds now.
pub fn leads(leadership: &Leadership) -> bool {
    let until = *leadership.lock().unwrap_or_else(|e| e.into_inner());
    until.is_some_and(|t| Instant::now() < t)
}

impl Controller {
    /// A controller on `store`, counting into `metrics`.
    pub fn new(
        store: Arc<KubeStore>,
        settings: Settings,
        metrics: Arc<metrics::Metrics>,
    ) -> Controller {
        Controller {
            metrics,
            ipam: Ipam::new(store.clone()),
            tracker: Tracker::new(settings.leak_grace),
            store,
            settings,
            published: HashMap::new(),
            last_sweep: None,
            watch: None,
        }
    }

    /// Reads the cluster from `watch` instead of listing it at every sync.
    pub fn watching(mut self, watch: watch::ClusterWatch) -> Controller {
        self.watch = Some(watch);
        self
    }

    /// Forgets what an earlier leadership saw: a replica that takes over starts its grace
    /// periods and its published counts again.
    pub fn restart(&mut self) {
        self.tracker = Tracker::new(self.settings.leak_grace);
        self.published.clear();
        self.last_sweep = None;
    }

    /// One sync. Releases stop as soon as `leadership` lapses.
    pub fn sync(&mut self, leadership: &Leadership) -> Result<SyncReport, ipam_core::Error> {
        let started = Instant::now();
        let done = self.sync_once(leadership);
        match &done {
            Ok(r) => self.metrics.synced(started.elapsed(), r.leaks),
            Err(_) => self.metrics.sync_failed(started.elapsed()),
        }
        done
    }

    fn sync_once(&mut self, leadership: &Leadership) -> Result<SyncReport, ipam_core::Error> {
        // Allocations before Pods: an allocation made after the Pods were listed would look
        // like the leak of a Pod not listed yet.
        let allocations = block_on(self.ipam.allocations(None))?;
        let cluster = match &self.watch {
            Some(watch) => watch.snapshot().map_err(|e| StoreError::Transient {
                context: "read the cluster's Pods, Nodes and StatefulSets".into(),
                source: Box::new(e),
            })?,
            None => block_on(self.store.workloads())?,
        };
        let observed = self.tracker.observe(Instant::now(), &allocations, &cluster);
        let mut report = SyncReport {
            allocations: allocations.len(),
            leaks: observed.leaks,
            waiting_for_statefulset_pods: allocations
                .iter()
                .filter(|a| a.owner.is_statefulset_identity())
                .count(),
            ..SyncReport::default()
        };
        self.metrics
            .statefulset_waiting(report.waiting_for_statefulset_pods);
        // Pools that switch StatefulSet addresses off (`keepStatefulSetAddresses: false`):
        // their leaked StatefulSet sandboxes are released, not kept.
        let keeping_off: std::collections::HashSet<ObjectName> = if observed.due.is_empty() {
            Default::default()
        } else {
            block_on(self.ipam.pools())?
                .into_iter()
                .filter(|p| !p.keeps_statefulset_addresses())
                .map(|p| p.name().clone())
                .collect()
        };
        for (allocation, _) in observed.due.into_iter().take(self.settings.max_releases) {
            if !leads(leadership) {
                break;
            }
            let fresh = self.fresh_look(&allocation)?;
            self.tracker.forget(&allocation);
            match judge(&allocation, &fresh) {
                Verdict::Leaked(why)
                    if keeps_for_statefulset(&allocation, &fresh)
                        && !keeping_off.contains(&allocation.pool) =>
                {
                    let done = block_on(
                        self.ipam
                            .release_addresses_keeping(&allocation.owner, &[allocation.address]),
                    )?;
                    if !done.kept.is_empty() {
                        report.kept_for_statefulset += 1;
                        self.metrics.kept_for_statefulset(why.code());
                        eprintln!(
                            "ipam-controller: kept {} (pool {}, network {}, owner {}) for {}'s next sandbox: {why}",
                            allocation.address,
                            allocation.pool,
                            allocation.network,
                            allocation.owner,
                            pod_name(&allocation),
                        );
                    }
                }
                Verdict::Leaked(why) => {
                    let released = block_on(
                        self.ipam
                            .release_addresses(&allocation.owner, &[allocation.address]),
                    )?;
                    if !released.is_empty() {
                        report.released += 1;
                        self.metrics.released(why.code());
                        eprintln!(
                            "ipam-controller: released {} (pool {}, network {}, owner {}) of {}: {why}",
                            allocation.address,
                            allocation.pool,
                            allocation.network,
                            allocation.owner,
                            pod_name(&allocation),
                        );
                    }
                }
                Verdict::Kept(why) => {
                    report.kept_by_fresh_look += 1;
                    self.metrics.kept_by_fresh_look();
                    eprintln!(
                        "ipam-controller: kept {} of {}: a fresh look found it held ({why:?})",
                        allocation.address,
                        pod_name(&allocation),
                    );
                }
            }
        }
        if leads(leadership) {
            report.counts_published = self.publish_counts()?;
            report.leftovers_swept = self.sweep(Instant::now(), leadership)?;
        }
        Ok(report)
    }

    /// The Pod of `allocation` and the Nodes the rules look at, each read from the API
    /// server now.
    fn fresh_look(&self, allocation: &Allocation) -> Result<Workloads, StoreError> {
        let mut fresh = Workloads::default();
        let mut nodes: Vec<String> = allocation.node.iter().map(ToString::to_string).collect();
        if let Some((namespace, name)) = crate::leak::pod_of(allocation) {
            let statefulset = allocation.pod.as_ref().and_then(|p| p.statefulset.as_ref());
            if let Some(sts) = statefulset {
                if let Some(facts) = block_on(self.store.statefulset(namespace, sts))? {
                    fresh
                        .statefulsets
                        .insert((namespace.to_owned(), sts.clone()), facts);
                }
            }
            if let Some(facts) = block_on(self.store.pod_facts(namespace, name))? {
                nodes.extend(facts.node.clone());
                fresh
                    .pods
                    .insert((namespace.to_owned(), name.to_owned()), facts);
            }
        }
        for node in nodes {
            // A name no Node can have names none that exists.
            if ipam_core::check_dns_subdomain("node", &node).is_err() {
                continue;
            }
            if let Some(facts) = block_on(self.store.node_facts(&node))? {
                fresh.nodes.insert(node, facts);
            }
        }
        Ok(fresh)
    }

    /// Sweeps what crashes leave behind: owner index entries their blocks contradict, and
    /// blocks that hold no address ([`Ipam::leftovers`]). One look per grace period (it reads
    /// every block and owner entry); what two looks a grace period apart both found (a block
    /// at the same version) goes, by compare-and-swap, at most `max_releases` per look. An
    /// allocation in flight lasts seconds, never a grace period, and one that meets a swept
    /// entry's guard or a deleted block starts over. Returns how many went.
    fn sweep(&mut self, now: Instant, leadership: &Leadership) -> Result<usize, ipam_core::Error> {
        if self
            .last_sweep
            .as_ref()
            .is_some_and(|(at, _)| now.duration_since(*at) < self.settings.leak_grace)
        {
            return Ok(0);
        }
        let found = block_on(self.ipam.leftovers())?;
        let mut swept = 0;
        if let Some((_, before)) = self.last_sweep.take() {
            for (owner, entries) in &found.stale_entries {
                if swept >= self.settings.max_releases || !leads(leadership) {
                    break;
                }
                let lasting: Vec<std::net::IpAddr> = entries
                    .iter()
                    .filter(|e| {
                        before
                            .stale_entries
                            .iter()
                            .any(|(o, es)| o == owner && es.contains(e))
                    })
                    .map(|e| e.address)
                    .collect();
                if lasting.is_empty() {
                    continue;
                }
                let dropped = block_on(self.ipam.drop_stale_entries(owner, &lasting))?;
                if dropped > 0 {
                    swept += dropped;
                    self.metrics.swept("ownerEntry", dropped);
                    eprintln!(
                        "ipam-controller: dropped {dropped} stale owner index entr(y/ies) of {owner} ({}): no block holds them for it",
                        lasting.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                    );
                }
            }
            for block in &found.empty_blocks {
                if swept >= self.settings.max_releases || !leads(leadership) {
                    break;
                }
                if before.empty_blocks.contains(block)
                    && block_on(self.ipam.delete_empty_block(block))?
                {
                    swept += 1;
                    self.metrics.swept("emptyBlock", 1);
                }
            }
        }
        self.last_sweep = Some((now, found));
        Ok(swept)
    }

    /// Writes the counts of every pool whose counts changed since this leadership last
    /// wrote them; returns how many it wrote.
    fn publish_counts(&mut self) -> Result<usize, ipam_core::Error> {
        let pools = block_on(self.ipam.pools())?;
        let counts = block_on(self.ipam.pools_counts(&pools))?;
        self.metrics.pools(&counts);
        let mut written = 0;
        for c in counts {
            if self.published.get(&c.pool) == Some(&c) {
                continue;
            }
            block_on(self.store.publish_pool_status(&c))?;
            written += 1;
            self.published.insert(c.pool.clone(), c);
        }
        let live: std::collections::HashSet<_> = pools.iter().map(|p| p.name().clone()).collect();
        self.published.retain(|name, _| live.contains(name));
        Ok(written)
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}

/// `namespace/name` of an allocation's Pod, for messages.
fn pod_name(allocation: &Allocation) -> String {
    allocation
        .pod
        .as_ref()
        .map_or_else(|| "no Pod".to_owned(), |p| format!("Pod {p}"))
}
