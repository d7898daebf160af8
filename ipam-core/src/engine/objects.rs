//! Pools and ReservedIPs: apply, delete, read.

use std::net::IpAddr;

use super::{applied, Applied, Ipam};
use crate::addr::{to_u128, Family};
use crate::error::StoreError;
use crate::error::{Error, ObjectKind};
use crate::name::ObjectName;
use crate::pool::{IpPool, PoolState};
use crate::reserved::{FamilySets, ReservedIp};
use crate::set::IntervalSet;
use crate::store::{
    Expect, FromRecord, Key, KeyRange, PoolRanges, Record, Store, Transaction, Versioned,
};
use crate::validation::ValidationError;

impl<S: Store> Ipam<S> {
    /// Creates a pool or replaces its spec.
    ///
    /// Refused (nothing changes) when its `ips` overlap another pool's, and when it changes
    /// the subnet of a pool that holds addresses. Addresses held in the pool stay held even
    /// if the new spec no longer lists them, as a held address survives a new reservation;
    /// they are released by their owners as usual.
    pub async fn apply_pool(&self, pool: IpPool) -> Result<Applied, Error> {
        Ok(self.apply_all(&[], &[pool]).await?[0])
    }

    /// Creates or replaces ReservedIPs and pools together: on a store with atomic commits
    /// either all of them are stored or none. Returns what happened to each, reservations
    /// first, in order.
    ///
    /// Each name may appear once per kind. Pools are checked as [`Ipam::apply_pool`] checks
    /// one, against each other and against the stored pools.
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
            for r in reservations {
                let key = Key::ReservedIp(r.name().clone());
                let (old, expect) = self.read_for_replace::<ReservedIp>(&key).await?;
                let applied = replaced(&expect, old.as_ref().map(|o| o.spec() == r.spec()));
                if applied != Applied::Unchanged {
                    txn.put(key, Record::ReservedIp(r.clone()), expect);
                }
                outcome.push(applied);
            }
            if !pools.is_empty() {
                // Every pool write goes behind a write of the pools' guard, which lists what
                // every applied pool lists, conditioned on the version read here: of two
                // applies that each checked without the other's pool, the second to write the
                // guard fails and checks again, now against the first's entry.
                let guard = self.read::<PoolRanges>(&Key::PoolGuard).await?;
                let mut ranges = guard.as_ref().map(|g| g.value.clone()).unwrap_or_default();
                // Invalid pools take no part in the overlap check: they hand nothing out.
                let (stored, _) = self.read_readable::<IpPool>(&KeyRange::Pools).await?;
                let mut writes = Vec::new();
                for p in pools {
                    let key = Key::Pool(p.name().clone());
                    let listed = stored.iter().find(|(_, v)| v.value.name() == p.name());
                    let (old, expect) = match listed {
                        Some((_, v)) => (Some(v.value.clone()), Expect::Version(v.version.clone())),
                        // Not among the pools this store lists: absent, invalid (being
                        // repaired), or one this store may not use (a store of single
                        // objects says which, when asked by name).
                        None => self.read_for_replace::<IpPool>(&key).await?,
                    };
                    self.check_pool_change(p, old.as_ref(), &expect, pools, &stored, &ranges)
                        .await?;
                    // A pool held still (by a stopped deletion or change) is made active again.
                    let same = old
                        .as_ref()
                        .map(|o| o.spec() == p.spec() && o.state().is_active());
                    let applied = replaced(&expect, same);
                    if applied != Applied::Unchanged {
                        writes.push((key, p.clone(), expect));
                    }
                    outcome.push(applied);
                }
                for p in pools {
                    ranges
                        .0
                        .insert(p.name().clone(), (p.family(), p.ips().clone()));
                }
                let guarded = guard.as_ref().map(|g| &g.value) == Some(&ranges);
                if !writes.is_empty() || !guarded {
                    let expect = guard.map_or(Expect::Absent, |g| Expect::Version(g.version));
                    txn.put(Key::PoolGuard, Record::PoolRanges(ranges), expect);
                }
                for (key, p, expect) in writes {
                    txn.put(key, Record::Pool(p), expect);
                }
            }
            if !reservations.is_empty() {
                // After the objects: a store that stops in between has the objects without
                // their effect, which the next apply of any ReservedIP repairs here.
                let mut all = self.reserved_ips().await?;
                all.retain(|o| !reservations.iter().any(|r| r.name() == o.name()));
                all.extend(reservations.iter().cloned());
                self.put_summary(&mut txn, &all).await?;
            }
            self.commit(txn).await?;
            Ok(outcome)
        })
        .await
    }

    /// What is stored under `key` to be replaced: the object if it reads as one, and the
    /// expectation a replacement or deletion commits on. An invalid object (written around
    /// our checks) reads as no object with its version, so that it can be repaired.
    pub(super) async fn read_for_replace<T: FromRecord>(
        &self,
        key: &Key,
    ) -> Result<(Option<T>, Expect), Error> {
        match self.store.get(key).await? {
            None => Ok((None, Expect::Absent)),
            Some(Versioned {
                value: Record::Invalid(_),
                version,
            }) => Ok((None, Expect::Version(version))),
            Some(read) => {
                let read = super::typed::<T>(key, Some(read))?.expect("present");
                Ok((Some(read.value), Expect::Version(read.version)))
            }
        }
    }

    /// Refuses a pool spec that would overlap another pool, or move a pool that holds
    /// addresses to another subnet. `expect` says whether something is stored under the
    /// pool's name: an invalid pool being replaced (no `old`) may hold addresses anywhere.
    async fn check_pool_change(
        &self,
        pool: &IpPool,
        old: Option<&IpPool>,
        expect: &Expect,
        batch: &[IpPool],
        stored: &[(Key, Versioned<IpPool>)],
        guarded: &PoolRanges,
    ) -> Result<(), Error> {
        check_overlaps(pool, batch, stored, guarded)?;
        self.check_invalid_replaced(pool, old, expect).await?;
        if let Some(old) = old.filter(|o| o.subnet() != pool.subnet()) {
            let key = Key::Pool(pool.name().clone());
            if old.state() != PoolState::Changing {
                // Held still first, then counted: an allocation in flight either wrote before
                // the mark, and is counted, or reads it after its write and gives back (see
                // `PoolState`). The attempt starts over and reads the mark.
                let mut mark = Transaction::new();
                mark.put(
                    key.clone(),
                    Record::Pool(old.clone().with_state(PoolState::Changing)),
                    expect.clone(),
                );
                self.commit(mark).await?;
                return Err(StoreError::Conflict {
                    key: key.to_string(),
                }
                .into());
            }
            let held = self.held_from(old).await?;
            if held > 0 {
                // It hands out again, as it was.
                let mut unmark = Transaction::new();
                unmark.put(
                    key,
                    Record::Pool(old.clone().with_state(PoolState::Active)),
                    expect.clone(),
                );
                self.commit(unmark).await?;
                return Err(subnet_in_use(pool, old, held));
            }
        }
        Ok(())
    }

    /// Checks a pool as [`Ipam::apply_pool`] would, against the stored pools, and writes
    /// nothing: the admission webhook's judgement of a pool written with kubectl, from the
    /// same rules as an apply (overlap with another pool, naming both; the subnet of a pool
    /// that holds addresses; an invalid pool replaced while it holds addresses outside the
    /// new subnet).
    ///
    /// An apply holds a pool still before it counts what it holds; this check only counts,
    /// so an allocation made between the check and the write is not seen. The engine
    /// tolerates what slips through (a pool it cannot read hands nothing out).
    pub async fn check_pool(&self, pool: &IpPool) -> Result<(), Error> {
        let guard = self.read::<PoolRanges>(&Key::PoolGuard).await?;
        let ranges = guard.map(|g| g.value).unwrap_or_default();
        let (stored, _) = self.read_readable::<IpPool>(&KeyRange::Pools).await?;
        let key = Key::Pool(pool.name().clone());
        let listed = stored.iter().find(|(_, v)| v.value.name() == pool.name());
        let (old, expect) = match listed {
            Some((_, v)) => (Some(v.value.clone()), Expect::Version(v.version.clone())),
            None => self.read_for_replace::<IpPool>(&key).await?,
        };
        check_overlaps(pool, &[], &stored, &ranges)?;
        self.check_invalid_replaced(pool, old.as_ref(), &expect)
            .await?;
        if let Some(old) = old.filter(|o| o.subnet() != pool.subnet()) {
            let held = self.held_from(&old).await?;
            if held > 0 {
                return Err(subnet_in_use(pool, &old, held));
            }
        }
        Ok(())
    }

    /// Refuses, as [`Ipam::delete_pool`] without `force` does, the deletion of a pool that
    /// holds addresses ([`Error::PoolInUse`]); writes nothing. A pool already being deleted
    /// (marked by a deletion that was forced, or found it empty) passes, and so does one that
    /// does not read as a pool (absent, or invalid: it hands out nothing).
    pub async fn check_pool_deletion(&self, name: &ObjectName) -> Result<(), Error> {
        let (pool, _) = self
            .read_for_replace::<IpPool>(&Key::Pool(name.clone()))
            .await?;
        match pool {
            Some(p) if p.state() != PoolState::Deleting => self.refuse_if_held(&p).await,
            _ => Ok(()),
        }
    }

    /// [`Error::PoolInUse`] if `pool` holds addresses.
    pub(crate) async fn refuse_if_held(&self, pool: &IpPool) -> Result<(), Error> {
        let allocated = self.held_from(pool).await?;
        if allocated > 0 {
            return Err(Error::PoolInUse {
                pool: pool.name().to_string(),
                allocated,
            });
        }
        Ok(())
    }

    /// Refuses to replace an invalid pool (`expect` found something, `old` could not read it)
    /// by one whose subnet leaves out addresses the invalid one holds.
    async fn check_invalid_replaced(
        &self,
        pool: &IpPool,
        old: Option<&IpPool>,
        expect: &Expect,
    ) -> Result<(), Error> {
        if old.is_none() && *expect != Expect::Absent {
            let outside: Vec<IpAddr> = self
                .allocations(Some(pool.name()))
                .await?
                .into_iter()
                .map(|a| a.address)
                .filter(|a| !pool.in_subnet(*a))
                .collect();
            if let Some(first) = outside.first() {
                return Err(ValidationError::new(
                    "spec.subnet",
                    &pool.spec().subnet,
                    format!(
                        "the invalid pool it replaces holds {} address(es) outside it ({first} ...); release them first",
                        outside.len()
                    ),
                )
                .into());
            }
        }
        Ok(())
    }

    /// How many addresses are held from `pool`, wherever they lie (a subnet edited with
    /// kubectl leaves them outside it).
    pub(crate) async fn held_from(&self, pool: &IpPool) -> Result<u128, Error> {
        let blocks = self.every_block().await?;
        Ok(blocks
            .iter()
            .flat_map(|b| b.value.iter())
            .filter(|(_, h)| h.pool == *pool.name())
            .count() as u128)
    }

    /// Adds the write of the reservation summary of `all`, conditional on the one read, if
    /// it differs: every ReservedIP change goes through it, so concurrent changes serialize
    /// there.
    async fn put_summary(&self, txn: &mut Transaction, all: &[ReservedIp]) -> Result<(), Error> {
        // Read as it is stored: a store that derives the summary says it is invalid while
        // an invalid ReservedIP exists, and the apply or delete that repairs it writes here.
        let (old, expect) = self
            .read_for_replace::<FamilySets>(&Key::ReservedSummary)
            .await?;
        let new = FamilySets::union_of(all);
        if old.as_ref() != Some(&new) {
            txn.put(Key::ReservedSummary, Record::ReservedSummary(new), expect);
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
            let (_, expect) = self.read_for_replace::<ReservedIp>(&key).await?;
            if expect == Expect::Absent {
                return Err(Error::NotFound {
                    kind: ObjectKind::ReservedIp,
                    name: name.to_string(),
                });
            }
            let mut others = self.reserved_ips().await?;
            others.retain(|r| r.name() != name);
            let mut txn = Transaction::new();
            txn.delete(key, expect);
            self.put_summary(&mut txn, &others).await?;
            self.commit(txn).await?;
            Ok(())
        })
        .await
    }

    /// One pool.
    pub async fn pool(&self, name: &ObjectName) -> Result<Option<IpPool>, Error> {
        Ok(self
            .read::<IpPool>(&Key::Pool(name.clone()))
            .await?
            .map(|v| v.value))
    }

    /// One ReservedIP; an invalid one is [`StoreError::Invalid`].
    pub async fn reserved_ip(&self, name: &ObjectName) -> Result<Option<ReservedIp>, Error> {
        Ok(self
            .read::<ReservedIp>(&Key::ReservedIp(name.clone()))
            .await?
            .map(|v| v.value))
    }

    /// Every valid pool, by name ([`Ipam::invalid_records`] names the invalid ones).
    pub async fn pools(&self) -> Result<Vec<IpPool>, Error> {
        let (all, _) = self.read_readable::<IpPool>(&KeyRange::Pools).await?;
        Ok(all.into_iter().map(|(_, v)| v.value).collect())
    }

    /// Every valid ReservedIP, by name ([`Ipam::invalid_records`] names the invalid ones:
    /// while there is one, no address is handed out).
    pub async fn reserved_ips(&self) -> Result<Vec<ReservedIp>, Error> {
        let (all, _) = self
            .read_readable::<ReservedIp>(&KeyRange::ReservedIps)
            .await?;
        Ok(all.into_iter().map(|(_, v)| v.value).collect())
    }

    /// The ReservedIPs that cover `address`, by name: what a refused request for it and
    /// `explain` both name.
    pub(crate) async fn reserved_by(&self, address: IpAddr) -> Result<Vec<ObjectName>, Error> {
        let (family, value) = (Family::of(address), to_u128(address));
        Ok(self
            .reserved_ips()
            .await?
            .into_iter()
            .filter(|r| r.family() == Some(family) && r.addresses().contains(value))
            .map(|r| r.name().clone())
            .collect())
    }

    pub(crate) async fn summary(&self) -> Result<Option<Versioned<FamilySets>>, Error> {
        self.read(&Key::ReservedSummary).await
    }
}

/// Refuses a pool spec that would overlap another pool (of `batch`, stored, or as the
/// pools' guard lists them: an apply in flight, or a pool edited with kubectl since), naming
/// both.
fn check_overlaps(
    pool: &IpPool,
    batch: &[IpPool],
    stored: &[(Key, Versioned<IpPool>)],
    guarded: &PoolRanges,
) -> Result<(), Error> {
    // The other pools: of this apply, stored, and as the guard has them (an apply in
    // flight, or a pool edited with kubectl since): each as the addresses it lists.
    let replaced = |n: &ObjectName| n == pool.name() || batch.iter().any(|b| b.name() == n);
    let others = batch
        .iter()
        .filter(|o| o.name() != pool.name())
        .map(|o| (o.name(), o.family(), o.ips()))
        .chain(
            stored
                .iter()
                .map(|(_, v)| &v.value)
                .filter(|o| !replaced(o.name()))
                .map(|o| (o.name(), o.family(), o.ips())),
        )
        .chain(
            guarded
                .0
                .iter()
                .filter(|(n, _)| !replaced(n))
                .map(|(n, (f, ips))| (n, *f, ips)),
        );
    for (other, family, ips) in others {
        if let Some(o) = overlap((pool.family(), pool.ips()), (family, ips)) {
            return Err(ValidationError::new(
                    "spec.ips",
                    &pool.spec().ips.join(","),
                    format!(
                        "ippool {:?} overlaps ippool {:?} at {} ({} addresses shared); pools never share an address",
                        pool.name().as_str(),
                        other.as_str(),
                        o.at,
                        o.shared
                    ),
                )
                .into());
        }
    }
    Ok(())
}

/// The refusal of a new subnet for a pool that holds addresses.
fn subnet_in_use(pool: &IpPool, old: &IpPool, held: u128) -> Error {
    ValidationError::new(
        "spec.subnet",
        &pool.spec().subnet,
        format!(
            "cannot change from {} while the pool holds {held} address(es); release them first",
            old.subnet()
        ),
    )
    .into()
}

/// What applying does to what `expect` found: an invalid object replaced is configured.
fn replaced(expect: &Expect, same_spec: Option<bool>) -> Applied {
    match (expect, same_spec) {
        (Expect::Version(_), None) => Applied::Configured,
        (_, same) => applied(same),
    }
}

/// Where two lists of addresses meet: the one check behind both overlap refusals, of a pool
/// applied beside the others and of a request's own pools beside the stored pools it names.
pub(crate) struct Overlap {
    /// The first range they share, as the contract writes ranges.
    pub(crate) at: String,
    /// How many addresses they share.
    pub(crate) shared: u128,
}

/// Where the addresses `a` and `b` (each of its family) meet, if they do: lists of two
/// families never do.
pub(crate) fn overlap(
    (family, a): (Family, &IntervalSet),
    (other, b): (Family, &IntervalSet),
) -> Option<Overlap> {
    if family != other {
        return None;
    }
    let shared = a.intersection(b);
    let &(first, last) = shared.intervals().first()?;
    Some(Overlap {
        at: range_text(family.addr(first), family.addr(last)),
        shared: shared.len(),
    })
}

/// `a` or `a-b`, as the contract writes ranges.
pub(crate) fn range_text(a: IpAddr, b: IpAddr) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("{a}-{b}")
    }
}
