//! Reading the state: counts, listings, and why an address is or is not allocatable.

use std::fmt;
use std::net::IpAddr;

use super::{counts, Ipam};
use crate::addr::{to_u128, Family};
use crate::block::BlockRecord;
use crate::error::{Error, PoolCounts};
use crate::holder::Allocation;
use crate::name::ObjectName;
use crate::pool::IpPool;
use crate::reserved::FamilySets;
use crate::search::{block_index, Allocations};
use crate::store::{Key, KeyRange, Record, Store, Versioned};

/// Everything that decides whether one address is allocatable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// The address.
    pub address: IpAddr,
    /// Each pool whose subnet contains the address.
    pub pools: Vec<PoolFinding>,
    /// ReservedIPs that cover the address.
    pub reserved_by: Vec<ObjectName>,
    /// Who holds it, whichever pool or network it was taken from.
    pub held: Option<Allocation>,
    /// Invalid objects that stop it being handed out (a ReservedIP written with kubectl
    /// that does not read: what it reserves cannot be known), as messages naming them.
    pub stopped_by: Vec<String>,
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
}

impl Explanation {
    /// Whether some pool could hand the address out now.
    pub fn allocatable(&self) -> bool {
        self.reserved_by.is_empty()
            && self.stopped_by.is_empty()
            && self.held.is_none()
            && self
                .pools
                .iter()
                .any(|p| p.listed && p.excluded_by.is_none())
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
        }
        if let Some(a) = &self.held {
            let pod = a
                .pod
                .as_ref()
                .map(|p| format!(", pod {p}"))
                .unwrap_or_default();
            // A StatefulSet's: said, as the address outlives the Pod's sandboxes.
            let why = match a.held_for() {
                held @ (crate::HeldFor::StatefulSetPod { .. }
                | crate::HeldFor::StatefulSetIdentity { .. }) => format!("; {held}"),
                crate::HeldFor::Pod | crate::HeldFor::NoPod => String::new(),
            };
            writeln!(
                f,
                "  held by {} (network {:?}, pool {:?}{pod}{why})",
                a.owner,
                a.network,
                a.pool.as_str()
            )?;
        }
        for r in &self.reserved_by {
            writeln!(f, "  reserved by reservedip/{r}")?;
        }
        for why in &self.stopped_by {
            writeln!(f, "  stopped: {why}")?;
        }
        Ok(())
    }
}

impl<S: Store> Ipam<S> {
    /// A pool's counts, as the contract defines them ([`PoolCounts`]): addresses still held
    /// from the pool outside its current `ips` count in `allocated`, never in `available`.
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
        let family = pool.family();
        let blocks = self.blocks_for_counts(family).await?;
        let allocated = held_by_pool(&blocks).get(pool.name()).copied().unwrap_or(0);
        Ok(count_from(
            pool,
            summary.get(family),
            network_reserved.get(family),
            allocated,
            &blocks,
        ))
    }

    /// The counts of each of `pools`, in order, exactly as [`Ipam::pool_counts`] gives them,
    /// from one read of the reservations and one scan of blocks per family however many
    /// pools there are: on a store where a scan lists every block of its kind (Kubernetes),
    /// a scan per pool made `ipamctl get ippools` cost pools × blocks.
    pub async fn pools_counts(&self, pools: &[IpPool]) -> Result<Vec<PoolCounts>, Error> {
        if pools.is_empty() {
            return Ok(Vec::new());
        }
        let summary = self.summary().await?.map(|s| s.value).unwrap_or_default();
        let none = FamilySets::default();
        let mut blocks = [Vec::new(), Vec::new()];
        let mut held = [Default::default(), Default::default()];
        for ((family, found), held) in [Family::V4, Family::V6]
            .into_iter()
            .zip(&mut blocks)
            .zip(&mut held)
        {
            if pools.iter().any(|p| p.family() == family) {
                *found = self.blocks_for_counts(family).await?;
                found.sort_unstable_by_key(|b| b.index);
                *held = held_by_pool(found);
            }
        }
        Ok(pools
            .iter()
            .map(|pool| {
                let i = usize::from(pool.family() == Family::V6);
                let (first, last) = subnet_bounds(pool);
                let (first, last) = (block_index(first), block_index(last));
                let all = &blocks[i];
                let from = all.partition_point(|b| b.index < first);
                let to = all.partition_point(|b| b.index <= last);
                let allocated = held[i].get(pool.name()).copied().unwrap_or(0);
                let family = pool.family();
                count_from(
                    pool,
                    summary.get(family),
                    none.get(family),
                    allocated,
                    &all[from..to],
                )
            })
            .collect())
    }

    /// Every allocation taken from one pool (by name, wherever it lies), or every allocation
    /// of the store; in pool and address order.
    pub async fn allocations(&self, pool: Option<&ObjectName>) -> Result<Vec<Allocation>, Error> {
        let mut out = Vec::new();
        for family in [Family::V4, Family::V6] {
            // Blocks that do not read are left out; `invalid_records` names them.
            let (blocks, _) = self
                .read_readable::<BlockRecord>(&KeyRange::all_blocks(family))
                .await?;
            for (_, block) in blocks {
                out.extend(
                    block
                        .value
                        .allocations()
                        .filter(|a| pool.is_none_or(|p| a.pool == *p)),
                );
            }
        }
        out.sort_by(|a, b| (&a.pool, a.address).cmp(&(&b.pool, b.address)));
        Ok(out)
    }

    /// Every reason `address` is or is not allocatable.
    pub async fn explain(&self, address: IpAddr) -> Result<Explanation, Error> {
        let value = to_u128(address);
        let family = Family::of(address);
        let pools = self
            .pools()
            .await?
            .into_iter()
            .filter(|p| p.in_subnet(address))
            .map(|p| PoolFinding {
                pool: p.name().clone(),
                listed: p.ips().contains(value),
                excluded_by: p.exclusion_rule(address).map(str::to_owned),
            })
            .collect();
        let key = Key::Block {
            family,
            index: block_index(value),
        };
        let held = self
            .read::<BlockRecord>(&key)
            .await?
            .and_then(|b| b.value.allocations().find(|a| a.address == address));
        let reserved_by = self.reserved_by(address).await?;
        let stopped_by = match self.store.get(&Key::ReservedSummary).await? {
            Some(Versioned {
                value: Record::Invalid(bad),
                ..
            }) => vec![super::invalid(&Key::ReservedSummary, bad).to_string()],
            _ => Vec::new(),
        };
        Ok(Explanation {
            address,
            pools,
            reserved_by,
            held,
            stopped_by,
        })
    }
}

/// The first and last address of a pool's subnet: where its holders may lie.
fn subnet_bounds(pool: &IpPool) -> (u128, u128) {
    let net = pool.subnet();
    (to_u128(net.network()), to_u128(net.broadcast()))
}

/// One window as counting sees it: its taken bits, and its holders where it reads (a block
/// that does not read counts as wholly taken, and none of its addresses as allocated).
struct CountBlock {
    index: u128,
    bits: crate::search::Block,
    block: Option<BlockRecord>,
}

impl<S: Store> Ipam<S> {
    /// Every block of `family` for counting, the invalid ones as wholly taken: a pool's
    /// holders are counted wherever they lie (a subnet edited with kubectl leaves them
    /// outside it), its free addresses inside its subnet.
    async fn blocks_for_counts(&self, family: Family) -> Result<Vec<CountBlock>, Error> {
        let range = KeyRange::all_blocks(family);
        let (blocks, invalid) = self.read_readable::<BlockRecord>(&range).await?;
        let mut out: Vec<CountBlock> = blocks
            .into_iter()
            .map(|(_, b)| CountBlock {
                index: b.value.index(),
                bits: *b.value.bits(),
                block: Some(b.value),
            })
            .collect();
        out.extend(invalid.into_iter().filter_map(|(key, _)| match key {
            Key::Block { index, .. } => Some(CountBlock {
                index,
                bits: crate::search::Block::full(),
                block: None,
            }),
            _ => None,
        }));
        Ok(out)
    }
}

/// How many addresses each pool label holds in `blocks`.
fn held_by_pool(blocks: &[CountBlock]) -> rustc_hash::FxHashMap<ObjectName, u128> {
    let mut held = rustc_hash::FxHashMap::default();
    for (_, h) in blocks
        .iter()
        .filter_map(|b| b.block.as_ref())
        .flat_map(|b| b.iter())
    {
        *held.entry(h.pool.clone()).or_insert(0) += 1;
    }
    held
}

/// The contract's counts of `pool`, given how many addresses it holds (`allocated`) and the
/// blocks of the windows over its subnet (or more).
fn count_from(
    pool: &IpPool,
    store_reserved: &crate::set::IntervalSet,
    network_reserved: &crate::set::IntervalSet,
    allocated: u128,
    blocks: &[CountBlock],
) -> PoolCounts {
    let taken = Allocations::from_blocks(blocks.iter().map(|b| (b.index, b.bits)));
    counts(pool, store_reserved, network_reserved, allocated, &taken)
}
