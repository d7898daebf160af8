//! The IPAM engine: pools, reservations and allocations over any [`Store`].
//!
//! Every operation reads what it needs with versions, decides in pure code, and commits a
//! [`Transaction`] whose preconditions are the versions it read. When another writer got
//! there first (a conflict) or the store failed in a way that may pass (transient), the
//! operation starts over after a jittered backoff, a bounded number of times.
//!
//! Who holds an address is decided by one record, the [`BlockRecord`] of its window,
//! store-wide: pools and inline ranges are lenses that say which addresses they may hand out.
//! Allocation and release change exactly the blocks they touch by compare-and-swap; the
//! owner index is written before the blocks on allocation and after them on release, so it
//! may name an address its owner does not hold, never miss one it does (see
//! [`Transaction`] for why every transaction is ordered).
//!
//! The code is split by concern: `objects` (pools and ReservedIPs), `allocate`, `release`
//! (release, GC, forced pool deletion) and `inspect` (counts, listings, explain), around
//! the shared `BlockCache` of this module: the blocks one attempt read and changed.

mod allocate;
mod inspect;
mod objects;
mod release;

pub use allocate::Granted;
pub use inspect::{Explanation, PoolFinding};
pub use release::{EmptyBlock, Leftovers, Released};

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rustc_hash::FxHashMap;

use crate::addr::Family;
use crate::block::BlockRecord;
use crate::error::{Error, PoolCounts, StoreError};
use crate::holder::{Allocation, PodRef};
use crate::name::{ObjectName, Owner};
use crate::pool::IpPool;
use crate::reserved::FamilySets;
use crate::search::{BlockState, Strategy};
use crate::set::IntervalSet;
use crate::store::{
    Expect, FromRecord, InvalidRecord, Key, KeyRange, Op, Record, Store, Transaction, Versioned,
};

/// Waits between retries. The core has no runtime: callers that run one pass its timer.
#[async_trait]
pub trait Sleep: Send + Sync {
    /// Waits for `duration`.
    async fn sleep(&self, duration: Duration);
}

/// Sleeps by blocking the thread: right for the CNI binary, which serves one request on one
/// thread, and for tests that drive the engine from plain threads.
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadSleep;

#[async_trait]
impl Sleep for ThreadSleep {
    async fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// How the engine allocates and retries.
#[derive(Clone)]
pub struct Config {
    /// How the next free address is chosen.
    pub strategy: Strategy,
    /// How many times an operation is tried when concurrent writers conflict.
    pub max_attempts: u32,
    /// The first backoff; it doubles on each conflict up to `max_backoff`, with ±50 % jitter.
    pub base_backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
    /// How to wait.
    pub sleep: Arc<dyn Sleep>,
    /// Seed for jitter and the random strategy (`None`: seeded from the OS).
    pub seed: Option<u64>,
    /// The node this engine runs on, where processes of many nodes share one store
    /// (Kubernetes): each node keeps its own round-robin cursor per pool and starts in a
    /// block of its own, so that nodes seldom contend for one block.
    pub node: Option<ObjectName>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            strategy: Strategy::RoundRobin,
            max_attempts: 16,
            base_backoff: Duration::from_micros(500),
            max_backoff: Duration::from_millis(50),
            sleep: Arc::new(ThreadSleep),
            seed: None,
            node: None,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("strategy", &self.strategy)
            .field("max_attempts", &self.max_attempts)
            .field("base_backoff", &self.base_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("seed", &self.seed)
            .field("node", &self.node)
            .finish()
    }
}

/// What applying an object did, as `kubectl apply` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// It did not exist.
    Created,
    /// Its spec was replaced.
    Configured,
    /// Its spec was already the same.
    Unchanged,
}

impl fmt::Display for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Applied::Created => "created",
            Applied::Configured => "configured",
            Applied::Unchanged => "unchanged",
        })
    }
}

/// One address wanted by a request: from the first of its pools that has one free, or
/// exactly the address it requests.
///
/// ```
/// use ipam_core::{Family, ObjectName, Slot};
/// let pool = ObjectName::new("test-ippool").unwrap();
/// let any = Slot::any_of([pool.clone()]).family(Family::V4);
/// assert_eq!(any.pools(), [pool.clone()]);
/// let exact = Slot::any_of([pool]).requesting("10.6.168.133".parse().unwrap());
/// assert_eq!(exact.requested(), Some("10.6.168.133".parse().unwrap()));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub(crate) pools: Vec<ObjectName>,
    pub(crate) requested: Option<IpAddr>,
    pub(crate) family: Option<Family>,
}

impl Slot {
    /// An address from the first of `pools`, tried in order, that has one free.
    pub fn any_of(pools: impl IntoIterator<Item = ObjectName>) -> Slot {
        Slot {
            pools: pools.into_iter().collect(),
            requested: None,
            family: None,
        }
    }

    /// Says which family the slot is for (a CNI config's `ipv4` or `ipv6` list): a listed
    /// pool of the other family is refused with [`Error::WrongFamily`] before anything is
    /// written.
    pub fn family(mut self, family: Family) -> Slot {
        self.family = Some(family);
        self
    }

    /// Asks for exactly `address`, which must be in one of the pools.
    pub fn requesting(mut self, address: IpAddr) -> Slot {
        self.requested = Some(address);
        self
    }

    /// The candidate pools, in the order they are tried.
    pub fn pools(&self) -> &[ObjectName] {
        &self.pools
    }

    /// The address asked for, if any.
    pub fn requested(&self) -> Option<IpAddr> {
        self.requested
    }

    /// The family the slot is for, where the caller said.
    pub fn expected_family(&self) -> Option<Family> {
        self.family
    }
}

/// A request for addresses: one per slot, all or nothing.
///
/// ```
/// use ipam_core::{FamilySets, ObjectName, Owner, PodRef, Request, Slot};
/// let pool = ObjectName::new("test-ippool").unwrap();
/// let request = Request::new(Owner::new("c1", "eth0").unwrap(), "macvlan")
///     .pod(PodRef { namespace: Some("default".into()), name: "pod-a".into(), uid: None, statefulset: None })
///     .slot(Slot::any_of([pool]))
///     .reserving(FamilySets::default());
/// assert_eq!(request.slots().len(), 1);
/// assert_eq!(request.network(), "macvlan");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub(crate) owner: Owner,
    pub(crate) network: String,
    pub(crate) pod: Option<PodRef>,
    pub(crate) slots: Vec<Slot>,
    pub(crate) reserved: FamilySets,
    pub(crate) defines: Vec<IpPool>,
}

impl Request {
    /// A request by `owner` for addresses on `network` (a CNI `name`), with no slot yet.
    pub fn new(owner: Owner, network: impl Into<String>) -> Request {
        Request {
            owner,
            network: network.into(),
            pod: None,
            slots: Vec::new(),
            reserved: FamilySets::default(),
            defines: Vec::new(),
        }
    }

    /// Records the Pod the addresses are for (shown by `ipamctl`, used by GC and the
    /// lifecycle controller).
    pub fn pod(mut self, pod: PodRef) -> Request {
        self.pod = Some(pod);
        self
    }

    /// Adds one wanted address.
    pub fn slot(mut self, slot: Slot) -> Request {
        self.slots.push(slot);
        self
    }

    /// Addresses this request must not get besides the store's ReservedIPs (a network's own
    /// `reserved` list).
    pub fn reserving(mut self, reserved: FamilySets) -> Request {
        self.reserved = reserved;
        self
    }

    /// Pools the request itself defines (a CNI network's `ranges`): lenses over the
    /// store-wide blocks, never stored. They must not overlap the stored pools the slots
    /// name (refused as invalid), and their names must differ from those pools'.
    pub fn defining(mut self, pools: impl IntoIterator<Item = IpPool>) -> Request {
        self.defines.extend(pools);
        self
    }

    /// Who will hold the addresses.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// The network (CNI `name`) they are for.
    pub fn network(&self) -> &str {
        &self.network
    }

    /// The Pod, where known.
    pub fn pod_ref(&self) -> Option<&PodRef> {
        self.pod.as_ref()
    }

    /// The wanted addresses, one per slot.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// The addresses refused besides the store's ReservedIPs.
    pub fn reserved(&self) -> &FamilySets {
        &self.reserved
    }

    /// The pools the request defines.
    pub fn defined_pools(&self) -> &[IpPool] {
        &self.defines
    }
}

/// What [`Ipam::gc`] did.
#[derive(Debug, Default)]
pub struct GcReport {
    /// The allocations released.
    pub released: Vec<Allocation>,
    /// Owners whose release failed; the others were released regardless.
    pub failures: Vec<(Owner, Error)>,
    /// Records the store holds but cannot read (written around our checks), left as they
    /// are: what they cover is neither released nor handed out until they are repaired.
    pub unreadable: Vec<StoreError>,
}

/// The IPAM engine over a store.
///
/// ```
/// use ipam_core::*;
/// # pollster::block_on(async {
/// let ipam = Ipam::new(MemoryStore::new());
/// let pool = IpPool::new("p", IpPoolSpec {
///     subnet: "10.6.0.0/16".into(),
///     ips: vec!["10.6.168.131-10.6.168.133".into()],
///     ..Default::default()
/// }).unwrap();
/// ipam.apply_pool(pool).await.unwrap();
/// let request = Request::new(Owner::new("c1", "eth0").unwrap(), "net1")
///     .slot(Slot::any_of([ObjectName::new("p").unwrap()]));
/// let got = ipam.allocate(&request).await.unwrap();
/// assert_eq!(got[0].allocation.address.to_string(), "10.6.168.131");
/// assert!(got[0].fresh);
/// # });
/// ```
pub struct Ipam<S> {
    store: S,
    config: Config,
    rng: Mutex<fastrand::Rng>,
}

impl<S> fmt::Debug for Ipam<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ipam")
            .field("config", &self.config)
            .finish()
    }
}

/// Where one attempt of an allocation or a release reads from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Reads {
    /// The store itself: what it answers is what it held at some instant of the read.
    #[default]
    Fresh,
    /// The store's cache where it has the key ([`Store::cached`]), the store otherwise: an
    /// attempt that may act on stale records, so it acts only through compare-and-swaps on
    /// the versions it read (see [`Store::caches`]).
    Cached,
}

/// Blocks read and changed by one attempt of one operation, by `(family, index)`.
///
/// Reads go through it so that an operation sees its own changes (two slots of one request
/// never get one address), and its writes are conditioned on exactly the versions it read.
#[derive(Default)]
pub(crate) struct BlockCache {
    /// Where the blocks it loads come from.
    reads: Reads,
    /// `None`: the store has no block there.
    read: FxHashMap<(Family, u128), Option<Versioned<BlockRecord>>>,
    /// Ranges of block indexes read whole: a block not in `read` there does not exist.
    scanned: Vec<(Family, u128, u128)>,
    changed: BTreeMap<(Family, u128), BlockRecord>,
    /// Blocks to write back unchanged, as a guard: an owner index entry that a block
    /// contradicts is dropped only in a transaction that first compare-and-swaps that block,
    /// so that an allocation in flight (its index written, its block not yet) either lands
    /// before the guard, and the release sees it, or fails on it and starts over.
    guarded: std::collections::BTreeSet<(Family, u128)>,
    /// Blocks the store holds but cannot read (written around our checks): the search skips
    /// them as if every address were taken, and anything that needs their holders fails.
    invalid: FxHashMap<(Family, u128), InvalidRecord>,
}

impl BlockCache {
    /// An empty cache whose blocks are loaded from `reads`.
    pub(crate) fn reading(reads: Reads) -> BlockCache {
        BlockCache {
            reads,
            ..BlockCache::default()
        }
    }

    /// Whether the attempt writes anything: a changed block or a guard.
    pub(crate) fn has_writes(&self) -> bool {
        !self.changed.is_empty() || !self.guarded.is_empty()
    }

    /// The block as this attempt sees it, for the free-address search; with `keep_off`,
    /// blocks claimed by another node than `node` are skipped.
    pub(crate) fn state(
        &self,
        family: Family,
        index: u128,
        node: Option<&ObjectName>,
        keep_off: bool,
    ) -> BlockState<'_> {
        if self.invalid.contains_key(&(family, index)) {
            return BlockState::Skip;
        }
        let block = match self.changed.get(&(family, index)) {
            Some(b) => b,
            None => match self.read.get(&(family, index)) {
                None if self.in_scanned(family, index) => return BlockState::Empty,
                None => return BlockState::Unknown,
                Some(None) => return BlockState::Empty,
                Some(Some(b)) => &b.value,
            },
        };
        if keep_off && block.affinity().is_some_and(|a| Some(a) != node) {
            return BlockState::Skip;
        }
        BlockState::Loaded(block.bits())
    }

    /// Whether the block was read (or found missing by a scan of its range).
    pub(crate) fn known(&self, family: Family, index: u128) -> bool {
        self.read.contains_key(&(family, index))
            || self.invalid.contains_key(&(family, index))
            || self.in_scanned(family, index)
    }

    /// Fails when the block was read but is invalid: its holders cannot be known.
    pub(crate) fn readable(&self, family: Family, index: u128) -> Result<(), Error> {
        match self.invalid.get(&(family, index)) {
            None => Ok(()),
            Some(bad) => Err(invalid(&Key::Block { family, index }, bad.clone()).into()),
        }
    }

    fn in_scanned(&self, family: Family, index: u128) -> bool {
        self.scanned
            .iter()
            .any(|&(f, a, b)| f == family && (a..=b).contains(&index))
    }

    /// The block as this attempt sees it; `None` when it is empty or not read.
    pub(crate) fn current(&self, family: Family, index: u128) -> Option<&BlockRecord> {
        self.changed
            .get(&(family, index))
            .or_else(|| self.read.get(&(family, index))?.as_ref().map(|b| &b.value))
    }

    /// The block to change (it must have been read); a new one is claimed for `node`. The
    /// block read moves into the changed set (only its version stays behind): a full block
    /// carries 64 holders, not worth a copy.
    pub(crate) fn edit(
        &mut self,
        family: Family,
        index: u128,
        node: Option<&ObjectName>,
    ) -> &mut BlockRecord {
        let read = &mut self.read;
        self.changed.entry((family, index)).or_insert_with(|| {
            match read.get_mut(&(family, index)).and_then(Option::as_mut) {
                Some(b) => std::mem::replace(&mut b.value, BlockRecord::new(family, index)),
                None => {
                    let mut new = BlockRecord::new(family, index);
                    new.set_affinity(node.cloned());
                    new
                }
            }
        })
    }

    /// Records what the store answered for a block.
    pub(crate) fn insert_read(
        &mut self,
        family: Family,
        index: u128,
        block: Option<Versioned<BlockRecord>>,
    ) {
        self.read.insert((family, index), block);
    }

    /// The blocks this attempt emptied that record where their round-robin search goes on:
    /// `(family, index, next)`.
    pub(crate) fn emptied_with_next(&self) -> Vec<(Family, u128, u128)> {
        self.changed
            .iter()
            .filter(|(_, b)| b.is_empty())
            .filter_map(|(&(family, index), b)| Some((family, index, b.next()?)))
            .collect()
    }

    /// Makes the transaction compare-and-swap the block even if nothing in it changes (see
    /// `guarded`). A block the store does not have is created empty, so that a concurrent
    /// creation of it conflicts too. That empty block stays: removing it at once would let
    /// the allocation in flight, which read the block as absent, create it after all. An
    /// empty block is harmless (allocation and counting read it as empty); whoever removes
    /// one must wait out the longest an allocation may take first.
    pub(crate) fn guard(&mut self, family: Family, index: u128) {
        if !self.changed.contains_key(&(family, index)) {
            self.guarded.insert((family, index));
        }
    }

    /// Adds the writes of every changed block, each conditioned on the version read: a put,
    /// or a delete when the block emptied; then the guards, each a put of the block as it was
    /// read (or of an empty block where there was none).
    pub(crate) fn write_into(mut self, txn: &mut Transaction) {
        for (family, index) in std::mem::take(&mut self.guarded) {
            if self.changed.contains_key(&(family, index)) {
                continue;
            }
            let key = Key::Block { family, index };
            match self.read.remove(&(family, index)) {
                Some(Some(read)) => txn.put(
                    key,
                    Record::Block(read.value),
                    Expect::Version(read.version),
                ),
                _ => txn.put(
                    key,
                    Record::Block(BlockRecord::new(family, index)),
                    Expect::Absent,
                ),
            };
        }
        for ((family, index), block) in self.changed {
            let expect = match self.read.get(&(family, index)) {
                Some(Some(read)) => Expect::Version(read.version.clone()),
                _ => Expect::Absent,
            };
            let key = Key::Block { family, index };
            if block.is_empty() {
                if expect != Expect::Absent {
                    txn.delete(key, expect);
                }
            } else {
                txn.put(key, Record::Block(block), expect);
            }
        }
    }
}

impl<S: Store> Ipam<S> {
    /// An engine with the default [`Config`].
    pub fn new(store: S) -> Ipam<S> {
        Ipam::with_config(store, Config::default())
    }

    /// An engine with `config`.
    pub fn with_config(store: S, config: Config) -> Ipam<S> {
        let rng = match config.seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        Ipam {
            store,
            config,
            rng: Mutex::new(rng),
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    fn rng(&self) -> std::sync::MutexGuard<'_, fastrand::Rng> {
        self.rng.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `attempt` once from the store's cache where the store has one, and if that does
    /// not succeed, [`Ipam::retrying`] it on fresh reads: whatever a view from a cache
    /// concluded (a conflict, a pool exhausted, nothing to do), the store decides.
    async fn cached_first<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut(Reads) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        if self.store.caches() {
            if let Ok(done) = attempt(Reads::Cached).await {
                return Ok(done);
            }
        }
        self.retrying(what, || attempt(Reads::Fresh)).await
    }

    /// Runs `attempt` until it neither conflicts nor fails transiently, backing off between
    /// tries; past `max_attempts`, [`Error::TryAgainLater`].
    async fn retrying<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut backoff = self.config.base_backoff;
        let mut last = String::new();
        for n in 1..=self.config.max_attempts {
            match attempt().await {
                Err(Error::Store(
                    e @ (StoreError::Conflict { .. } | StoreError::Transient { .. }),
                )) => {
                    last = match e {
                        StoreError::Conflict { .. } => "concurrent updates kept conflicting".into(),
                        other => other.to_string(),
                    };
                    if n < self.config.max_attempts {
                        let jitter = 0.5 + self.rng().f64();
                        self.config.sleep.sleep(backoff.mul_f64(jitter)).await;
                        backoff = (backoff * 2).min(self.config.max_backoff);
                    }
                }
                other => return other,
            }
        }
        Err(Error::TryAgainLater {
            what: what.to_owned(),
            attempts: self.config.max_attempts,
            last,
        })
    }

    /// Reads one record of the expected kind; another kind under the key is corruption.
    async fn read<T: FromRecord>(&self, key: &Key) -> Result<Option<Versioned<T>>, Error> {
        let record = self.store.get(key).await?;
        typed(key, record)
    }

    /// Reads every record in `range`, all of the expected kind.
    async fn read_all<T: FromRecord>(
        &self,
        range: &KeyRange,
    ) -> Result<Vec<(Key, Versioned<T>)>, Error> {
        let mut out = Vec::new();
        for (key, record) in self.store.scan(range).await? {
            let value = typed(&key, Some(record))?.expect("present");
            out.push((key, value));
        }
        Ok(out)
    }

    /// Reads every record in `range`: those of the expected kind, and apart those the store
    /// holds but cannot read ([`Record::Invalid`]), so that one bad object written around
    /// our checks affects only what it covers.
    async fn read_readable<T: FromRecord>(
        &self,
        range: &KeyRange,
    ) -> Result<(Vec<(Key, Versioned<T>)>, Vec<(Key, InvalidRecord)>), Error> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for (key, record) in self.store.scan(range).await? {
            if let Record::Invalid(invalid) = record.value {
                bad.push((key, invalid));
                continue;
            }
            let value = typed(&key, Some(record))?.expect("present");
            good.push((key, value));
        }
        Ok((good, bad))
    }

    /// Every record in `ranges` that the store holds but cannot read, as the errors that
    /// name them and say how to repair them: what `ipamctl` warns about.
    pub async fn invalid_records(&self, ranges: &[KeyRange]) -> Result<Vec<StoreError>, Error> {
        let mut out = Vec::new();
        for range in ranges {
            for (key, record) in self.store.scan(range).await? {
                if let Record::Invalid(bad) = record.value {
                    out.push(invalid(&key, bad));
                }
            }
        }
        Ok(out)
    }

    /// Reads `keys` in one round trip, one answer per key in order; with [`Reads::Cached`],
    /// those the store's cache has come from it and only the others from the store.
    async fn read_keys(
        &self,
        keys: &[Key],
        reads: Reads,
    ) -> Result<Vec<Option<Versioned<Record>>>, StoreError> {
        if reads == Reads::Fresh {
            return self.store.get_many(keys).await;
        }
        let mut out: Vec<Option<Versioned<Record>>> = Vec::with_capacity(keys.len());
        let mut missing: Vec<Key> = Vec::new();
        let mut hit: Vec<bool> = Vec::with_capacity(keys.len());
        for key in keys {
            let cached = self.store.cached(key).filter(|v| self.written_here(v));
            hit.push(cached.is_some());
            if cached.is_none() {
                missing.push(key.clone());
            }
            out.push(cached);
        }
        if missing.is_empty() {
            return Ok(out);
        }
        let mut fetched = self.store.get_many(&missing).await?.into_iter();
        for (slot, hit) in out.iter_mut().zip(hit) {
            if !hit {
                *slot = fetched.next().ok_or_else(|| StoreError::Corrupt {
                    key: missing[0].to_string(),
                    reason: "the store answered fewer records than it was asked for".into(),
                })?;
            }
        }
        Ok(out)
    }

    /// Whether a cached record is one that mostly this node writes, so worth an attempt:
    /// not a block of another node's affinity, which that node writes too (in a pool with
    /// fewer blocks than nodes, a node borrowing from another's block met a conflict on one
    /// ADD in four when it trusted its cache there: `benches/RESULTS.md`).
    fn written_here(&self, cached: &Versioned<Record>) -> bool {
        match (&cached.value, &self.config.node) {
            (Record::Block(b), Some(node)) => b.affinity().is_none_or(|a| a == node),
            _ => true,
        }
    }

    /// Reads the blocks at `wanted` that `cache` has not read yet, in one round trip.
    async fn load_blocks(
        &self,
        cache: &mut BlockCache,
        wanted: impl IntoIterator<Item = (Family, u128)>,
    ) -> Result<(), Error> {
        let mut keys: Vec<Key> = Vec::new();
        for (family, index) in wanted {
            let key = Key::Block { family, index };
            if !cache.known(family, index) && !keys.contains(&key) {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Ok(());
        }
        let found = self.read_keys(&keys, cache.reads).await?;
        for (key, record) in keys.iter().zip(found) {
            let Key::Block { family, index } = *key else {
                unreachable!("block keys only")
            };
            if let Some(Versioned {
                value: Record::Invalid(bad),
                ..
            }) = record
            {
                cache.invalid.insert((family, index), bad);
                continue;
            }
            let block = typed::<BlockRecord>(key, record)?;
            cache.insert_read(family, index, block);
        }
        Ok(())
    }

    /// Reads every block over `set` into `cache` in one scan (blocks it read already keep the
    /// version it saw first).
    async fn load_all_blocks(
        &self,
        cache: &mut BlockCache,
        family: Family,
        set: &IntervalSet,
    ) -> Result<(), Error> {
        let (Some(first), Some(&(_, last))) = (set.first(), set.intervals().last()) else {
            return Ok(());
        };
        let range = KeyRange::blocks_covering(family, first, last);
        let (blocks, invalid) = self.read_readable::<BlockRecord>(&range).await?;
        for (key, block) in blocks {
            if let Key::Block { family, index } = key {
                cache.read.entry((family, index)).or_insert(Some(block));
            }
        }
        for (key, bad) in invalid {
            if let Key::Block { family, index } = key {
                cache.invalid.entry((family, index)).or_insert(bad);
            }
        }
        if let KeyRange::Blocks { first, last, .. } = range {
            cache.scanned.push((family, first, last));
        }
        Ok(())
    }

    /// Every block of both families; one that does not read is an error (it may hold what
    /// the caller looks for).
    async fn every_block(&self) -> Result<Vec<Versioned<BlockRecord>>, Error> {
        let mut all = Vec::new();
        for family in [Family::V4, Family::V6] {
            let range = KeyRange::all_blocks(family);
            all.extend(
                self.read_all::<BlockRecord>(&range)
                    .await?
                    .into_iter()
                    .map(|(_, b)| b),
            );
        }
        Ok(all)
    }

    /// Commits `txn`, split into the store's largest commits. Each piece keeps the order of
    /// the whole, so a store that stops between two pieces is left as one that stopped
    /// between two operations.
    ///
    /// Every record is checked against the store's size limit first: a store of single
    /// objects would otherwise apply the operations before a record too large, and the
    /// refusal, which no retry can pass, would leave them behind.
    async fn commit(&self, txn: Transaction) -> Result<(), Error> {
        if txn.is_empty() {
            return Ok(());
        }
        for op in txn.ops() {
            if let Op::Put { key, record, .. } = op {
                if let Some(size) = self.store.record_size(key, record) {
                    size.check(key)?;
                }
            }
        }
        for piece in txn.chunks(self.store.max_commit_ops()) {
            self.store.commit(piece).await?;
        }
        Ok(())
    }
}

/// A record read under `key`, as the type expected there; another kind is corruption.
fn typed<T: FromRecord>(
    key: &Key,
    record: Option<Versioned<Record>>,
) -> Result<Option<Versioned<T>>, Error> {
    match record {
        None => Ok(None),
        Some(Versioned {
            value: Record::Invalid(bad),
            ..
        }) => Err(invalid(key, bad).into()),
        Some(Versioned { value, version }) => match T::from_record(value) {
            Some(value) => Ok(Some(Versioned { value, version })),
            None => Err(corrupt(key, T::KIND)),
        },
    }
}

/// The error for an invalid object found under `key`, with how to repair it.
pub(crate) fn invalid(key: &Key, bad: crate::store::InvalidRecord) -> StoreError {
    let repair = match key {
        Key::Pool(_) => "apply a valid spec with `ipamctl apply`, or delete it with `ipamctl delete ippool`",
        Key::ReservedIp(_) | Key::ReservedSummary => {
            "until it is fixed no address is handed out; apply a valid spec with `ipamctl apply`, or delete it with `ipamctl delete reservedip`"
        }
        Key::Block { .. } => {
            "none of its addresses is handed out or released until it is corrected (kubectl edit)"
        }
        Key::Owner(_) => {
            "correct it (kubectl edit) or delete it: the blocks still say what the owner holds, and GC on its node releases what it no longer uses"
        }
        Key::Cursor { .. } => "delete it: it is only a hint",
        Key::PoolGuard => "delete it: the next pool apply writes it anew",
    };
    StoreError::Invalid {
        key: bad.object,
        reason: bad.reason,
        repair,
    }
}

/// What applying an object does, given whether it exists with the same spec.
fn applied(same_spec: Option<bool>) -> Applied {
    match same_spec {
        None => Applied::Created,
        Some(true) => Applied::Unchanged,
        Some(false) => Applied::Configured,
    }
}

/// The contract's counts for `pool`, given the store's reserved set of its family, a
/// network's own reserved set (empty outside a CNI request), the number of addresses held
/// from the pool (`allocated`, wherever they lie), and every address held store-wide around
/// it (`taken`).
///
/// The rule for addresses outside the pool's current capacity (its `ips` were narrowed while
/// they were held): they count in `allocated`, as they are still held from the pool, and not
/// against `available`, which counts only addresses of the capacity that nobody holds and
/// nothing reserves. Addresses of the capacity held from another pool or network (inline
/// ranges may overlap an applied pool) are not `allocated` here but are not `available`
/// either.
pub(crate) fn counts(
    pool: &IpPool,
    store_reserved: &IntervalSet,
    network_reserved: &IntervalSet,
    allocated: u128,
    taken: &crate::search::Allocations,
) -> PoolCounts {
    let capacity = pool.capacity();
    let by_store = capacity.intersection(store_reserved);
    let open = capacity
        .difference(store_reserved)
        .difference(network_reserved);
    let total = capacity.len();
    let reserved = total - open.len();
    PoolCounts {
        pool: pool.name().clone(),
        total,
        reserved,
        reserved_by_network: reserved - by_store.len(),
        allocated,
        available: open.len() - taken.count_in(&open),
    }
}

/// A record that is not what its key promises.
fn corrupt(key: &Key, expected: &str) -> Error {
    Error::Store(StoreError::Corrupt {
        key: key.to_string(),
        reason: format!("not {expected}"),
    })
}

/// The allocation `holder` has of `value`, as the public type.
fn allocation_of(family: Family, value: u128, holder: &crate::holder::Holder) -> Allocation {
    Allocation {
        address: family.addr(value),
        pool: holder.pool.clone(),
        network: holder.network.clone(),
        owner: holder.owner.clone(),
        pod: holder.pod.clone(),
        node: holder.node.clone(),
    }
}
