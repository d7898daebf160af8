//! The IPAM engine: pools, reservations and allocations over any [`Store`].
//!
//! Every operation reads what it needs with versions, decides in pure code, and commits one
//! [`Transaction`] whose preconditions are the versions it read. When another writer got
//! there first the commit fails with a conflict and the operation starts over, after a
//! jittered backoff, a bounded number of times.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::addr::{to_u128, Family};
use crate::alloc::{block_index, first_free_from, Block, BlockState, Probe, Strategy};
use crate::error::{Error, ObjectKind, PoolCounts, StoreError, Unavailable, ValidationError};
use crate::name::{ObjectName, Owner};
use crate::pool::IpPool;
use crate::reserved::{FamilySets, ReservedIp};
use crate::set::IntervalSet;
use crate::store::{
    Allocation, Expect, FromRecord, Key, PodRef, Prefix, Record, Store, Transaction, Versioned,
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

/// One address wanted by a request: from the first of `pools` that has one free, or exactly
/// `requested`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Candidate pools, tried in order (all of one family).
    pub pools: Vec<ObjectName>,
    /// A specific address, which must be in one of the pools.
    pub requested: Option<IpAddr>,
}

/// A request for addresses: one per slot, all or nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Who will hold the addresses.
    pub owner: Owner,
    /// The network (CNI `name`) they are for.
    pub network: String,
    /// The Pod, where known.
    pub pod: Option<PodRef>,
    /// The addresses wanted.
    pub slots: Vec<Slot>,
    /// Addresses this request must not get besides the store's ReservedIPs (a network's own
    /// `reserved` list).
    pub reserved: FamilySets,
    /// Pools the request itself defines (a CNI network's `ranges`): where a slot takes an
    /// address from one, it is created or its spec replaced in the same transaction as the
    /// allocation, so a failed request leaves no pool behind.
    pub defines: Vec<IpPool>,
}

/// What [`Ipam::gc`] did.
#[derive(Debug, Default)]
pub struct GcReport {
    /// The allocations released.
    pub released: Vec<Allocation>,
    /// Owners whose release failed; the others were released regardless.
    pub failures: Vec<(Owner, Error)>,
}

/// Everything that decides whether one address is allocatable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// The address.
    pub address: IpAddr,
    /// Each pool whose subnet contains the address.
    pub pools: Vec<PoolFinding>,
    /// ReservedIPs that cover the address.
    pub reserved_by: Vec<ObjectName>,
}

/// What one pool says about an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolFinding {
    /// The pool.
    pub pool: ObjectName,
    /// Whether the pool's `ips` list the address.
    pub listed: bool,
    /// The rule of the pool that keeps it out, if any (`spec.excludeIPs`, the gateway, ...).
    pub excluded_by: Option<String>,
    /// The allocation holding it in this pool, if any.
    pub held: Option<Allocation>,
}

impl Explanation {
    /// Whether some pool could hand the address out now.
    pub fn allocatable(&self) -> bool {
        self.reserved_by.is_empty()
            && self
                .pools
                .iter()
                .any(|p| p.listed && p.excluded_by.is_none() && p.held.is_none())
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.allocatable() {
            "allocatable"
        } else {
            "not allocatable"
        };
        writeln!(f, "{}: {verdict}", self.address)?;
        if self.pools.is_empty() {
            writeln!(f, "  no pool's subnet contains it")?;
        }
        for p in &self.pools {
            let what = if !p.listed {
                "in the subnet but not in spec.ips".to_string()
            } else if let Some(rule) = &p.excluded_by {
                format!("listed, but kept out by {rule}")
            } else {
                "listed".to_string()
            };
            writeln!(f, "  ippool/{}: {what}", p.pool)?;
            if let Some(a) = &p.held {
                let pod = a
                    .pod
                    .as_ref()
                    .map(|p| format!(", pod {}/{}", p.namespace, p.name))
                    .unwrap_or_default();
                writeln!(f, "    held by {} (network {:?}{pod})", a.owner, a.network)?;
            }
        }
        for r in &self.reserved_by {
            writeln!(f, "  reserved by reservedip/{r}")?;
        }
        Ok(())
    }
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
/// let got = ipam.allocate(&Request {
///     owner: Owner::new("c1", "eth0").unwrap(),
///     network: "net1".into(),
///     pod: None,
///     slots: vec![Slot { pools: vec![ObjectName::new("p").unwrap()], requested: None }],
///     reserved: FamilySets::default(),
///     defines: vec![],
/// }).await.unwrap();
/// assert_eq!(got[0].address.to_string(), "10.6.168.131");
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

/// The state of one pool as read during one attempt.
struct PoolWork {
    pool: IpPool,
    /// What the store holds under the pool's key: checked at commit, or replaced by `pool`
    /// when the request defines the pool and the stored spec differs.
    stored: Expect,
    /// Whether the commit writes `pool`.
    define: bool,
    /// Blocks read so far: `None` when the store has none at that index.
    blocks: HashMap<u128, Option<Versioned<Block>>>,
    /// Blocks changed by this attempt.
    changed: HashMap<u128, Block>,
    cursor: Option<u128>,
    new_cursor: Option<u128>,
}

impl PoolWork {
    fn block_state(&self, index: u128) -> BlockState<'_> {
        if let Some(b) = self.changed.get(&index) {
            return BlockState::Loaded(b);
        }
        match self.blocks.get(&index) {
            None => BlockState::Unknown,
            Some(None) => BlockState::Empty,
            Some(Some(b)) => BlockState::Loaded(&b.value),
        }
    }

    fn mark(&mut self, value: u128) {
        let index = block_index(value);
        let block = self.changed.entry(index).or_insert_with(|| {
            self.blocks
                .get(&index)
                .and_then(|b| b.as_ref())
                .map(|b| b.value.clone())
                .unwrap_or_default()
        });
        block.insert(value);
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

    /// Runs `attempt` until it does not conflict, backing off between tries.
    async fn retrying<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut backoff = self.config.base_backoff;
        for n in 1..=self.config.max_attempts {
            match attempt().await {
                Err(Error::Store(StoreError::Conflict { .. })) if n < self.config.max_attempts => {
                    let jitter = 0.5 + self.rng().f64();
                    self.config.sleep.sleep(backoff.mul_f64(jitter)).await;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
                Err(Error::Store(StoreError::Conflict { .. })) => break,
                other => return other,
            }
        }
        Err(Error::TryAgainLater {
            what: what.to_owned(),
            attempts: self.config.max_attempts,
        })
    }

    /// Reads one record of the expected kind; another kind under the key is corruption.
    async fn read<T: FromRecord>(&self, key: &Key) -> Result<Option<Versioned<T>>, Error> {
        match self.store.get(key).await? {
            None => Ok(None),
            Some(Versioned { value, version }) => match T::from_record(value) {
                Some(value) => Ok(Some(Versioned { value, version })),
                None => Err(corrupt(key, T::KIND)),
            },
        }
    }

    /// Reads every record under `prefix`, all of the expected kind.
    async fn read_all<T: FromRecord>(
        &self,
        prefix: &Prefix,
    ) -> Result<Vec<(Key, Versioned<T>)>, Error> {
        let mut out = Vec::new();
        for (key, Versioned { value, version }) in self.store.scan(prefix).await? {
            match T::from_record(value) {
                Some(value) => out.push((key, Versioned { value, version })),
                None => return Err(corrupt(&key, T::KIND)),
            }
        }
        Ok(out)
    }

    // ---- objects ---------------------------------------------------------------------------

    /// Creates a pool or replaces its spec.
    ///
    /// Addresses held in the pool stay held even if the new spec no longer lists them, as a
    /// held address survives a new reservation; they are released by their owners as usual.
    pub async fn apply_pool(&self, pool: IpPool) -> Result<Applied, Error> {
        Ok(self.apply_all(&[], &[pool]).await?[0])
    }

    /// Creates or replaces ReservedIPs and pools in one transaction: either all of them are
    /// stored or none. Returns what happened to each, reservations first, in order.
    ///
    /// Each name may appear once per kind.
    pub async fn apply_all(
        &self,
        reservations: &[ReservedIp],
        pools: &[IpPool],
    ) -> Result<Vec<Applied>, Error> {
        for (i, r) in reservations.iter().enumerate() {
            if reservations[..i].iter().any(|o| o.name() == r.name()) {
                return Err(ValidationError::new(
                    "metadata.name",
                    r.name().as_str(),
                    "reservedip given twice",
                )
                .into());
            }
        }
        for (i, p) in pools.iter().enumerate() {
            if pools[..i].iter().any(|o| o.name() == p.name()) {
                return Err(ValidationError::new(
                    "metadata.name",
                    p.name().as_str(),
                    "ippool given twice",
                )
                .into());
            }
        }
        self.retrying("apply", || async {
            let mut txn = Transaction::new();
            let mut outcome = Vec::with_capacity(reservations.len() + pools.len());
            let mut all_reserved: Option<Vec<ReservedIp>> = None;
            for r in reservations {
                let key = Key::ReservedIp(r.name().clone());
                let old = self.read::<ReservedIp>(&key).await?;
                let applied = applied(old.as_ref().map(|v| v.value.spec() == r.spec()));
                if applied != Applied::Unchanged {
                    txn.put(key, Record::ReservedIp(r.clone()), Expect::read(&old));
                    if all_reserved.is_none() {
                        all_reserved = Some(self.reserved_ips().await?);
                    }
                    let all = all_reserved.as_mut().expect("read above");
                    all.retain(|o| o.name() != r.name());
                    all.push(r.clone());
                }
                outcome.push(applied);
            }
            if let Some(all) = &all_reserved {
                self.put_summary(&mut txn, all).await?;
            }
            for p in pools {
                let key = Key::Pool(p.name().clone());
                let old = self.read::<IpPool>(&key).await?;
                let applied = applied(old.as_ref().map(|v| v.value.spec() == p.spec()));
                if applied != Applied::Unchanged {
                    txn.put(key, Record::Pool(p.clone()), Expect::read(&old));
                }
                outcome.push(applied);
            }
            if !txn.is_empty() {
                self.store.commit(txn).await?;
            }
            Ok(outcome)
        })
        .await
    }

    /// Deletes a pool. A pool with allocations is refused unless `force`, which releases
    /// them; the released allocations are returned.
    pub async fn delete_pool(
        &self,
        name: &ObjectName,
        force: bool,
    ) -> Result<Vec<Allocation>, Error> {
        self.retrying("delete ippool", || async {
            let key = Key::Pool(name.clone());
            let Some(old) = self.read::<IpPool>(&key).await? else {
                return Err(Error::NotFound {
                    kind: ObjectKind::IpPool,
                    name: name.to_string(),
                });
            };
            let allocations = self
                .read_all::<Allocation>(&Prefix::Allocations(Some(name.clone())))
                .await?;
            if !allocations.is_empty() && !force {
                return Err(Error::PoolInUse {
                    pool: name.to_string(),
                    allocated: allocations.len() as u128,
                });
            }
            let mut txn = Transaction::new();
            txn.delete(key, Expect::Version(old.version));
            txn.delete(Key::Cursor(name.clone()), Expect::Any);
            for (k, v) in self
                .read_all::<Block>(&Prefix::Blocks(name.clone()))
                .await?
            {
                txn.delete(k, Expect::Version(v.version));
            }
            let mut by_owner: HashMap<Owner, Vec<Allocation>> = HashMap::new();
            let mut released = Vec::new();
            for (k, v) in allocations {
                txn.delete(k, Expect::Version(v.version));
                by_owner
                    .entry(v.value.owner.clone())
                    .or_default()
                    .push(v.value.clone());
                released.push(v.value);
            }
            for (owner, gone) in by_owner {
                self.drop_from_owner(&mut txn, &owner, &gone).await?;
            }
            self.store.commit(txn).await?;
            Ok(released)
        })
        .await
    }

    /// Rewrites an owner's record without `gone`.
    async fn drop_from_owner(
        &self,
        txn: &mut Transaction,
        owner: &Owner,
        gone: &[Allocation],
    ) -> Result<(), Error> {
        let key = Key::Owner(owner.clone());
        let Some(rec) = self.read::<Vec<Allocation>>(&key).await? else {
            return Ok(());
        };
        let rest: Vec<Allocation> = rec
            .value
            .iter()
            .filter(|a| !gone.contains(a))
            .cloned()
            .collect();
        if rest.is_empty() {
            txn.delete(key, Expect::Version(rec.version));
        } else {
            txn.put(key, Record::Owner(rest), Expect::Version(rec.version));
        }
        Ok(())
    }

    /// Creates a ReservedIP or replaces its spec. Its addresses stop being handed out by every
    /// pool at once; addresses already held stay with their owners.
    pub async fn apply_reserved_ip(&self, reserved: ReservedIp) -> Result<Applied, Error> {
        Ok(self.apply_all(&[reserved], &[]).await?[0])
    }

    /// Deletes a ReservedIP: its addresses are allocatable again at once.
    pub async fn delete_reserved_ip(&self, name: &ObjectName) -> Result<(), Error> {
        self.retrying("delete reservedip", || async {
            let key = Key::ReservedIp(name.clone());
            let Some(old) = self.read::<ReservedIp>(&key).await? else {
                return Err(Error::NotFound {
                    kind: ObjectKind::ReservedIp,
                    name: name.to_string(),
                });
            };
            let mut others = self.reserved_ips().await?;
            others.retain(|r| r.name() != name);
            let mut txn = Transaction::new();
            txn.delete(key, Expect::Version(old.version));
            self.put_summary(&mut txn, &others).await?;
            self.store.commit(txn).await?;
            Ok(())
        })
        .await
    }

    /// Adds the write of the reservation summary, conditional on the one read: every
    /// ReservedIP change goes through it, so concurrent changes serialize there.
    async fn put_summary(&self, txn: &mut Transaction, all: &[ReservedIp]) -> Result<(), Error> {
        let old = self.summary().await?;
        txn.put(
            Key::ReservedSummary,
            Record::ReservedSummary(FamilySets::union_of(all)),
            Expect::read(&old),
        );
        Ok(())
    }

    /// One pool.
    pub async fn pool(&self, name: &ObjectName) -> Result<Option<IpPool>, Error> {
        Ok(self
            .read::<IpPool>(&Key::Pool(name.clone()))
            .await?
            .map(|v| v.value))
    }

    /// Every pool, by name.
    pub async fn pools(&self) -> Result<Vec<IpPool>, Error> {
        let all = self.read_all::<IpPool>(&Prefix::Pools).await?;
        Ok(all.into_iter().map(|(_, v)| v.value).collect())
    }

    /// Every ReservedIP, by name.
    pub async fn reserved_ips(&self) -> Result<Vec<ReservedIp>, Error> {
        let all = self.read_all::<ReservedIp>(&Prefix::ReservedIps).await?;
        Ok(all.into_iter().map(|(_, v)| v.value).collect())
    }

    async fn summary(&self) -> Result<Option<Versioned<FamilySets>>, Error> {
        self.read(&Key::ReservedSummary).await
    }

    /// A pool's counts, as the contract defines them.
    pub async fn pool_counts(&self, pool: &IpPool) -> Result<PoolCounts, Error> {
        self.pool_counts_with(pool, &FamilySets::default()).await
    }

    /// A pool's counts as seen by a request that also keeps `network_reserved` out (a CNI
    /// network's own `reserved` list): `available` is what such a request could get.
    pub async fn pool_counts_with(
        &self,
        pool: &IpPool,
        network_reserved: &FamilySets,
    ) -> Result<PoolCounts, Error> {
        let summary = self.summary().await?.map(|s| s.value).unwrap_or_default();
        let mut blocks = Vec::new();
        for (key, v) in self
            .read_all::<Block>(&Prefix::Blocks(pool.name().clone()))
            .await?
        {
            match key {
                Key::Block { index, .. } => blocks.push((index, v.value)),
                key => return Err(corrupt(&key, "a block key")),
            }
        }
        let allocations = crate::alloc::Allocations::from_blocks(blocks);
        let family = pool.family();
        Ok(counts(
            pool,
            summary.get(family),
            network_reserved.get(family),
            &allocations,
        ))
    }

    // ---- allocation ------------------------------------------------------------------------

    /// Allocates one address per slot of `request`, all or nothing.
    ///
    /// A repeated request by the same owner on the same network returns what it holds and
    /// allocates nothing new.
    pub async fn allocate(&self, request: &Request) -> Result<Vec<Allocation>, Error> {
        self.retrying("allocate", || self.try_allocate(request))
            .await
    }

    async fn try_allocate(&self, request: &Request) -> Result<Vec<Allocation>, Error> {
        let owner_key = Key::Owner(request.owner.clone());
        let owner_rec = self.read::<Vec<Allocation>>(&owner_key).await?;
        let held: Vec<Allocation> = owner_rec
            .as_ref()
            .map(|v| v.value.clone())
            .unwrap_or_default();
        let summary = self.summary().await?;
        let no_reservations = FamilySets::default();
        let store_reserved = summary
            .as_ref()
            .map(|s| &s.value)
            .unwrap_or(&no_reservations);

        let mut work: HashMap<ObjectName, PoolWork> = HashMap::new();
        let mut result: Vec<Allocation> = Vec::with_capacity(request.slots.len());
        let mut fresh: Vec<Allocation> = Vec::new();
        for slot in &request.slots {
            let kept = held.iter().find(|a| {
                a.network == request.network && slot.pools.contains(&a.pool) && !result.contains(a)
            });
            if let Some(a) = kept {
                result.push(a.clone());
                continue;
            }
            let allocation = match slot.requested {
                Some(address) => {
                    self.take_requested(request, slot, address, store_reserved, &mut work)
                        .await?
                }
                None => {
                    self.take_free(request, slot, store_reserved, &mut work)
                        .await?
                }
            };
            result.push(allocation.clone());
            fresh.push(allocation);
        }
        if fresh.is_empty() {
            return Ok(result);
        }

        let mut txn = Transaction::new();
        txn.check(Key::ReservedSummary, Expect::read(&summary));
        for w in work.values().filter(|w| !w.changed.is_empty()) {
            let name = w.pool.name();
            if w.define {
                txn.put(
                    Key::Pool(name.clone()),
                    Record::Pool(w.pool.clone()),
                    w.stored,
                );
            } else {
                txn.check(Key::Pool(name.clone()), w.stored);
            }
            for (index, block) in &w.changed {
                let mut block = block.clone();
                block.optimize();
                let expect = Expect::read(&w.blocks.get(index).cloned().flatten());
                txn.put(
                    Key::Block {
                        pool: name.clone(),
                        index: *index,
                    },
                    Record::Block(block),
                    expect,
                );
            }
            if let Some(c) = w.new_cursor {
                txn.put(Key::Cursor(name.clone()), Record::Cursor(c), Expect::Any);
            }
        }
        for a in &fresh {
            txn.put(
                Key::Allocation {
                    pool: a.pool.clone(),
                    address: a.address,
                },
                Record::Allocation(a.clone()),
                Expect::Absent,
            );
        }
        let mut all = held;
        all.extend(fresh);
        txn.put(owner_key, Record::Owner(all), Expect::read(&owner_rec));
        self.store.commit(txn).await?;
        Ok(result)
    }

    async fn load_pool<'w>(
        &self,
        name: &ObjectName,
        defines: &[IpPool],
        work: &'w mut HashMap<ObjectName, PoolWork>,
    ) -> Result<&'w mut PoolWork, Error> {
        if !work.contains_key(name) {
            let key = Key::Pool(name.clone());
            let stored = self.read::<IpPool>(&key).await?;
            let expect = Expect::read(&stored);
            let defined = defines.iter().find(|p| p.name() == name);
            let (pool, define) = match (stored, defined) {
                (Some(s), Some(d)) if s.value.spec() == d.spec() => (s.value, false),
                (_, Some(d)) => (d.clone(), true),
                (Some(s), None) => (s.value, false),
                (None, None) => {
                    return Err(Error::NotFound {
                        kind: ObjectKind::IpPool,
                        name: name.to_string(),
                    })
                }
            };
            let cursor = self
                .read::<u128>(&Key::Cursor(name.clone()))
                .await?
                .map(|c| c.value);
            work.insert(
                name.clone(),
                PoolWork {
                    pool,
                    stored: expect,
                    define,
                    blocks: HashMap::new(),
                    changed: HashMap::new(),
                    cursor,
                    new_cursor: None,
                },
            );
        }
        Ok(work.get_mut(name).expect("inserted above"))
    }

    async fn load_block(&self, w: &mut PoolWork, index: u128) -> Result<(), Error> {
        let key = Key::Block {
            pool: w.pool.name().clone(),
            index,
        };
        let block = self.read::<Block>(&key).await?;
        w.blocks.insert(index, block);
        Ok(())
    }

    async fn take_free(
        &self,
        request: &Request,
        slot: &Slot,
        store_reserved: &FamilySets,
        work: &mut HashMap<ObjectName, PoolWork>,
    ) -> Result<Allocation, Error> {
        let mut exhausted = Vec::new();
        for name in &slot.pools {
            let w = self.load_pool(name, &request.defines, work).await?;
            let family = w.pool.family();
            let reserved = [store_reserved.get(family), request.reserved.get(family)];
            let capacity = w.pool.capacity().clone();
            let start = {
                let cursor = w.new_cursor.or(w.cursor);
                self.config
                    .strategy
                    .start(&capacity, cursor, &mut self.rng())
            };
            let found = loop {
                match first_free_from(&capacity, &reserved, |i| w.block_state(i), start) {
                    Probe::Free(x) => break Some(x),
                    Probe::Exhausted => break None,
                    Probe::NeedBlock(index) => self.load_block(w, index).await?,
                }
            };
            if let Some(x) = found {
                w.mark(x);
                w.new_cursor = Some(x.wrapping_add(1));
                return Ok(Allocation {
                    address: family.addr(x),
                    pool: name.clone(),
                    network: request.network.clone(),
                    owner: request.owner.clone(),
                    pod: request.pod.clone(),
                });
            }
            let c = self.pool_counts_with(&w.pool, &request.reserved).await?;
            exhausted.push(c);
        }
        Err(Error::Exhausted { pools: exhausted })
    }

    async fn take_requested(
        &self,
        request: &Request,
        slot: &Slot,
        address: IpAddr,
        store_reserved: &FamilySets,
        work: &mut HashMap<ObjectName, PoolWork>,
    ) -> Result<Allocation, Error> {
        let value = to_u128(address);
        let family = Family::of(address);
        let mut home = None;
        for name in &slot.pools {
            let w = self.load_pool(name, &request.defines, work).await?;
            if w.pool.family() == family && w.pool.ips().contains(value) {
                home = Some(name.clone());
                break;
            }
        }
        let unavailable = |reason| Error::Unavailable { address, reason };
        let Some(name) = home else {
            return Err(unavailable(Unavailable::OutsidePools {
                pools: slot.pools.clone(),
            }));
        };
        let w = work.get_mut(&name).expect("loaded above");
        if let Some(rule) = w.pool.exclusion_rule(address) {
            return Err(unavailable(Unavailable::NotAllocatable {
                pool: name,
                rule: rule.into(),
            }));
        }
        if store_reserved.get(family).contains(value) {
            let by = self
                .reserved_ips()
                .await?
                .into_iter()
                .filter(|r| r.family() == Some(family) && r.addresses().contains(value))
                .map(|r| r.name().clone())
                .collect();
            return Err(unavailable(Unavailable::Reserved { by }));
        }
        if request.reserved.get(family).contains(value) {
            return Err(unavailable(Unavailable::Reserved { by: Vec::new() }));
        }
        let index = block_index(value);
        if matches!(w.block_state(index), BlockState::Unknown) {
            self.load_block(w, index).await?;
        }
        if let BlockState::Loaded(b) = w.block_state(index) {
            if b.contains(value) {
                let key = Key::Allocation {
                    pool: name.clone(),
                    address,
                };
                let holder = match self.read::<Allocation>(&key).await? {
                    Some(a) => a.value.owner,
                    // Taken earlier in this same request.
                    None => request.owner.clone(),
                };
                return Err(unavailable(Unavailable::Held { owner: holder }));
            }
        }
        w.mark(value);
        Ok(Allocation {
            address,
            pool: name,
            network: request.network.clone(),
            owner: request.owner.clone(),
            pod: request.pod.clone(),
        })
    }

    /// What `owner` holds, on every network.
    pub async fn owner_allocations(&self, owner: &Owner) -> Result<Vec<Allocation>, Error> {
        let list = self
            .read::<Vec<Allocation>>(&Key::Owner(owner.clone()))
            .await?;
        Ok(list.map(|v| v.value).unwrap_or_default())
    }

    /// Every allocation of one pool, or of all pools, in pool and address order.
    pub async fn allocations(&self, pool: Option<&ObjectName>) -> Result<Vec<Allocation>, Error> {
        let all = self
            .read_all::<Allocation>(&Prefix::Allocations(pool.cloned()))
            .await?;
        Ok(all.into_iter().map(|(_, v)| v.value).collect())
    }

    /// Releases what `owner` holds on `network` (on every network when `None`). Idempotent:
    /// releasing nothing succeeds. Returns what was released.
    pub async fn release(
        &self,
        owner: &Owner,
        network: Option<&str>,
    ) -> Result<Vec<Allocation>, Error> {
        self.retrying("release", || self.try_release(owner, network))
            .await
    }

    async fn try_release(
        &self,
        owner: &Owner,
        network: Option<&str>,
    ) -> Result<Vec<Allocation>, Error> {
        let owner_key = Key::Owner(owner.clone());
        let Some(rec) = self.read::<Vec<Allocation>>(&owner_key).await? else {
            return Ok(Vec::new());
        };
        let (gone, kept): (Vec<Allocation>, Vec<Allocation>) = rec
            .value
            .into_iter()
            .partition(|a| network.is_none_or(|n| a.network == n));
        if gone.is_empty() {
            return Ok(Vec::new());
        }
        let mut txn = Transaction::new();
        let mut blocks: HashMap<(ObjectName, u128), Option<Versioned<Block>>> = HashMap::new();
        let mut changed: HashMap<(ObjectName, u128), Block> = HashMap::new();
        for a in &gone {
            let akey = Key::Allocation {
                pool: a.pool.clone(),
                address: a.address,
            };
            match self.read::<Allocation>(&akey).await? {
                Some(stored) if stored.value.owner == *owner => {
                    txn.delete(akey, Expect::Version(stored.version));
                }
                // The record is gone (the pool was force-deleted) or belongs to someone else:
                // the owner's claim is stale; drop it without touching the bitmap.
                _ => continue,
            }
            let value = to_u128(a.address);
            let bkey = (a.pool.clone(), block_index(value));
            if !blocks.contains_key(&bkey) {
                let key = Key::Block {
                    pool: bkey.0.clone(),
                    index: bkey.1,
                };
                let b = self.read::<Block>(&key).await?;
                blocks.insert(bkey.clone(), b);
            }
            if let Some(Some(read)) = blocks.get(&bkey) {
                changed
                    .entry(bkey)
                    .or_insert_with(|| read.value.clone())
                    .remove(value);
            }
        }
        for ((pool, index), mut block) in changed {
            let read = blocks.remove(&(pool.clone(), index)).flatten();
            let key = Key::Block { pool, index };
            if block.is_empty() {
                txn.delete(key, Expect::read(&read));
            } else {
                block.optimize();
                txn.put(key, Record::Block(block), Expect::read(&read));
            }
        }
        if kept.is_empty() {
            txn.delete(owner_key, Expect::Version(rec.version));
        } else {
            txn.put(owner_key, Record::Owner(kept), Expect::Version(rec.version));
        }
        self.store.commit(txn).await?;
        Ok(gone)
    }

    /// Releases every allocation of `network` whose owner is not in `valid`. Goes on past
    /// owners whose release fails and reports them.
    pub async fn gc(&self, network: &str, valid: &BTreeSet<Owner>) -> Result<GcReport, Error> {
        let mut report = GcReport::default();
        for (key, v) in self.read_all::<Vec<Allocation>>(&Prefix::Owners).await? {
            let Key::Owner(owner) = &key else {
                return Err(corrupt(&key, "an owner key"));
            };
            if valid.contains(owner) || !v.value.iter().any(|a| a.network == network) {
                continue;
            }
            match self.release(owner, Some(network)).await {
                Ok(released) => report.released.extend(released),
                Err(e) => report.failures.push((owner.clone(), e)),
            }
        }
        Ok(report)
    }

    /// Every reason `address` is or is not allocatable.
    pub async fn explain(&self, address: IpAddr) -> Result<Explanation, Error> {
        let value = to_u128(address);
        let family = Family::of(address);
        let mut pools = Vec::new();
        for pool in self.pools().await? {
            if !pool.in_subnet(address) {
                continue;
            }
            let key = Key::Allocation {
                pool: pool.name().clone(),
                address,
            };
            let held = self.read::<Allocation>(&key).await?.map(|a| a.value);
            pools.push(PoolFinding {
                pool: pool.name().clone(),
                listed: pool.ips().contains(value),
                excluded_by: pool.exclusion_rule(address).map(str::to_owned),
                held,
            });
        }
        let reserved_by = self
            .reserved_ips()
            .await?
            .into_iter()
            .filter(|r| r.family() == Some(family) && r.addresses().contains(value))
            .map(|r| r.name().clone())
            .collect();
        Ok(Explanation {
            address,
            pools,
            reserved_by,
        })
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
/// network's own reserved set (empty outside a CNI request) and its allocations.
pub fn counts(
    pool: &IpPool,
    store_reserved: &IntervalSet,
    network_reserved: &IntervalSet,
    allocations: &crate::alloc::Allocations,
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
        allocated: allocations.len(),
        available: open.len() - allocations.count_in(&open),
    }
}

/// A record that is not what its key promises.
fn corrupt(key: &Key, expected: &str) -> Error {
    Error::Store(StoreError::Corrupt {
        key: key.to_string(),
        reason: format!("not {expected}"),
    })
}
