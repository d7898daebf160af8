//! Release, garbage collection, and forced pool deletion.
//!
//! Blocks are written before the owner index: a store that stops in between has an index
//! entry that readers find untrue in its block, and drop.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::{allocation_of, corrupt, BlockCache, GcReport, Ipam, Reads};
use crate::addr::{to_u128, Family};
use crate::block::BlockRecord;
use crate::error::{Error, ObjectKind, StoreError};
use crate::holder::{Allocation, Held, Holder};
use crate::name::{ObjectName, Owner};
use crate::pool::{IpPool, PoolState};
use crate::search::block_index;
use crate::store::{Expect, Key, KeyRange, PoolRanges, Record, Store, Transaction};

/// Which addresses a release looks at.
#[derive(Clone, Copy)]
enum Candidates<'a> {
    /// Those the owner's index names on a network (every network: `None`), and these.
    Network(Option<&'a str>, &'a [IpAddr]),
    /// Exactly these, on any network.
    Only(&'a [IpAddr]),
    /// Those the owner's index names on a network, and these, but only where the holder
    /// records the node given (GC: a runtime knows its own node's attachments only).
    OfNode(&'a str, &'a [IpAddr], Option<&'a ObjectName>),
    /// Exactly these, on any network, to drop the index entries their blocks contradict:
    /// nothing is released.
    Stale(&'a [IpAddr]),
}

impl Candidates<'_> {
    fn network_matches(&self, network: &str) -> bool {
        match self {
            Candidates::Network(n, _) => n.is_none_or(|n| n == network),
            Candidates::Only(_) | Candidates::Stale(_) => true,
            Candidates::OfNode(n, _, _) => *n == network,
        }
    }

    /// Whether a holder of the owner, on a matching network, is to be released.
    fn releases(&self, holder: &Holder) -> bool {
        self.network_matches(&holder.network)
            && match self {
                Candidates::OfNode(_, _, node) => holder.node.as_ref() == *node,
                Candidates::Stale(_) => false,
                _ => true,
            }
    }
}

/// Whether a release keeps StatefulSet Pods' addresses for their identity.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// Every address looked at is released.
    Nothing,
    /// An address whose holder records a StatefulSet Pod moves to the Pod's identity owner
    /// ([`PodRef::identity_owner`](crate::PodRef::identity_owner)) instead: held, by no
    /// sandbox, until the next Pod of that name takes it over.
    StatefulSets,
}

/// What a release that keeps StatefulSet Pods' addresses did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// The addresses given back.
    pub released: Vec<Allocation>,
    /// The addresses now held for a StatefulSet Pod's identity (`owner` is the identity
    /// owner), waiting for the Pod's next sandbox.
    pub kept: Vec<Allocation>,
}

impl<S: Store> Ipam<S> {
    /// What `owner` holds, on every network, as the blocks say.
    pub async fn owner_allocations(&self, owner: &Owner) -> Result<Vec<Allocation>, Error> {
        let Some(index) = self.read::<Vec<Held>>(&Key::Owner(owner.clone())).await? else {
            return Ok(Vec::new());
        };
        let mut cache = BlockCache::default();
        let blocks = index.value.iter().map(|h| block_of(h.address));
        self.load_blocks(&mut cache, blocks).await?;
        let mut out = Vec::new();
        for h in &index.value {
            let (family, idx) = block_of(h.address);
            cache.readable(family, idx)?;
            let value = to_u128(h.address);
            if let Some(holder) = cache.current(family, idx).and_then(|b| b.holder(value)) {
                if holder.owner == *owner && holder.network == h.network {
                    out.push(allocation_of(family, value, holder));
                }
            }
        }
        Ok(out)
    }

    /// Releases what `owner` holds on `network` (on every network when `None`). Idempotent:
    /// releasing nothing succeeds. Returns what was released.
    pub async fn release(
        &self,
        owner: &Owner,
        network: Option<&str>,
    ) -> Result<Vec<Allocation>, Error> {
        self.cached_first("release", |reads| {
            self.try_release(
                owner,
                Candidates::Network(network, &[]),
                Keep::Nothing,
                reads,
            )
        })
        .await
        .map(|r| r.released)
    }

    /// As [`Ipam::release`], but the address of a StatefulSet Pod (its holder records the
    /// StatefulSet) is kept for the Pod's identity rather than released: the next Pod of the
    /// same namespace and name gets it back (see [`Request::pod`](crate::Request::pod)).
    /// Whether the StatefulSet still wants that Pod is the caller's to ask; what it no longer
    /// wants it releases from [`Released::kept`] with [`Ipam::release_addresses`] and the
    /// identity owner.
    ///
    /// ```
    /// # pollster::block_on(async {
    /// use ipam_core::{IpPool, IpPoolSpec, Ipam, MemoryStore, ObjectName, Owner, PodRef, Request, Slot};
    /// let ipam = Ipam::new(MemoryStore::new());
    /// let spec = IpPoolSpec { subnet: "10.0.0.0/24".into(), ips: vec!["10.0.0.10-10.0.0.20".into()], ..Default::default() };
    /// ipam.apply_pool(IpPool::new("pool", spec).unwrap()).await.unwrap();
    /// let db0 = |uid: &str| PodRef {
    ///     namespace: Some("prod".into()), name: "db-0".into(), uid: Some(uid.into()),
    ///     statefulset: Some("db".into()),
    /// };
    /// let add = |container: &str, uid: &str| {
    ///     Request::new(Owner::new(container, "eth0").unwrap(), "net1")
    ///         .pod(db0(uid))
    ///         .slot(Slot::any_of([ObjectName::new("pool").unwrap()]))
    /// };
    /// let first = ipam.allocate(&add("c1", "u1")).await.unwrap()[0].allocation.address;
    /// let done = ipam.release_keeping(&Owner::new("c1", "eth0").unwrap(), Some("net1")).await.unwrap();
    /// assert_eq!(done.kept[0].address, first);
    /// // The Pod comes back (a new UID, another sandbox): the same address.
    /// let again = ipam.allocate(&add("c2", "u2")).await.unwrap()[0].allocation.address;
    /// assert_eq!(again, first);
    /// # });
    /// ```
    pub async fn release_keeping(
        &self,
        owner: &Owner,
        network: Option<&str>,
    ) -> Result<Released, Error> {
        self.cached_first("release", |reads| {
            self.try_release(
                owner,
                Candidates::Network(network, &[]),
                Keep::StatefulSets,
                reads,
            )
        })
        .await
    }

    /// As [`Ipam::release_addresses`], keeping StatefulSet Pods' addresses for their
    /// identity as [`Ipam::release_keeping`] does: what the lifecycle controller does with
    /// a leaked sandbox of a StatefulSet Pod that is to come back.
    pub async fn release_addresses_keeping(
        &self,
        owner: &Owner,
        addresses: &[IpAddr],
    ) -> Result<Released, Error> {
        self.cached_first("release", |reads| {
            self.try_release(
                owner,
                Candidates::Only(addresses),
                Keep::StatefulSets,
                reads,
            )
        })
        .await
    }

    /// Releases exactly `addresses` if `owner` holds them, on any network: what a caller
    /// that could not deliver an allocation's answer gives back (see
    /// [`Ipam::allocate`]).
    pub async fn release_addresses(
        &self,
        owner: &Owner,
        addresses: &[IpAddr],
    ) -> Result<Vec<Allocation>, Error> {
        self.cached_first("release", |reads| {
            self.try_release(owner, Candidates::Only(addresses), Keep::Nothing, reads)
        })
        .await
        .map(|r| r.released)
    }

    async fn try_release(
        &self,
        owner: &Owner,
        which: Candidates<'_>,
        keep: Keep,
        reads: Reads,
    ) -> Result<Released, Error> {
        let key = Key::Owner(owner.clone());
        let mut index = self.read_keys(std::slice::from_ref(&key), reads).await?;
        let index = super::typed::<Vec<Held>>(&key, index.pop().flatten())?;
        let entries: &[Held] = index.as_ref().map_or(&[], |v| &v.value);
        let mut candidates: Vec<IpAddr> = Vec::new();
        let extra = match which {
            Candidates::Network(_, extra) | Candidates::OfNode(_, extra, _) => {
                candidates.extend(
                    entries
                        .iter()
                        .filter(|h| which.network_matches(&h.network))
                        .map(|h| h.address),
                );
                extra
            }
            Candidates::Only(only) | Candidates::Stale(only) => only,
        };
        for a in extra {
            if !candidates.contains(a) {
                candidates.push(*a);
            }
        }
        if candidates.is_empty() {
            return match reads {
                Reads::Fresh => Ok(Released::default()),
                // The cache may not know of an allocation: decided on fresh reads instead.
                Reads::Cached => Err(StoreError::Conflict {
                    key: key.to_string(),
                }
                .into()),
            };
        }
        let mut cache = BlockCache::reading(reads);
        self.load_blocks(&mut cache, candidates.iter().map(|a| block_of(*a)))
            .await?;
        if reads == Reads::Cached {
            // Whatever the cache says a block holds counts only if the block is still that
            // version: each is written, or written back unchanged.
            for a in &candidates {
                let (family, idx) = block_of(*a);
                cache.guard(family, idx);
            }
        }
        let mut released = Vec::new();
        let mut kept: Vec<Allocation> = Vec::new();
        for address in &candidates {
            let (family, idx) = block_of(*address);
            cache.readable(family, idx)?;
            let value = to_u128(*address);
            let mine = cache
                .current(family, idx)
                .and_then(|b| b.holder(value))
                .is_some_and(|h| h.owner == *owner && which.releases(h));
            if mine {
                let block = cache.edit(family, idx, None);
                let holder = block.remove(value).expect("held");
                let identity = match keep {
                    Keep::StatefulSets if !owner.is_statefulset_identity() => holder
                        .pod
                        .as_ref()
                        .and_then(|p| p.identity_owner(owner.ifname())),
                    _ => None,
                };
                match identity {
                    Some(id) => {
                        let waiting = Holder {
                            owner: id,
                            ..holder
                        };
                        kept.push(allocation_of(family, value, &waiting));
                        block.insert(value, waiting);
                    }
                    None => released.push(allocation_of(family, value, &holder)),
                }
            }
        }
        // The identities' indexes list what is kept for them before their blocks say so (as
        // an allocation writes its owner's index first): the Pod's next ADD looks there.
        let identities = self.identity_indexes(owner, &kept, &released).await?;
        // An index entry goes when its address was looked at and the owner no longer holds
        // it on that network (released now, or never taken: a stopped allocation).
        let still_holds = |h: &Held| {
            let (family, idx) = block_of(h.address);
            cache
                .current(family, idx)
                .and_then(|b| b.holder(to_u128(h.address)))
                .is_some_and(|x| {
                    x.network == h.network
                        && (x.owner == *owner
                            // An identity lists the address its Pod's sandbox holds too.
                            || (owner.is_statefulset_identity()
                                && x.pod
                                    .as_ref()
                                    .and_then(|p| p.identity_owner(x.owner.ifname()))
                                    .is_some_and(|id| id == *owner)))
                })
        };
        let (dropped, remaining): (Vec<Held>, Vec<Held>) = entries.iter().cloned().partition(|h| {
            candidates.contains(&h.address) && which.network_matches(&h.network) && !still_holds(h)
        });
        // An entry dropped without a release of its address is guarded by its block: the
        // owner may have an allocation of it in flight (index written, block not yet).
        for h in &dropped {
            let (family, idx) = block_of(h.address);
            cache.guard(family, idx);
        }
        let mut txn = Transaction::new();
        for write in identities.before {
            put_or_delete(&mut txn, write);
        }
        // 3 (computed first, written last). A block that empties is deleted, and with it
        // the `next` hint that carried its pools' round-robin searches on from their
        // cursors: a cursor still pointing into the block, behind that hint, moves to it, so
        // that the addresses just released are not the next ones handed out. (One more
        // read, only when a block empties.)
        let hints = self.cursor_hints_of_emptied(&cache, &released).await?;
        // 1. The blocks that decide.
        cache.write_into(&mut txn);
        // 2. The index, after.
        if remaining.len() != entries.len() {
            if remaining.is_empty() {
                txn.delete(key, Expect::read(&index));
            } else {
                txn.put(key, Record::Owner(remaining), Expect::read(&index));
            }
        } else if reads == Reads::Cached {
            // The index from the cache counts only if it is still that version: one that
            // lists more (an allocation made elsewhere) would have had more to release.
            match &index {
                Some(read) => txn.put(
                    key,
                    Record::Owner(read.value.clone()),
                    Expect::Version(read.version.clone()),
                ),
                None => txn.delete(key, Expect::Absent),
            };
        }
        for write in identities.after {
            put_or_delete(&mut txn, write);
        }
        for (cursor, next) in hints {
            txn.put(cursor, Record::Cursor(next), Expect::Any);
        }
        self.commit(txn).await?;
        Ok(Released { released, kept })
    }

    /// The identity owners' index records to rewrite: those that must list `kept` and do
    /// not yet (written before the blocks), and those that list what `released` gave back of
    /// a StatefulSet Pod (written after them), each with its precondition (the version read).
    async fn identity_indexes(
        &self,
        owner: &Owner,
        kept: &[Allocation],
        released: &[Allocation],
    ) -> Result<IdentityWrites, Error> {
        let mut owners: Vec<Owner> = kept.iter().map(|a| a.owner.clone()).collect();
        let gone: Vec<(Owner, Held)> = released
            .iter()
            .filter_map(|a| {
                let id = a.pod.as_ref()?.identity_owner(a.owner.ifname())?;
                // The identity's own release rewrites its index as any owner's.
                if id == *owner {
                    return None;
                }
                let entry = Held {
                    network: a.network.clone(),
                    address: a.address,
                };
                Some((id, entry))
            })
            .collect();
        owners.extend(gone.iter().map(|(o, _)| o.clone()));
        owners.sort();
        owners.dedup();
        let mut out = IdentityWrites::default();
        if owners.is_empty() {
            return Ok(out);
        }
        let keys: Vec<Key> = owners.iter().map(|o| Key::Owner(o.clone())).collect();
        let found = self.store.get_many(&keys).await?;
        for ((key, owner), record) in keys.into_iter().zip(&owners).zip(found) {
            let index = super::typed::<Vec<Held>>(&key, record)?;
            let read = index.as_ref().map(|v| v.value.clone()).unwrap_or_default();
            let mut entries: Vec<Held> = read
                .iter()
                .filter(|h| !gone.iter().any(|(o, e)| o == owner && e == *h))
                .cloned()
                .collect();
            let mut adds = false;
            for a in kept.iter().filter(|a| a.owner == *owner) {
                let entry = Held {
                    network: a.network.clone(),
                    address: a.address,
                };
                if !entries.contains(&entry) {
                    entries.push(entry);
                    adds = true;
                }
            }
            if entries == read {
                continue;
            }
            let write = if entries.is_empty() {
                (key, None, Expect::read(&index))
            } else {
                (key, Some(Record::Owner(entries)), Expect::read(&index))
            };
            if adds {
                out.before.push(write);
            } else {
                out.after.push(write);
            }
        }
        Ok(out)
    }

    /// The cursors to move to the `next` hint of the blocks this release empties: those of
    /// the released addresses' pools (this engine's node's) that point into such a block,
    /// before its hint.
    async fn cursor_hints_of_emptied(
        &self,
        cache: &BlockCache,
        released: &[Allocation],
    ) -> Result<Vec<(Key, u128)>, Error> {
        let mut wanted: Vec<(Key, u128, u128)> = Vec::new();
        for (family, index, next) in cache.emptied_with_next() {
            for a in released {
                if block_of(a.address) == (family, index) {
                    let key = self.cursor_key(&a.pool);
                    if !wanted.iter().any(|(k, _, _)| *k == key) {
                        wanted.push((key, index, next));
                    }
                }
            }
        }
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<Key> = wanted.iter().map(|(k, _, _)| k.clone()).collect();
        let found = self.store.get_many(&keys).await?;
        let mut out = Vec::new();
        for ((key, index, next), record) in wanted.into_iter().zip(found) {
            let cursor = super::typed::<u128>(&key, record)?.map(|v| v.value);
            if cursor.is_some_and(|c| block_index(c) == index && c < next) {
                out.push((key, next));
            }
        }
        Ok(out)
    }

    /// Releases every allocation of `network` whose owner is not in `valid`, found in the
    /// blocks and in the owners' indexes. Goes on past owners whose release fails and
    /// reports them.
    ///
    /// Only allocations this engine's node made are released ([`Holder::node`] equal to
    /// [`Config::node`](super::Config::node)): a runtime's GC names the attachments of its
    /// own node, and where nodes share a store, another node's allocations are not in its
    /// list but are in use. An engine without a node releases holders recorded without one.
    /// Holders written before holders recorded their node have none, and an engine with a
    /// node leaves them alone.
    pub async fn gc(&self, network: &str, valid: &BTreeSet<Owner>) -> Result<GcReport, Error> {
        let node = self.config.node.as_ref();
        let mut targets: BTreeMap<Owner, Vec<IpAddr>> = BTreeMap::new();
        let mut report = GcReport::default();
        for family in [Family::V4, Family::V6] {
            let (blocks, invalid) = self
                .read_readable::<BlockRecord>(&KeyRange::all_blocks(family))
                .await?;
            report
                .unreadable
                .extend(invalid.into_iter().map(|(k, bad)| super::invalid(&k, bad)));
            for (_, block) in blocks {
                // An address kept for a StatefulSet Pod's identity has no sandbox to be
                // listed as valid: the lifecycle controller decides it, not a runtime's GC.
                for (value, h) in block.value.iter() {
                    if h.network == network
                        && !valid.contains(&h.owner)
                        && !h.owner.is_statefulset_identity()
                        && h.node.as_ref() == node
                    {
                        targets
                            .entry(h.owner.clone())
                            .or_default()
                            .push(family.addr(value));
                    }
                }
            }
        }
        let (owners, invalid) = self.read_readable::<Vec<Held>>(&KeyRange::Owners).await?;
        report
            .unreadable
            .extend(invalid.into_iter().map(|(k, bad)| super::invalid(&k, bad)));
        for (key, index) in owners {
            let Key::Owner(owner) = key else {
                return Err(corrupt(&key, "an owner key"));
            };
            if !valid.contains(&owner)
                && !owner.is_statefulset_identity()
                && index.value.iter().any(|h| h.network == network)
            {
                targets.entry(owner).or_default();
            }
        }
        for (owner, found) in targets {
            let which = Candidates::OfNode(network, &found, node);
            match self
                .retrying("gc", || {
                    self.try_release(&owner, which, Keep::Nothing, Reads::Fresh)
                })
                .await
            {
                Ok(done) => report.released.extend(done.released),
                Err(e) => report.failures.push((owner, e)),
            }
        }
        Ok(report)
    }

    /// What crashes leave behind in the store, at this instant: owner index entries that
    /// their blocks contradict (an allocation stopped between its index write and its block
    /// write; or one still in flight, so a caller waits before it drops them) and blocks
    /// that hold no address (a guard's, or one whose last release stopped before deleting
    /// it), each with the version read. An entry of a StatefulSet Pod's identity that names
    /// an address a sandbox of that identity holds is not stale.
    pub async fn leftovers(&self) -> Result<Leftovers, Error> {
        let mut out = Leftovers::default();
        let mut holders: BTreeMap<IpAddr, Holder> = BTreeMap::new();
        for family in [Family::V4, Family::V6] {
            let (blocks, _) = self
                .read_readable::<BlockRecord>(&KeyRange::all_blocks(family))
                .await?;
            for (_, block) in blocks {
                if block.value.is_empty() {
                    out.empty_blocks.push(EmptyBlock {
                        family,
                        index: block.value.index(),
                        version: block.version.clone(),
                    });
                }
                for (value, h) in block.value.iter() {
                    holders.insert(family.addr(value), h.clone());
                }
            }
        }
        let (owners, _) = self.read_readable::<Vec<Held>>(&KeyRange::Owners).await?;
        for (key, index) in owners {
            let Key::Owner(owner) = key else {
                return Err(corrupt(&key, "an owner key"));
            };
            let stale: Vec<Held> = index
                .value
                .iter()
                .filter(|h| {
                    !holders.get(&h.address).is_some_and(|x| {
                        x.network == h.network
                            && (x.owner == owner
                                || x.pod
                                    .as_ref()
                                    .and_then(|p| p.identity_owner(x.owner.ifname()))
                                    .is_some_and(|id| id == owner))
                    })
                })
                .cloned()
                .collect();
            if !stale.is_empty() {
                out.stale_entries.push((owner, stale));
            }
        }
        Ok(out)
    }

    /// Drops the entries of `owner`'s index for `addresses` that its blocks contradict (see
    /// [`Ipam::leftovers`]); releases nothing (an address the owner holds keeps its entry).
    /// Each dropped entry's block is guarded, as a release's: an allocation of that address
    /// in flight fails its write and starts over. Returns how many entries went.
    pub async fn drop_stale_entries(
        &self,
        owner: &Owner,
        addresses: &[IpAddr],
    ) -> Result<usize, Error> {
        self.retrying("drop stale owner entries", || async {
            let key = Key::Owner(owner.clone());
            let before = self
                .read::<Vec<Held>>(&key)
                .await?
                .map_or(0, |v| v.value.len());
            let done = self
                .try_release(
                    owner,
                    Candidates::Stale(addresses),
                    Keep::Nothing,
                    Reads::Fresh,
                )
                .await?;
            debug_assert!(done.released.is_empty() && done.kept.is_empty());
            let after = self
                .read::<Vec<Held>>(&key)
                .await?
                .map_or(0, |v| v.value.len());
            Ok(before.saturating_sub(after))
        })
        .await
    }

    /// Deletes a block that held no address when read at `version`, if it is still that
    /// version (a compare-and-swap: a block written since, by an allocation or a guard, stays).
    /// Returns whether it was deleted.
    pub async fn delete_empty_block(&self, block: &EmptyBlock) -> Result<bool, Error> {
        let mut txn = Transaction::new();
        txn.delete(
            Key::Block {
                family: block.family,
                index: block.index,
            },
            Expect::Version(block.version.clone()),
        );
        match self.store.commit(txn).await {
            Ok(()) => Ok(true),
            Err(crate::StoreError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a pool. A pool that holds addresses is refused unless `force`, which releases
    /// them first; the released allocations are returned.
    pub async fn delete_pool(
        &self,
        name: &ObjectName,
        force: bool,
    ) -> Result<Vec<Allocation>, Error> {
        self.delete_pool_with(name, force, &mut |_| {}).await
    }

    /// As [`Ipam::delete_pool`], telling `released` what each block's release gave back as
    /// it goes, so that a caller stopped part-way (a deadline) can say exactly what was done.
    ///
    /// The pool is first marked [`PoolState::Deleting`](crate::PoolState): it hands out
    /// nothing from then on, and an allocation in flight that took from it gives back (see
    /// `PoolState`), so that no holder the deletion did not see survives it. Then its holders
    /// are released block by block, one compare-and-swap per block however many owners it
    /// holds (their owner index entries go stale, which readers ignore and the owner's DEL
    /// drops), and the pool is deleted. A deletion that stopped leaves the pool marked; the
    /// next one goes on from there. Without `force`, a pool that holds addresses is refused
    /// before the mark, and one that took an address while being marked is marked active
    /// again and refused.
    pub async fn delete_pool_with(
        &self,
        name: &ObjectName,
        force: bool,
        released: &mut (dyn FnMut(&[Allocation]) + Send),
    ) -> Result<Vec<Allocation>, Error> {
        let key = Key::Pool(name.clone());
        let not_found = || Error::NotFound {
            kind: ObjectKind::IpPool,
            name: name.to_string(),
        };
        // 1. The mark. An invalid pool (written around our checks) hands out nothing already.
        let marked = self
            .retrying("delete ippool", || async {
                let (pool, expect) = self.read_for_replace::<IpPool>(&key).await?;
                if expect == Expect::Absent {
                    return Err(not_found());
                }
                if let Some(p) = pool.as_ref().filter(|p| p.state() != PoolState::Deleting) {
                    // Refused at once where it is plainly in use: the mark would fail the
                    // pool's ADDs meanwhile for nothing.
                    if !force {
                        self.refuse_if_held(p).await?;
                    }
                    let mut mark = Transaction::new();
                    mark.put(
                        key.clone(),
                        Record::Pool(p.clone().with_state(PoolState::Deleting)),
                        expect,
                    );
                    self.commit(mark).await?;
                }
                Ok(pool)
            })
            .await;
        let pool = match marked {
            // A deletion that stopped after deleting the pool left its entry in the pools'
            // guard, which still keeps overlapping pools out: this one finishes it.
            Err(Error::NotFound { .. }) if self.forget_guarded(name).await? => {
                return Ok(Vec::new())
            }
            other => other?,
        };
        // 2. Its holders, as the blocks say after the mark, wherever they lie (a subnet or
        //    family edited with kubectl leaves them outside it; an invalid pool has none to
        //    look in). A block that does not read fails the deletion: it may hold some.
        let blocks = self.every_block().await?;
        let holding: Vec<(Family, u128)> = blocks
            .iter()
            .filter(|b| b.value.iter().any(|(_, h)| h.pool == *name))
            .map(|b| (b.value.family(), b.value.index()))
            .collect();
        if !holding.is_empty() && !force {
            let allocated = blocks
                .iter()
                .flat_map(|b| b.value.iter())
                .filter(|(_, h)| h.pool == *name)
                .count() as u128;
            if let Some(p) = &pool {
                self.retrying("delete ippool", || async {
                    let (now, expect) = self.read_for_replace::<IpPool>(&key).await?;
                    if now
                        .as_ref()
                        .is_some_and(|n| n.state() == PoolState::Deleting)
                    {
                        let mut unmark = Transaction::new();
                        unmark.put(
                            key.clone(),
                            Record::Pool(p.clone().with_state(PoolState::Active)),
                            expect,
                        );
                        self.commit(unmark).await?;
                    }
                    Ok(())
                })
                .await?;
            }
            return Err(Error::PoolInUse {
                pool: name.to_string(),
                allocated,
            });
        }
        // 3. The holders, block by block.
        let mut all = Vec::new();
        for (family, index) in holding {
            let freed = self
                .retrying("delete ippool", || {
                    self.release_pool_in_block(name, family, index)
                })
                .await?;
            released(&freed);
            all.extend(freed);
        }
        // 4. The pool, if it is still the one marked (not applied again meanwhile).
        self.retrying("delete ippool", || async {
            let (now, expect) = self.read_for_replace::<IpPool>(&key).await?;
            if expect == Expect::Absent {
                return Err(not_found());
            }
            if now.as_ref().is_some_and(|n| n.state() != PoolState::Deleting) {
                return Err(Error::Invalid(crate::validation::ValidationError::new(
                    "metadata.name",
                    name.as_str(),
                    "the pool was applied again while it was being deleted; its holders until then were released",
                )));
            }
            let mut txn = Transaction::new();
            txn.delete(key.clone(), expect);
            // The pool-wide cursor; nodes' cursors are hints that a re-created pool
            // reuses or overwrites.
            let cursor = Key::Cursor {
                pool: name.clone(),
                node: None,
            };
            txn.delete(cursor, Expect::Any);
            self.commit(txn).await
        })
        .await?;
        // 5. Its entry in the pools' guard: only now may an overlapping pool be applied.
        self.forget_guarded(name).await?;
        Ok(all)
    }

    /// Removes `name`'s entry from the pools' guard; whether there was one.
    async fn forget_guarded(&self, name: &ObjectName) -> Result<bool, Error> {
        self.retrying("delete ippool", || async {
            let Some(guard) = self.read::<PoolRanges>(&Key::PoolGuard).await? else {
                return Ok(false);
            };
            let mut ranges = guard.value;
            if ranges.0.remove(name).is_none() {
                return Ok(false);
            }
            let mut txn = Transaction::new();
            txn.put(
                Key::PoolGuard,
                Record::PoolRanges(ranges),
                Expect::Version(guard.version),
            );
            self.commit(txn).await?;
            Ok(true)
        })
        .await
    }

    /// Releases every holder of `pool` in one block, in one compare-and-swap of the block.
    async fn release_pool_in_block(
        &self,
        pool: &ObjectName,
        family: Family,
        index: u128,
    ) -> Result<Vec<Allocation>, Error> {
        let key = Key::Block { family, index };
        let mut cache = BlockCache::default();
        self.load_blocks(&mut cache, [(family, index)]).await?;
        cache.readable(family, index)?;
        let Some(block) = cache.current(family, index) else {
            return Ok(Vec::new());
        };
        let values: Vec<u128> = block
            .iter()
            .filter(|(_, h)| h.pool == *pool)
            .map(|(v, _)| v)
            .collect();
        if values.is_empty() {
            return Ok(Vec::new());
        }
        let mut freed = Vec::with_capacity(values.len());
        let edit = cache.edit(family, index, None);
        for v in values {
            let holder = edit.remove(v).expect("held");
            freed.push(allocation_of(family, v, &holder));
        }
        let mut txn = Transaction::new();
        cache.write_into(&mut txn);
        debug_assert_eq!(txn.ops()[0].key(), &key);
        self.commit(txn).await?;
        Ok(freed)
    }
}

/// What crashes leave behind ([`Ipam::leftovers`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Owner index entries that their blocks contradict, by owner.
    pub stale_entries: Vec<(Owner, Vec<Held>)>,
    /// Blocks that hold no address.
    pub empty_blocks: Vec<EmptyBlock>,
}

/// A block that held no address when read.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EmptyBlock {
    /// Its family.
    pub family: Family,
    /// Its index.
    pub index: u128,
    /// The version read.
    pub version: crate::Version,
}

/// Rewrites of identity owners' indexes (`None`: delete it), before and after the blocks.
#[derive(Default)]
struct IdentityWrites {
    before: Vec<(Key, Option<Record>, Expect)>,
    after: Vec<(Key, Option<Record>, Expect)>,
}

fn put_or_delete(txn: &mut Transaction, (key, record, expect): (Key, Option<Record>, Expect)) {
    match record {
        Some(r) => txn.put(key, r, expect),
        None => txn.delete(key, expect),
    };
}

fn block_of(address: IpAddr) -> (Family, u128) {
    (Family::of(address), block_index(to_u128(address)))
}
