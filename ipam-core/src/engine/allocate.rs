//! Allocation: one address per slot of a request, all or nothing.
//!
//! A steady-state allocation makes two round trips of reads (the owner index, the
//! reservation summary, the pools and their cursors; then the blocks where the search
//! starts and where the owner's earlier addresses lie) and two writes in order: the owner
//! index, then the block that decides; then it reads the stored pools it took from once
//! more (`confirm_pools`). The pool's round-robin cursor is a hint that points
//! into a block; the block records where its own search goes on (`next`), so the cursor is
//! rewritten (unconditioned) only when the search leaves that block: once per 64
//! allocations in steady state.

use std::collections::HashMap;
use std::net::IpAddr;

use super::objects::overlap;
use super::{corrupt, typed, BlockCache, Ipam, Reads, Request, Slot};
use crate::addr::{to_u128, Family};
use crate::error::{Error, ObjectKind, StillHeld, StoreError, Unavailable};
use crate::holder::{Allocation, Held, Holder};
use crate::name::ObjectName;
use crate::pool::IpPool;
use crate::reserved::FamilySets;
use crate::search::{block_index, first_free_from, Probe, Strategy, BLOCK_BITS};
use crate::set::IntervalSet;
use crate::store::{Expect, Key, Record, Store, Transaction, Versioned};

/// One address of an allocation's answer: the allocation, the pool that covers it and
/// whether this call took it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Granted {
    /// The allocation; its `pool` is the request's name for the pool that covers it.
    pub allocation: Allocation,
    /// That pool, as this call read it (its subnet, gateway and routes make the answer).
    pub pool: IpPool,
    /// Whether this call took it (false: the owner already held it, and the request was a
    /// repeat).
    pub fresh: bool,
}

/// A pool as one attempt sees it: the lens, and where its round-robin search starts.
struct Lens {
    pool: IpPool,
    /// The cursor as stored.
    cursor: Option<u128>,
    start: Option<u128>,
    new_cursor: Option<u128>,
    /// The last address this attempt took from the pool.
    last: Option<u128>,
}

/// What an attempt decided on, beside the blocks: checked again after its write.
struct Used<'a> {
    /// Whether it read from the store's cache.
    from_cache: bool,
    /// The pools, as it read them.
    pools: &'a HashMap<ObjectName, Lens>,
}

impl Lens {
    /// Whether the stored cursor must be rewritten after this attempt took `last`: not when
    /// `last` lies in the stored cursor's block at or after it, since that block's `next`
    /// hint (written with it) carries the search on from there.
    fn cursor_moved(&self) -> bool {
        match (self.cursor, self.last) {
            (Some(stored), Some(last)) => block_index(stored) != block_index(last) || last < stored,
            _ => self.new_cursor.is_some(),
        }
    }
}

impl Lens {
    /// Whether an address the owner holds (taken from the pool named `from`) answers for
    /// this pool: it is listed, or it was taken from this very pool and is still in its
    /// subnet (a narrowed pool does not evict).
    fn covers(&self, from: &ObjectName, address: IpAddr) -> bool {
        self.pool.family() == Family::of(address)
            && (self.pool.ips().contains(to_u128(address))
                || (from == self.pool.name() && self.pool.in_subnet(address)))
    }
}

impl<S: Store> Ipam<S> {
    /// Allocates one address per slot of `request`, all or nothing, and says what was
    /// granted for each slot, in order.
    ///
    /// A repeated request by the same owner on the same network returns what it holds and
    /// allocates nothing new ([`Granted::fresh`] is false): an address it holds answers for a
    /// slot if one of the slot's pools lists it (or it was taken from that pool and is still
    /// in its subnet), whatever the pools are called now. A caller that cannot deliver the
    /// answer releases exactly the fresh ones.
    pub async fn allocate(&self, request: &Request) -> Result<Vec<Granted>, Error> {
        self.cached_first("allocate", |reads| self.try_allocate(request, reads))
            .await
    }

    async fn try_allocate(&self, request: &Request, reads: Reads) -> Result<Vec<Granted>, Error> {
        let mut names: Vec<&ObjectName> = Vec::new();
        for name in request.slots.iter().flat_map(|s| &s.pools) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let defined = |name: &ObjectName| request.defines.iter().find(|p| p.name() == name);
        let stored: Vec<&ObjectName> = names
            .iter()
            .copied()
            .filter(|n| defined(n).is_none())
            .collect();

        // Round trip 1: the owner's index, the reservations, the pools, their cursors.
        let owner_key = Key::Owner(request.owner.clone());
        let mut keys = vec![owner_key.clone(), Key::ReservedSummary];
        keys.extend(stored.iter().map(|n| Key::Pool((*n).clone())));
        keys.extend(names.iter().map(|n| self.cursor_key(n)));
        // A StatefulSet Pod's identity: the addresses kept for it, read in the same trip.
        let identity = request
            .pod
            .as_ref()
            .and_then(|p| p.identity_owner(request.owner.ifname()));
        if let Some(id) = &identity {
            keys.push(Key::Owner(id.clone()));
        }
        let found = match reads {
            Reads::Fresh => self.store.get_many(&keys).await?,
            Reads::Cached => {
                // The owner's index as cached, or none: a new owner has none, and the create
                // of it (on `Absent`) fails if it has one after all. The identity's, fresh:
                // what is kept for a StatefulSet Pod is taken without a write of that index.
                let identity_keys = usize::from(identity.is_some());
                let shared = &keys[1..keys.len() - identity_keys];
                let mut found = vec![self.store.cached(&owner_key)];
                found.extend(self.read_keys(shared, Reads::Cached).await?);
                if identity_keys > 0 {
                    found.extend(self.store.get_many(&keys[keys.len() - 1..]).await?);
                }
                found
            }
        };
        if found.len() != keys.len() {
            return Err(corrupt(&keys[0], "one answer per key read"));
        }
        let mut found = keys.iter().zip(found);
        let mut next = || found.next().expect("one answer per key");
        let (k, r) = next();
        let index = typed::<Vec<Held>>(k, r)?;
        let (k, r) = next();
        let summary = typed::<FamilySets>(k, r)?
            .map(|v| v.value)
            .unwrap_or_default();
        let mut lenses: HashMap<ObjectName, Lens> = HashMap::new();
        let lens = |pool: IpPool| Lens {
            pool,
            cursor: None,
            start: None,
            new_cursor: None,
            last: None,
        };
        for name in &stored {
            let (k, r) = next();
            let Some(pool) = typed::<IpPool>(k, r)? else {
                return Err(Error::NotFound {
                    kind: ObjectKind::IpPool,
                    name: name.to_string(),
                });
            };
            refuse_held_still(&pool.value)?;
            lenses.insert((*name).clone(), lens(pool.value));
        }
        for name in &names {
            if let Some(pool) = defined(name) {
                lenses.insert((*name).clone(), lens(pool.clone()));
            }
            let (k, r) = next();
            let cursor = typed::<u128>(k, r)?.map(|v| v.value);
            lenses.get_mut(*name).expect("every name has a lens").cursor = cursor;
        }
        let identity_index = match &identity {
            Some(_) => {
                let (k, r) = next();
                typed::<Vec<Held>>(k, r)?
            }
            None => None,
        };
        refuse_overlaps(request, &stored, &lenses)?;
        for slot in &request.slots {
            let Some(wanted) = slot.family else { continue };
            for name in &slot.pools {
                let pool = &lenses[name].pool;
                if pool.family() != wanted {
                    return Err(Error::WrongFamily {
                        pool: name.to_string(),
                        family: pool.family(),
                        subnet: pool.subnet().to_string(),
                        wanted,
                    });
                }
            }
        }

        // Round trip 2: the blocks of what the owner already holds here, and where each
        // slot's search starts.
        let held: Vec<Held> = index.as_ref().map(|v| v.value.clone()).unwrap_or_default();
        let mut wanted: Vec<(Family, u128)> = held
            .iter()
            .filter(|h| h.network == request.network)
            .map(|h| block_of(h.address))
            .collect();
        let kept_for_identity: Vec<Held> = identity_index
            .as_ref()
            .map(|v| v.value.clone())
            .unwrap_or_default();
        wanted.extend(
            kept_for_identity
                .iter()
                .filter(|h| h.network == request.network)
                .map(|h| block_of(h.address)),
        );
        for slot in &request.slots {
            match (slot.requested, slot.pools.first()) {
                (Some(address), _) => wanted.push(block_of(address)),
                (None, Some(first)) => {
                    let l = lenses.get_mut(first).expect("every name has a lens");
                    let start = self.start(l);
                    wanted.push((l.pool.family(), block_index(start)));
                }
                (None, None) => {}
            }
        }
        let mut cache = BlockCache::reading(reads);
        self.load_blocks(&mut cache, wanted).await?;

        // What the owner holds on this network, as the blocks say. An index entry they
        // contradict is left as it is: it may be stale (a crash between the index write and
        // the block write) or an allocation of this owner still in flight, whose block write
        // is yet to come. Only a release drops such an entry, guarded by its block.
        let mut holding: Vec<(IpAddr, Holder)> = Vec::new();
        for h in held.iter().filter(|h| h.network == request.network) {
            let (family, idx) = block_of(h.address);
            cache.readable(family, idx)?;
            let value = to_u128(h.address);
            if let Some(holder) = cache.current(family, idx).and_then(|b| b.holder(value)) {
                if holder.owner == request.owner && holder.network == request.network {
                    holding.push((h.address, holder.clone()));
                }
            }
        }

        let mut granted: Vec<Granted> = Vec::with_capacity(request.slots.len());
        for slot in &request.slots {
            let kept = holding.iter().find_map(|(address, holder)| {
                let taken = granted.iter().any(|g| g.allocation.address == *address);
                let lens = slot
                    .pools
                    .iter()
                    .find(|n| lenses[*n].covers(&holder.pool, *address))?;
                (!taken).then_some((address, holder, lens))
            });
            if let Some((address, holder, lens)) = kept {
                if reads == Reads::Cached {
                    // Held as the cache says: so only if the block is still that version.
                    let (family, idx) = block_of(*address);
                    cache.guard(family, idx);
                }
                granted.push(Granted {
                    allocation: Allocation {
                        address: *address,
                        pool: lens.clone(),
                        network: request.network.clone(),
                        owner: request.owner.clone(),
                        pod: holder.pod.clone(),
                        node: holder.node.clone(),
                    },
                    pool: lenses[lens].pool.clone(),
                    fresh: false,
                });
                continue;
            }
            if slot.requested.is_none() {
                let kept = Kept {
                    request,
                    listed: &kept_for_identity,
                    summary: &summary,
                    lenses: &lenses,
                    node: self.config.node.as_ref(),
                };
                if let Some(g) = kept.take_over(slot, &granted, &mut cache)? {
                    granted.push(g);
                    continue;
                }
            }
            let allocation = match slot.requested {
                Some(address) => {
                    self.take_requested(request, slot, address, &summary, &lenses, &mut cache)
                        .await?
                }
                None => {
                    self.take_free(request, slot, &summary, &mut lenses, &mut cache)
                        .await?
                }
            };
            granted.push(Granted {
                pool: lenses[&allocation.pool].pool.clone(),
                allocation,
                fresh: true,
            });
        }
        if !cache.has_writes() {
            return match reads {
                Reads::Fresh => Ok(granted),
                // Nothing a compare-and-swap would check: decided on fresh reads instead.
                Reads::Cached => Err(StoreError::Conflict {
                    key: Key::Owner(request.owner.clone()).to_string(),
                }
                .into()),
            };
        }
        let used = Used {
            from_cache: reads == Reads::Cached,
            pools: &lenses,
        };

        let mut txn = Transaction::new();
        // 1. The owner index, first: a store that stops after it holds an entry that readers
        //    find untrue in the block, never a held address the index does not name.
        let mut entries: Vec<Held> = held.clone();
        for g in granted.iter().filter(|g| g.fresh) {
            let entry = Held {
                network: request.network.clone(),
                address: g.allocation.address,
            };
            if !entries.contains(&entry) {
                entries.push(entry);
            }
        }
        txn.put(owner_key, Record::Owner(entries), Expect::read(&index));
        // A StatefulSet Pod's identity lists its addresses on this network, before the
        // blocks too: the next Pod of that name finds them there, whether this sandbox
        // still holds them or a DEL kept them for the identity. Its earlier addresses on
        // this network that no slot took any more go (released in the blocks below).
        if let Some(id) = &identity {
            let mut listed: Vec<Held> = kept_for_identity
                .iter()
                .filter(|h| h.network != request.network)
                .cloned()
                .collect();
            listed.extend(granted.iter().map(|g| Held {
                network: request.network.clone(),
                address: g.allocation.address,
            }));
            for h in kept_for_identity
                .iter()
                .filter(|h| h.network == request.network && !listed.contains(h))
            {
                let (family, idx) = block_of(h.address);
                let value = to_u128(h.address);
                let waiting = cache
                    .current(family, idx)
                    .and_then(|b| b.holder(value))
                    .is_some_and(|x| x.owner == *id);
                if waiting {
                    cache.edit(family, idx, None).remove(value);
                }
            }
            // Dropped from the index on what the blocks said: a store that stops after the
            // index write (in order) keeps the drop, so it rests on fresh reads only.
            let drops = kept_for_identity.iter().any(|h| !listed.contains(h));
            if drops && reads == Reads::Cached {
                return Err(StoreError::Conflict {
                    key: Key::Owner(id.clone()).to_string(),
                }
                .into());
            }
            if listed != kept_for_identity {
                let key = Key::Owner(id.clone());
                if listed.is_empty() {
                    txn.delete(key, Expect::read(&identity_index));
                } else {
                    txn.put(key, Record::Owner(listed), Expect::read(&identity_index));
                }
            }
        }
        // 2. The blocks: the compare-and-swap that decides.
        cache.write_into(&mut txn);
        // 3. Cursors: hints, written only when the search left the block they point into.
        for (name, l) in &lenses {
            if let Some(c) = l.new_cursor.filter(|_| l.cursor_moved()) {
                txn.put(self.cursor_key(name), Record::Cursor(c), Expect::Any);
            }
        }
        if let Err(e) = self.commit(txn).await {
            if reads == Reads::Cached {
                // A store that commits in order may have written the owner index, and some
                // blocks, before a block's version from the cache failed: the addresses go
                // back and their index entries with them (a release, guarded by the blocks),
                // so that the attempt on fresh reads that follows leaves no entry behind.
                let fresh: Vec<IpAddr> = granted
                    .iter()
                    .filter(|g| g.fresh)
                    .map(|g| g.allocation.address)
                    .collect();
                let _ = self.release_addresses(&request.owner, &fresh).await;
            }
            return Err(e);
        }
        self.confirm_pools(request, &stored, &granted, &used)
            .await?;
        Ok(granted)
    }

    /// After the write: reads the stored pools this attempt took addresses from once more,
    /// and gives back everything it took if one of them was marked, changed to a subnet
    /// that no longer holds its address, or deleted meanwhile (then the attempt starts over
    /// and sees why). A change that must see every holder of a pool marks the pool before it
    /// looks ([`PoolState`](crate::PoolState)): an allocation that wrote before the mark is
    /// seen, one that reads the mark here gives back, so no holder escapes the change.
    ///
    /// An attempt made from the store's cache (`used.from_cache`) gives back too if any pool
    /// it read differs in any way from what it read, or if the reservations now cover an
    /// address it took: its view may have been stale, and only what it wrote was checked.
    async fn confirm_pools(
        &self,
        request: &Request,
        stored: &[&ObjectName],
        granted: &[Granted],
        used: &Used<'_>,
    ) -> Result<(), Error> {
        let mut names: Vec<&ObjectName> = Vec::new();
        for g in granted.iter().filter(|g| g.fresh) {
            let name = &g.allocation.pool;
            if stored.contains(&name) && !names.contains(&name) {
                names.push(name);
            }
        }
        if used.from_cache {
            // From a cache, every pool the attempt read may have misled it (an overlap or a
            // family it did not see), whatever it granted.
            for name in stored {
                if !names.contains(name) {
                    names.push(name);
                }
            }
        }
        let fresh_grants = granted.iter().any(|g| g.fresh);
        let summary = used.from_cache && fresh_grants;
        if names.is_empty() && !summary {
            return Ok(());
        }
        let mut keys: Vec<Key> = names.iter().map(|n| Key::Pool((*n).clone())).collect();
        if summary {
            keys.push(Key::ReservedSummary);
        }
        let mut now = self.store.get_many(&keys).await?;
        let mut moved = None;
        if summary {
            // The reservations as they are now may cover none of the new addresses: a
            // ReservedIP acknowledged before this attempt began is in them. One that changed
            // elsewhere does not matter; one that cannot be read stops everything.
            let reserved = match now.pop().flatten() {
                None => Some(FamilySets::default()),
                Some(Versioned {
                    value: Record::ReservedSummary(s),
                    ..
                }) => Some(s),
                Some(_) => None,
            };
            let covers = |s: &FamilySets| {
                granted.iter().filter(|g| g.fresh).any(|g| {
                    let address = g.allocation.address;
                    s.get(Family::of(address)).contains(to_u128(address))
                })
            };
            if reserved.as_ref().is_none_or(covers) {
                moved = Some(&Key::ReservedSummary);
            }
        }
        for (key, read) in keys.iter().zip(now) {
            if moved.is_some() {
                break;
            }
            let pool = match read {
                Some(Versioned {
                    value: Record::Pool(pool),
                    ..
                }) if pool.state().is_active() => pool,
                _ => {
                    moved = Some(key);
                    break;
                }
            };
            let outside = granted.iter().filter(|g| g.fresh).any(|g| {
                g.allocation.pool == *pool.name() && !pool.in_subnet(g.allocation.address)
            });
            let changed =
                used.from_cache && used.pools.get(pool.name()).is_none_or(|l| l.pool != pool);
            if outside || changed {
                moved = Some(key);
                break;
            }
        }
        let Some(key) = moved else { return Ok(()) };
        let fresh: Vec<IpAddr> = granted
            .iter()
            .filter(|g| g.fresh)
            .map(|g| g.allocation.address)
            .collect();
        self.release_addresses(&request.owner, &fresh).await?;
        Err(StoreError::Conflict {
            key: key.to_string(),
        }
        .into())
    }

    /// The holder this engine records for an address of `pool` taken for `request`.
    fn holder_for(&self, request: &Request, pool: &ObjectName) -> Holder {
        Holder {
            owner: request.owner.clone(),
            network: request.network.clone(),
            pool: pool.clone(),
            pod: request.pod.clone(),
            node: self.config.node.clone(),
        }
    }

    /// The cursor of `pool` for this engine: its node's, where it has one.
    pub(super) fn cursor_key(&self, pool: &ObjectName) -> Key {
        Key::Cursor {
            pool: pool.clone(),
            node: self.config.node.clone(),
        }
    }

    /// Where the search of `lens` starts in this attempt (chosen once per attempt).
    ///
    /// A node without a cursor yet starts at a block of the pool chosen by its name, so that
    /// nodes sharing a pool fill different blocks and seldom write the same one.
    fn start(&self, lens: &mut Lens) -> u128 {
        if let Some(s) = lens.start {
            return s;
        }
        let cursor = lens.new_cursor.or(lens.cursor).or_else(|| {
            let node = self.config.node.as_ref()?;
            let capacity = lens.pool.capacity();
            let total = capacity.len();
            (total > 0).then(|| {
                let at = capacity.nth(name_hash(node.as_str()) % total)?;
                // The start of its block, or of the capacity if that is later.
                let block_start = (at >> BLOCK_BITS) << BLOCK_BITS;
                capacity.next_at_or_after(block_start)
            })?
        });
        let s = self
            .config
            .strategy
            .start(lens.pool.capacity(), cursor, &mut self.rng());
        lens.start = Some(s);
        s
    }

    async fn take_free(
        &self,
        request: &Request,
        slot: &Slot,
        summary: &FamilySets,
        lenses: &mut HashMap<ObjectName, Lens>,
        cache: &mut BlockCache,
    ) -> Result<Allocation, Error> {
        let mut exhausted = Vec::new();
        for name in &slot.pools {
            let lens = lenses.get_mut(name).expect("every name has a lens");
            let family = lens.pool.family();
            let reserved = [summary.get(family), request.reserved.get(family)];
            let start = match lens.new_cursor {
                Some(c) => c,
                None => {
                    let s = self.start(lens);
                    if self.config.strategy == Strategy::RoundRobin {
                        // The search would read this block first anyway (the slot's first
                        // pool's was read with the owner's blocks).
                        if !cache.known(family, block_index(s)) {
                            self.load_blocks(cache, [(family, block_index(s))]).await?;
                        }
                        resume(cache, family, s)
                    } else {
                        s
                    }
                }
            };
            // First among the blocks of this node and new ones; then, if that is all taken,
            // among every block (another node's too).
            let node = self.config.node.as_ref();
            let mut passes = if node.is_some() {
                &[true, false][..]
            } else {
                &[false][..]
            };
            let mut reads = 0;
            let borrowed = node
                .filter(|_| self.config.strategy == Strategy::RoundRobin)
                .and_then(|n| room_where_it_borrowed(cache, lens, &reserved, n, start));
            let found = match borrowed {
                Some(x) => Some(x),
                None => loop {
                    let Some((&keep_off, rest)) = passes.split_first() else {
                        break None;
                    };
                    let probe = {
                        let cache = &*cache;
                        first_free_from(
                            lens.pool.capacity(),
                            &reserved,
                            |i| cache.state(family, i, node, keep_off),
                            start,
                        )
                    };
                    match probe {
                        Probe::Free(x) => break Some(x),
                        Probe::Exhausted => passes = rest,
                        Probe::NeedBlock(index) if reads < 2 => {
                            reads += 1;
                            self.load_blocks(cache, [(family, index)]).await?;
                        }
                        // A search that keeps finding blocks it has not read reads all of the
                        // pool's at once: one round trip instead of one per block.
                        Probe::NeedBlock(index) => {
                            self.load_all_blocks(cache, family, lens.pool.capacity())
                                .await?;
                            if !cache.known(family, index) {
                                self.load_blocks(cache, [(family, index)]).await?;
                            }
                        }
                    }
                },
            };
            if let Some(x) = found {
                let holder = self.holder_for(request, name);
                let block = cache.edit(family, block_index(x), node);
                let taken = block.insert(x, holder);
                debug_assert!(taken, "the search found a free address");
                block.set_next(x.checked_add(1));
                lens.new_cursor = Some(x.wrapping_add(1));
                lens.last = Some(x);
                return Ok(Allocation {
                    address: family.addr(x),
                    pool: name.clone(),
                    network: request.network.clone(),
                    owner: request.owner.clone(),
                    pod: request.pod.clone(),
                    node: self.config.node.clone(),
                });
            }
            let pool = lens.pool.clone();
            exhausted.push(self.pool_counts_with(&pool, &request.reserved).await?);
        }
        Err(Error::Exhausted { pools: exhausted })
    }

    async fn take_requested(
        &self,
        request: &Request,
        slot: &Slot,
        address: IpAddr,
        summary: &FamilySets,
        lenses: &HashMap<ObjectName, Lens>,
        cache: &mut BlockCache,
    ) -> Result<Allocation, Error> {
        let value = to_u128(address);
        let family = Family::of(address);
        let unavailable = |reason| Error::Unavailable { address, reason };
        let home = slot.pools.iter().find(|n| {
            let pool = &lenses[*n].pool;
            pool.family() == family && pool.ips().contains(value)
        });
        let Some(name) = home else {
            return Err(unavailable(Unavailable::OutsidePools {
                pools: slot.pools.clone(),
            }));
        };
        if let Some(rule) = lenses[name].pool.exclusion_rule(address) {
            return Err(unavailable(Unavailable::NotAllocatable {
                pool: name.clone(),
                rule: rule.into(),
            }));
        }
        if summary.get(family).contains(value) {
            let by = self.reserved_by(address).await?;
            return Err(unavailable(Unavailable::Reserved { by }));
        }
        if request.reserved.get(family).contains(value) {
            return Err(unavailable(Unavailable::Reserved { by: Vec::new() }));
        }
        let index = block_index(value);
        self.load_blocks(cache, [(family, index)]).await?;
        cache.readable(family, index)?;
        if let Some(holder) = cache.current(family, index).and_then(|b| b.holder(value)) {
            return Err(unavailable(Unavailable::Held {
                owner: holder.owner.clone(),
            }));
        }
        cache
            .edit(family, index, self.config.node.as_ref())
            .insert(value, self.holder_for(request, name));
        Ok(Allocation {
            address,
            pool: name.clone(),
            network: request.network.clone(),
            owner: request.owner.clone(),
            pod: request.pod.clone(),
            node: self.config.node.clone(),
        })
    }
}

/// Refuses a pool that is held still: one being deleted for good, one being changed for a
/// moment (a conflict: the attempt starts over).
fn refuse_held_still(pool: &IpPool) -> Result<(), Error> {
    match pool.state() {
        crate::PoolState::Active => Ok(()),
        crate::PoolState::Deleting => Err(Error::PoolDeleting {
            pool: pool.name().to_string(),
        }),
        crate::PoolState::Changing => Err(StoreError::Conflict {
            key: format!("ippool/{} (being changed by an apply)", pool.name()),
        }
        .into()),
    }
}

/// Refuses a request whose own pools overlap the stored pools it names: one address would
/// answer for two of its pools.
fn refuse_overlaps(
    request: &Request,
    stored: &[&ObjectName],
    lenses: &HashMap<ObjectName, Lens>,
) -> Result<(), Error> {
    for inline in &request.defines {
        for name in stored {
            let pool = &lenses[*name].pool;
            if let Some(o) = overlap((inline.family(), inline.ips()), (pool.family(), pool.ips())) {
                return Err(Error::DefinedPoolOverlaps {
                    defined: inline.name().to_string(),
                    pool: name.to_string(),
                    at: o.at,
                });
            }
        }
    }
    Ok(())
}

/// A hash of a name that stays the same across builds and platforms (FNV-1a), spread over
/// the whole `u128` line.
fn name_hash(name: &str) -> u128 {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in name.bytes() {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    h
}

/// Where a node goes on borrowing: a free address from `start` to the end of its block, if
/// `start` (the node's cursor) lies in a block of another node's affinity, already read.
///
/// The cursor is left in another node's block only by an allocation that found no room in
/// blocks of its own node nor a block to claim. Its next one goes on there while that block
/// has room, rather than searching every block again to learn that nothing changed: on the
/// Kubernetes store that search lists every block of the family (27 MB at 5,000 nodes, in
/// the simulation of `benches/src/scale.rs`). Once the block is full, the search looks
/// through all of them again, its own node's and new ones first, so a node that has room
/// again borrows at most the rest of one block.
fn room_where_it_borrowed(
    cache: &BlockCache,
    lens: &Lens,
    reserved: &[&IntervalSet],
    node: &ObjectName,
    start: u128,
) -> Option<u128> {
    // Only a cursor put it there: a node's first start, chosen by its name, may lie in
    // another node's block too, and then the node claims a block of its own.
    lens.new_cursor.or(lens.cursor)?;
    let family = lens.pool.family();
    let index = block_index(start);
    cache.readable(family, index).ok()?;
    let block = cache.current(family, index)?;
    if block.affinity().is_none_or(|a| a == node) {
        return None;
    }
    let last = (index << BLOCK_BITS) | ((1 << BLOCK_BITS) - 1);
    let rest = IntervalSet::from_intervals([(start, last)]);
    let within = lens.pool.capacity().intersection(&rest);
    match first_free_from(
        &within,
        reserved,
        |i| cache.state(family, i, Some(node), false),
        start,
    ) {
        Probe::Free(x) => Some(x),
        _ => None,
    }
}

/// Where a round-robin search that would start at `start` goes on: after the last address
/// handed out of `start`'s block, when that block records one past `start` (see
/// [`BlockRecord::next`](crate::block::BlockRecord::next)).
fn resume(cache: &BlockCache, family: Family, start: u128) -> u128 {
    let index = block_index(start);
    match cache.current(family, index).and_then(|b| b.next()) {
        Some(next) if next > start && block_index(next - 1) == index => next,
        _ => start,
    }
}

/// What a StatefulSet Pod's request finds kept for its identity (its identity owner's
/// index entries on every network), and what a slot may take of it.
struct Kept<'a> {
    request: &'a Request,
    listed: &'a [Held],
    summary: &'a FamilySets,
    lenses: &'a HashMap<ObjectName, Lens>,
    node: Option<&'a ObjectName>,
}

impl Kept<'_> {
    /// The address this slot gets back: one listed for the identity on this network, held
    /// in its block by a Pod of the same identity, that one of the slot's pools covers and no
    /// reservation has claimed since. It is taken over when it waits for the identity (a DEL
    /// kept it) or its holder is an earlier sandbox of this very Pod (same UID); while an
    /// earlier Pod's sandbox holds it, the request fails with [`Error::StillHeld`] (that
    /// sandbox may still run, on a node out of reach). `None`: nothing kept; the slot takes
    /// a free address as any other.
    fn take_over(
        &self,
        slot: &Slot,
        granted: &[Granted],
        cache: &mut BlockCache,
    ) -> Result<Option<Granted>, Error> {
        let request = self.request;
        let Some(pod) = &request.pod else {
            return Ok(None);
        };
        for h in self.listed.iter().filter(|h| h.network == request.network) {
            if granted.iter().any(|g| g.allocation.address == h.address) {
                continue;
            }
            let (family, idx) = block_of(h.address);
            cache.readable(family, idx)?;
            let value = to_u128(h.address);
            let Some(holder) = cache.current(family, idx).and_then(|b| b.holder(value)) else {
                continue;
            };
            let same = holder.network == request.network
                && holder.pod.as_ref().is_some_and(|p| p.same_identity(pod));
            let reserved = self.summary.get(family).contains(value)
                || request.reserved.get(family).contains(value);
            let lens = slot
                .pools
                .iter()
                .find(|n| self.lenses[*n].covers(&holder.pool, h.address));
            let (true, false, Some(lens)) = (same, reserved, lens) else {
                continue;
            };
            let waiting = holder.owner.is_statefulset_identity();
            let uid = holder.pod.as_ref().and_then(|p| p.uid.clone());
            let same_pod = uid.is_some() && uid == pod.uid;
            if !waiting && !same_pod {
                return Err(Error::StillHeld(Box::new(StillHeld {
                    address: h.address,
                    pod: pod.to_string(),
                    uid,
                    holder: holder.owner.clone(),
                    node: holder.node.clone(),
                })));
            }
            let pool = holder.pool.clone();
            let taken = Holder {
                owner: request.owner.clone(),
                network: request.network.clone(),
                pool: pool.clone(),
                pod: Some(pod.clone()),
                node: self.node.cloned(),
            };
            let block = cache.edit(family, idx, None);
            block.remove(value);
            block.insert(value, taken);
            return Ok(Some(Granted {
                allocation: Allocation {
                    address: h.address,
                    pool: lens.clone(),
                    network: request.network.clone(),
                    owner: request.owner.clone(),
                    pod: Some(pod.clone()),
                    node: self.node.cloned(),
                },
                pool: self.lenses[lens].pool.clone(),
                fresh: true,
            }));
        }
        Ok(None)
    }
}

fn block_of(address: IpAddr) -> (Family, u128) {
    (Family::of(address), block_index(to_u128(address)))
}
