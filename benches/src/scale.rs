//! A cluster at Kubernetes' documented limits (5,000 nodes, 150,000 Pods), simulated on the
//! data model: every node's ADDs and DELs run through the real engine on one in-memory
//! store, and each request the Kubernetes store would send is counted with the size of the
//! object it carries, as [`ipam_kube::codec`] writes it.
//!
//! What it answers (`cargo bench -p ipam-benches --bench scale`, figures in
//! `benches/RESULTS.md`):
//! - how many objects each node has (blocks of its affinity, owner entries, cursors), so how
//!   much an agent that watches only its node's objects keeps;
//! - API round trips, writes and bytes per ADD and per DEL, for the plugin alone (fresh reads)
//!   and through a node agent (a cache that learns its node's own reads and writes);
//! - how many bytes every agent's watches receive per Pod start cluster-wide, if watches are
//!   scoped to a node, and if they are not (every agent watches the namespace's blocks);
//! - how a node finds addresses when its own blocks are full (a pool with fewer blocks than
//!   nodes): how often an ADD lands in another node's block, and what the search reads.
//!
//! Only the engine and the data model are real here: no API server runs, so latency and the
//! server's own metadata (resourceVersion, managedFields, ...) are not in the bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ipam_core::backend::{
    block_index, to_u128, Key, KeyRange, Op, Record, Transaction, BLOCK_BITS,
};
use ipam_core::testkit::ReadCache;
use ipam_core::{
    Config, Family, IpPool, IpPoolSpec, Ipam, MemoryStore, ObjectName, Owner, PodRef, Request,
    ReservedIp, ReservedIpSpec, Slot, Store, StoreError, Versioned,
};
use ipam_kube::codec::Codec;
use ipam_kube::Api;

/// The network every Pod attaches to (a CNI network's name).
const NETWORK: &str = "k8s-pod-network";
/// The one pool every node allocates from.
const POOL: &str = "pods";

/// What to simulate.
#[derive(Clone, Debug)]
pub struct Params {
    /// Nodes, each with an engine of its own (`Config::node`).
    pub nodes: usize,
    /// Pods started first, each on a node chosen at random.
    pub pods: usize,
    /// Then this many times: a random Pod is deleted (CNI DEL) and a new one started on a
    /// random node (CNI ADD).
    pub churn: usize,
    /// The pool's subnet (IPv4).
    pub subnet: String,
    /// ReservedIPs applied before the Pods start, one address each inside the pool.
    pub reserved_ips: usize,
    /// Each node's calls go through a node agent's cache ([`ReadCache::learning_writes`]:
    /// it knows what its node read and wrote, nothing of other nodes' writes); else every
    /// call reads afresh, as the plugin alone does.
    pub agents: bool,
    /// Seed of the Pods' placement and names.
    pub seed: u64,
}

impl Params {
    /// Kubernetes' documented maximum: 5,000 nodes and 150,000 Pods, then 20,000 Pods
    /// replaced, in one pool of `subnet`.
    pub fn kubernetes_limits(subnet: &str, agents: bool) -> Params {
        Params {
            nodes: 5_000,
            pods: 150_000,
            churn: 20_000,
            subnet: subnet.to_owned(),
            reserved_ips: 16,
            agents,
            seed: 1,
        }
    }
}

/// Requests to the API server, as the Kubernetes store would send them, and their bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Read requests (a `get`, a `get_many` or a `scan` is one round trip).
    pub round_trips: u64,
    /// Of which lists of every block of a family (`scan`).
    pub scans: u64,
    /// Bytes of the objects read (a list: every object in it).
    pub bytes_read: u64,
    /// Write requests (one per object created, replaced or deleted; cursors included).
    pub writes: u64,
    /// Of which cursor writes (hints, unconditioned).
    pub cursor_writes: u64,
    /// Bytes of the objects written (a deletion: the object's last state, as a watch
    /// event carries it).
    pub bytes_written: u64,
    /// Commits refused on a stale version (a cache that did not know another node's write).
    pub conflicts: u64,
    /// Bytes every agent's watches receive for these writes, if each agent watches only its
    /// node's blocks, owners and cursors (and every agent the pools and ReservedIPs).
    pub watched_node_scoped: u64,
    /// The same, if every agent watches every block, owner and cursor of the namespace.
    pub watched_namespace_wide: u64,
    /// Bytes of node-scoped objects written by one node that another node's agent watches
    /// (a block of another node's affinity).
    pub to_other_nodes: u64,
}

impl Cost {
    fn minus(self, before: Cost) -> Cost {
        Cost {
            round_trips: self.round_trips - before.round_trips,
            scans: self.scans - before.scans,
            bytes_read: self.bytes_read - before.bytes_read,
            writes: self.writes - before.writes,
            cursor_writes: self.cursor_writes - before.cursor_writes,
            bytes_written: self.bytes_written - before.bytes_written,
            conflicts: self.conflicts - before.conflicts,
            watched_node_scoped: self.watched_node_scoped - before.watched_node_scoped,
            watched_namespace_wide: self.watched_namespace_wide - before.watched_namespace_wide,
            to_other_nodes: self.to_other_nodes - before.to_other_nodes,
        }
    }

    fn add(&mut self, other: Cost) {
        self.round_trips += other.round_trips;
        self.scans += other.scans;
        self.bytes_read += other.bytes_read;
        self.writes += other.writes;
        self.cursor_writes += other.cursor_writes;
        self.bytes_written += other.bytes_written;
        self.conflicts += other.conflicts;
        self.watched_node_scoped += other.watched_node_scoped;
        self.watched_namespace_wide += other.watched_namespace_wide;
        self.to_other_nodes += other.to_other_nodes;
    }
}

/// The costs of one kind of call, over a phase.
#[derive(Clone, Debug, Default)]
pub struct Calls {
    /// How many calls.
    pub count: u64,
    /// Their costs, summed.
    pub total: Cost,
    /// Round trips of reads per call, sorted (for percentiles).
    round_trips: Vec<u64>,
    /// Bytes read per call, sorted.
    bytes_read: Vec<u64>,
    /// Calls that listed every block.
    pub scanning: u64,
    /// ADDs whose address lies in a block of another node's affinity.
    pub in_other_nodes_blocks: u64,
}

impl Calls {
    fn record(&mut self, cost: Cost) {
        self.count += 1;
        self.total.add(cost);
        self.round_trips.push(cost.round_trips);
        self.bytes_read.push(cost.bytes_read);
        if cost.scans > 0 {
            self.scanning += 1;
        }
    }

    fn finish(&mut self) {
        self.round_trips.sort_unstable();
        self.bytes_read.sort_unstable();
    }

    /// The mean of `field` per call.
    pub fn mean(&self, field: impl Fn(&Cost) -> u64) -> f64 {
        field(&self.total) as f64 / self.count.max(1) as f64
    }

    /// The `q`-quantile (0..=1) of read round trips per call.
    pub fn round_trips_at(&self, q: f64) -> u64 {
        quantile(&self.round_trips, q)
    }

    /// The `q`-quantile (0..=1) of bytes read per call.
    pub fn bytes_read_at(&self, q: f64) -> u64 {
        quantile(&self.bytes_read, q)
    }
}

fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let at = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[at]
}

/// How the objects spread over nodes.
#[derive(Clone, Debug, Default)]
pub struct Spread {
    /// Block objects in the store.
    pub blocks: u64,
    /// Addresses held, as the blocks say.
    pub holders: u64,
    /// Pods running, as the simulation started and deleted them.
    pub pods: u64,
    /// Of which with the affinity of some node.
    pub blocks_with_affinity: u64,
    /// Most blocks of one node's affinity.
    pub most_blocks_per_node: u64,
    /// Nodes with no block of their own.
    pub nodes_without_block: u64,
    /// Owner objects (one per Pod's interface).
    pub owners: u64,
    /// Most owners on one node.
    pub most_owners_per_node: u64,
    /// Cursor objects.
    pub cursors: u64,
    /// Bytes an agent would keep of its node's objects (blocks of its affinity, its Pods'
    /// owners, its cursor) and of the cluster's pools and ReservedIPs: mean over nodes.
    pub agent_bytes_mean: f64,
    /// The same, the most of any node.
    pub agent_bytes_most: u64,
    /// Bytes of every block, owner and cursor object: what a namespace-wide watch keeps.
    pub namespace_bytes: u64,
    /// Bytes of the pools and ReservedIPs.
    pub cluster_scoped_bytes: u64,
}

/// What a run found.
#[derive(Clone, Debug)]
pub struct Report {
    /// What was run.
    pub params: Params,
    /// The first `pods` ADDs.
    pub fill: Calls,
    /// The churn's ADDs.
    pub adds: Calls,
    /// The churn's DELs.
    pub dels: Calls,
    /// After the first `pods` ADDs.
    pub spread_filled: Spread,
    /// At the end.
    pub spread_end: Spread,
    /// Bytes one ReservedIP change sends to all agents' watches (the object × nodes).
    pub reserved_ip_change_watched: u64,
}

/// Where a written object's watch events go.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Watcher {
    /// Every agent (pools, ReservedIPs, the pools' guard).
    Everyone,
    /// The agent of this node (node index), if watches are scoped to nodes.
    Node(usize),
    /// No node's in particular (a block without affinity, a cursor without node).
    Nobody,
}

#[derive(Default)]
struct Tally {
    cost: Cost,
    /// Object sizes by encoded key and version, so that a block read many times is
    /// serialized once.
    sizes: HashMap<(Vec<u8>, String), u64>,
    /// The last written size and watcher of each object, by encoded key (for deletions and
    /// for the spread).
    last: HashMap<Vec<u8>, (u64, Watcher)>,
    /// Bytes of the ReservedIP objects: what a read of the summary lists.
    reserved_bytes: u64,
}

struct Shared {
    codec: Codec,
    nodes: HashMap<ObjectName, usize>,
    node_count: u64,
    tally: Mutex<Tally>,
}

impl Shared {
    fn size(&self, key: &Key, record: &Record) -> u64 {
        match record {
            Record::ReservedSummary(_) | Record::Invalid(_) => 0,
            _ => serde_json::to_vec(&self.codec.object(key, record))
                .map(|b| b.len() as u64)
                .unwrap_or(0),
        }
    }

    fn read_size(&self, tally: &mut Tally, key: &Key, read: &Versioned<Record>) -> u64 {
        if let Key::ReservedSummary = key {
            return tally.reserved_bytes;
        }
        let id = (key.encode(), read.version.as_str().to_owned());
        if let Some(&size) = tally.sizes.get(&id) {
            return size;
        }
        let size = self.size(key, &read.value);
        tally.sizes.insert(id, size);
        size
    }

    fn watcher(&self, key: &Key, record: Option<&Record>, writer: usize) -> Watcher {
        match (key, record) {
            (Key::Pool(_) | Key::ReservedIp(_) | Key::PoolGuard, _) => Watcher::Everyone,
            (Key::Block { .. }, Some(Record::Block(b))) => b
                .affinity()
                .and_then(|n| self.nodes.get(n))
                .map_or(Watcher::Nobody, |&i| Watcher::Node(i)),
            // Owner objects name no node: a node-scoped watch of them needs a node label,
            // set by the node that writes them (a DEL comes to the node of the ADD).
            (Key::Owner(_), _) => Watcher::Node(writer),
            (Key::Cursor { node: Some(n), .. }, _) => self
                .nodes
                .get(n)
                .map_or(Watcher::Nobody, |&i| Watcher::Node(i)),
            _ => Watcher::Nobody,
        }
    }
}

/// One node's view of the store: counts what it sends.
struct Meter {
    inner: Arc<MemoryStore>,
    node: usize,
    shared: Arc<Shared>,
}

impl Meter {
    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.shared.tally.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count_reads<'a>(
        &self,
        read: impl Iterator<Item = (&'a Key, &'a Versioned<Record>)>,
        scan: bool,
    ) {
        let mut tally = self.tally();
        let bytes: u64 = read
            .map(|(k, v)| self.shared.read_size(&mut tally, k, v))
            .sum();
        tally.cost.round_trips += 1;
        tally.cost.scans += u64::from(scan);
        tally.cost.bytes_read += bytes;
    }
}

#[async_trait]
impl Store for Meter {
    async fn get(&self, key: &Key) -> Result<Option<Versioned<Record>>, StoreError> {
        let read = self.inner.get(key).await?;
        self.count_reads(read.iter().map(|v| (key, v)), false);
        Ok(read)
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Versioned<Record>>>, StoreError> {
        let read = self.inner.get_many(keys).await?;
        if !keys.is_empty() {
            let pairs = keys
                .iter()
                .zip(&read)
                .filter_map(|(k, v)| Some((k, v.as_ref()?)));
            self.count_reads(pairs, false);
        }
        Ok(read)
    }

    async fn scan(&self, range: &KeyRange) -> Result<Vec<(Key, Versioned<Record>)>, StoreError> {
        let read = self.inner.scan(range).await?;
        // The Kubernetes store lists every block of the family (one pool here: the same).
        let scan = matches!(range, KeyRange::Blocks { .. });
        self.count_reads(read.iter().map(|(k, v)| (k, v)), scan);
        Ok(read)
    }

    async fn commit(&self, txn: Transaction) -> Result<(), StoreError> {
        let ops: Vec<Op> = txn.ops().to_vec();
        let result = self.inner.commit(txn).await;
        let mut tally = self.tally();
        if let Err(StoreError::Conflict { .. }) = &result {
            // Every request of it counts (an upper bound: the Kubernetes store sends in
            // order and stops at the refused one).
            tally.cost.conflicts += 1;
        }
        let nodes = self.shared.node_count;
        for op in &ops {
            let key = op.key().clone();
            let (size, watcher) = match op {
                Op::Put { record, .. } => (
                    self.shared.size(&key, record),
                    self.shared.watcher(&key, Some(record), self.node),
                ),
                Op::Delete { .. } => tally
                    .last
                    .get(&key.encode())
                    .cloned()
                    .unwrap_or((0, Watcher::Nobody)),
            };
            tally.cost.writes += 1;
            tally.cost.cursor_writes += u64::from(matches!(key, Key::Cursor { .. }));
            if result.is_err() {
                // A refused write makes no watch event (and the Kubernetes store stops at
                // it): its request counts, its bytes do not.
                continue;
            }
            tally.cost.bytes_written += size;
            match watcher {
                Watcher::Everyone => {
                    tally.cost.watched_node_scoped += size * nodes;
                    tally.cost.watched_namespace_wide += size * nodes;
                }
                Watcher::Node(i) => {
                    tally.cost.watched_node_scoped += size;
                    tally.cost.watched_namespace_wide += size * nodes;
                    if i != self.node {
                        tally.cost.to_other_nodes += size;
                    }
                }
                Watcher::Nobody => tally.cost.watched_namespace_wide += size * nodes,
            }
            match op {
                Op::Put { .. } => {
                    tally.last.insert(key.encode(), (size, watcher));
                }
                Op::Delete { .. } => {
                    tally.last.remove(&key.encode());
                }
            }
        }
        result
    }
}

type Engine = Ipam<Box<dyn Store>>;

struct Pod {
    node: usize,
    owner: Owner,
}

/// Runs the simulation.
///
/// ```
/// let report = ipam_benches::scale::run(&ipam_benches::scale::Params {
///     nodes: 4,
///     pods: 20,
///     churn: 5,
///     subnet: "10.0.0.0/24".into(),
///     reserved_ips: 1,
///     agents: false,
///     seed: 7,
/// })
/// .unwrap();
/// assert_eq!(report.fill.count, 20);
/// ```
pub fn run(params: &Params) -> Result<Report, ipam_core::Error> {
    pollster::block_on(simulate(params))
}

async fn simulate(params: &Params) -> Result<Report, ipam_core::Error> {
    let store = Arc::new(MemoryStore::new());
    let names: Vec<ObjectName> = (0..params.nodes)
        .map(|i| ObjectName::new(format!("node-{i:05}")).expect("a node name"))
        .collect();
    let shared = Arc::new(Shared {
        codec: Codec {
            prefix: String::new(),
            namespace: ipam_kube::DEFAULT_NAMESPACE.to_owned(),
            api: Api::IpamRs,
        },
        nodes: names
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, n)| (n, i))
            .collect(),
        node_count: params.nodes as u64,
        tally: Mutex::default(),
    });
    let engines: Vec<Engine> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let meter = Meter {
                inner: store.clone(),
                node: i,
                shared: shared.clone(),
            };
            let store: Box<dyn Store> = if params.agents {
                Box::new(ReadCache::learning_writes(meter))
            } else {
                Box::new(meter)
            };
            Ipam::with_config(
                store,
                Config {
                    node: Some(name.clone()),
                    seed: Some(params.seed ^ i as u64),
                    ..Config::default()
                },
            )
        })
        .collect();

    // The pool and the ReservedIPs, applied by an operator (uncounted).
    let admin = Ipam::new(store.clone());
    let pool = IpPool::new(
        POOL,
        IpPoolSpec {
            subnet: params.subnet.clone(),
            ips: vec![params.subnet.clone()],
            ..IpPoolSpec::default()
        },
    )?;
    let capacity = pool.capacity().clone();
    admin.apply_pool(pool).await?;
    let mut rng = fastrand::Rng::with_seed(params.seed);
    let first = capacity.first().unwrap_or(0);
    let span = capacity.len().max(1);
    for r in 0..params.reserved_ips {
        let at = first + (u128::from(rng.u64(..)) % span);
        let spec = ReservedIpSpec {
            ips: vec![Family::V4.addr(at).to_string()],
            ip_version: None,
        };
        admin
            .apply_reserved_ip(ReservedIp::new(&format!("reserved-{r}"), spec)?)
            .await?;
    }
    let reserved = store.scan(&KeyRange::ReservedIps).await?;
    let pools = store.scan(&KeyRange::Pools).await?;
    let guard = store.get(&Key::PoolGuard).await?;
    {
        let mut tally = shared.tally.lock().unwrap_or_else(|e| e.into_inner());
        let cluster_scoped = pools
            .iter()
            .chain(&reserved)
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .chain(guard.map(|g| (Key::PoolGuard, g.value)));
        for (key, record) in cluster_scoped {
            let size = shared.size(&key, &record);
            if let Key::ReservedIp(_) = key {
                tally.reserved_bytes += size;
            }
            tally.last.insert(key.encode(), (size, Watcher::Everyone));
        }
    }
    let reserved_ip_change_watched = reserved
        .first()
        .map_or(0, |(k, v)| shared.size(k, &v.value))
        * params.nodes as u64;

    let mut live: Vec<Pod> = Vec::with_capacity(params.pods);
    let mut cluster = Cluster {
        engines: &engines,
        names: &names,
        shared: &shared,
        store: &store,
        rng,
        started: 0,
    };
    let mut fill = Calls::default();
    for _ in 0..params.pods {
        let pod = cluster.start_pod(&mut fill).await?;
        live.push(pod);
    }
    let spread_filled = spread(&store, &shared, params.nodes, &live).await?;

    let (mut adds, mut dels) = (Calls::default(), Calls::default());
    for _ in 0..params.churn {
        if !live.is_empty() {
            let gone = live.swap_remove(cluster.rng.usize(..live.len()));
            let before = cost(&shared);
            engines[gone.node]
                .release(&gone.owner, Some(NETWORK))
                .await?;
            dels.record(cost(&shared).minus(before));
        }
        let pod = cluster.start_pod(&mut adds).await?;
        live.push(pod);
    }
    let spread_end = spread(&store, &shared, params.nodes, &live).await?;
    for calls in [&mut fill, &mut adds, &mut dels] {
        calls.finish();
    }
    Ok(Report {
        params: params.clone(),
        fill,
        adds,
        dels,
        spread_filled,
        spread_end,
        reserved_ip_change_watched,
    })
}

fn cost(shared: &Shared) -> Cost {
    shared.tally.lock().unwrap_or_else(|e| e.into_inner()).cost
}

/// The nodes' engines and what the simulation draws Pods from.
struct Cluster<'a> {
    engines: &'a [Engine],
    names: &'a [ObjectName],
    shared: &'a Shared,
    store: &'a MemoryStore,
    rng: fastrand::Rng,
    /// Pods started so far.
    started: u64,
}

impl Cluster<'_> {
    /// One Pod's ADD on a random node, with a container ID, name and UID as a runtime and the
    /// API server make them (their lengths set the holders' bytes); its costs go to `calls`.
    async fn start_pod(&mut self, calls: &mut Calls) -> Result<Pod, ipam_core::Error> {
        let Cluster {
            engines,
            names,
            shared,
            store,
            ref mut rng,
            ref mut started,
        } = *self;
        let node = rng.usize(..engines.len());
        *started += 1;
        let container_id: String = (0..64)
            .map(|_| char::from_digit(rng.u32(..16), 16).expect("a hex digit"))
            .collect();
        let owner = Owner::new(container_id, "eth0")?;
        let uid = format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            rng.u32(..),
            rng.u16(..),
            rng.u16(..),
            rng.u16(..),
            rng.u64(..) & 0xffff_ffff_ffff
        );
        let pod = PodRef {
            namespace: Some(format!("team-{:02}", *started % 50)),
            name: format!("web-{:x}-{:05x}", *started, rng.u32(..0x10_0000)),
            uid: Some(uid),
            statefulset: None,
        };
        let request = Request::new(owner.clone(), NETWORK)
            .pod(pod)
            .slot(Slot::any_of([ObjectName::new(POOL).expect("a pool name")]));
        let before = cost(shared);
        let granted = engines[node].allocate(&request).await?;
        calls.record(cost(shared).minus(before));
        for g in &granted {
            let key = Key::Block {
                family: Family::V4,
                index: block_index(to_u128(g.allocation.address)),
            };
            if let Some(Versioned {
                value: Record::Block(block),
                ..
            }) = store.get(&key).await?
            {
                let own = block.affinity() == Some(&names[node]);
                calls.in_other_nodes_blocks += u64::from(!own);
            }
        }
        Ok(Pod { node, owner })
    }
}

async fn spread(
    store: &MemoryStore,
    shared: &Shared,
    nodes: usize,
    live: &[Pod],
) -> Result<Spread, StoreError> {
    let mut out = Spread::default();
    let mut blocks_of = vec![0u64; nodes];
    let mut bytes_of = vec![0u64; nodes];
    let mut owners_of = vec![0u64; nodes];
    out.pods = live.len() as u64;
    for pod in live {
        owners_of[pod.node] += 1;
    }
    let all_blocks = KeyRange::Blocks {
        family: Family::V4,
        first: 0,
        last: u128::from(u32::MAX) >> BLOCK_BITS,
    };
    for (_, v) in store.scan(&all_blocks).await? {
        out.blocks += 1;
        if let Record::Block(b) = &v.value {
            out.holders += b.len() as u64;
            if let Some(&i) = b.affinity().and_then(|n| shared.nodes.get(n)) {
                out.blocks_with_affinity += 1;
                blocks_of[i] += 1;
            }
        }
    }
    out.owners = store.scan(&KeyRange::Owners).await?.len() as u64;
    out.cursors = store.scan(&KeyRange::Cursors).await?.len() as u64;
    let tally = shared.tally.lock().unwrap_or_else(|e| e.into_inner());
    for (size, watcher) in tally.last.values() {
        match watcher {
            Watcher::Node(i) => {
                bytes_of[*i] += size;
                out.namespace_bytes += size;
            }
            Watcher::Nobody => out.namespace_bytes += size,
            Watcher::Everyone => out.cluster_scoped_bytes += size,
        }
    }
    out.most_blocks_per_node = blocks_of.iter().copied().max().unwrap_or(0);
    out.nodes_without_block = blocks_of.iter().filter(|&&b| b == 0).count() as u64;
    out.most_owners_per_node = owners_of.iter().copied().max().unwrap_or(0);
    let agent = |i: usize| bytes_of[i] + out.cluster_scoped_bytes;
    out.agent_bytes_mean = (0..nodes).map(agent).sum::<u64>() as f64 / nodes.max(1) as f64;
    out.agent_bytes_most = (0..nodes).map(agent).max().unwrap_or(0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(subnet: &str, agents: bool) -> Report {
        run(&Params {
            nodes: 30,
            pods: 900,
            churn: 300,
            subnet: subnet.to_owned(),
            reserved_ips: 4,
            agents,
            seed: 3,
        })
        .expect("the simulation runs")
    }

    /// 16 blocks of 64 for 30 nodes: nearly every address is needed.
    const TIGHT: &str = "10.1.0.0/22";
    /// 256 blocks for 30 nodes.
    const ROOMY: &str = "10.2.0.0/18";

    #[test]
    fn every_running_pod_holds_one_address_and_every_deleted_one_none() {
        for subnet in [TIGHT, ROOMY] {
            for agents in [false, true] {
                let r = small(subnet, agents);
                let s = &r.spread_end;
                assert_eq!(
                    (s.pods, s.holders, s.owners),
                    (900, 900, 900),
                    "{subnet} {agents}"
                );
                assert_eq!((r.fill.count, r.adds.count, r.dels.count), (900, 300, 300));
            }
        }
    }

    #[test]
    fn in_a_roomy_pool_every_node_allocates_from_blocks_of_its_own() {
        let r = small(ROOMY, false);
        assert_eq!(r.spread_end.nodes_without_block, 0);
        assert_eq!(
            r.fill.in_other_nodes_blocks + r.adds.in_other_nodes_blocks,
            0
        );
        assert_eq!(r.spread_end.blocks, r.spread_end.blocks_with_affinity);
        // A node-scoped watch carries only what its own node wrote.
        assert_eq!(r.adds.total.to_other_nodes, 0);
    }

    #[test]
    fn in_a_tight_pool_nodes_without_a_block_allocate_from_other_nodes_blocks() {
        let r = small(TIGHT, false);
        assert!(r.spread_end.nodes_without_block > 0);
        assert!(r.adds.in_other_nodes_blocks > 0);
        // What those ADDs write, the other node's agent receives.
        assert!(r.adds.total.to_other_nodes > 0);
    }

    #[test]
    fn through_agents_an_add_reads_less_and_writes_as_much() {
        let (plugin, agents) = (small(ROOMY, false), small(ROOMY, true));
        assert!(agents.adds.mean(|c| c.round_trips) < plugin.adds.mean(|c| c.round_trips));
        assert!(agents.dels.mean(|c| c.round_trips) < plugin.dels.mean(|c| c.round_trips));
        assert_eq!(agents.adds.total.writes, plugin.adds.total.writes);
    }

    #[test]
    fn a_namespace_wide_watch_sends_every_write_to_every_agent() {
        let r = small(ROOMY, false);
        let c = r.adds.total;
        assert_eq!(c.watched_namespace_wide, c.bytes_written * 30);
        assert_eq!(c.watched_node_scoped, c.bytes_written);
    }
}
