//! The record that decides who holds an address: one block of the store-wide number line.
//!
//! A [`BlockRecord`] covers an aligned window of 2^[`BLOCK_BITS`]
//! addresses of one family, whatever pools or networks cover them. It holds the roaring
//! bitmap of the addresses taken and, for each, its [`Holder`]: who holds it, on which
//! network, from which pool. Allocating or releasing an address is a compare-and-swap of
//! exactly this one record, so two writers can never both take one address, even in a store
//! whose only atomic operation is a write of one object (Kubernetes).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::addr::Family;
use crate::holder::{Allocation, Holder};
use crate::name::ObjectName;
use crate::search::{block_index, Block, BLOCK_BITS};

/// One block: the taken addresses of a window and their holders.
///
/// ```
/// use ipam_core::backend::{BlockRecord, Holder};
/// use ipam_core::{Family, ObjectName, Owner};
/// let mut block = BlockRecord::new(Family::V4, 0x0a06_0000 >> ipam_core::backend::BLOCK_BITS);
/// let holder = Holder {
///     owner: Owner::new("c1", "eth0").unwrap(),
///     network: "net1".into(),
///     pool: ObjectName::new("p").unwrap(),
///     pod: None,
///     node: None,
/// };
/// assert!(block.insert(0x0a06_0005, holder.clone()));
/// assert!(!block.insert(0x0a06_0005, holder.clone()), "an address has one holder");
/// assert_eq!(block.holder(0x0a06_0005), Some(&holder));
/// assert_eq!(block.remove(0x0a06_0005), Some(holder));
/// assert!(block.is_empty());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct BlockRecord {
    family: Family,
    index: u128,
    bits: Block,
    /// One per taken address, in address order (the bitmap's rank order). Shared at two
    /// levels, so that a copy of a block (a read from an in-memory store, a scan of a
    /// pool's blocks) costs one reference count, and the first change to a copy costs 64,
    /// never 64 holders' strings.
    holders: Arc<Vec<Arc<Holder>>>,
    /// The node that claimed the block (made it, taking its first address), where nodes
    /// share a store: other nodes leave it alone while blocks of their own or new ones
    /// remain, so that nodes seldom write one block (Calico's block affinity).
    affinity: Option<ObjectName>,
    /// The address after the last one handed out of this block (a hint): a round-robin
    /// search that starts in the block goes on from there, so that the pool's cursor is
    /// written only when the search leaves the block, not on every allocation.
    next: Option<u128>,
}

/// The record's body after the bitmap: the holders, the block's affinity, the next hint.
#[derive(Deserialize)]
struct Body {
    holders: Vec<Holder>,
    #[serde(default)]
    affinity: Option<ObjectName>,
    #[serde(default)]
    next: Option<u128>,
}

/// [`Body`] as written, borrowing from the record.
#[derive(Serialize)]
struct BodyRef<'a> {
    holders: Vec<&'a Holder>,
    #[serde(skip_serializing_if = "Option::is_none")]
    affinity: Option<&'a ObjectName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<u128>,
}

impl BlockRecord {
    /// An empty block: the window `index << BLOCK_BITS ..` of `family`'s number line.
    pub fn new(family: Family, index: u128) -> BlockRecord {
        BlockRecord {
            family,
            index,
            bits: Block::default(),
            holders: Arc::default(),
            affinity: None,
            next: None,
        }
    }

    /// The node that claimed the block, if nodes share the store.
    pub fn affinity(&self) -> Option<&ObjectName> {
        self.affinity.as_ref()
    }

    /// Claims the block for `node`.
    pub fn set_affinity(&mut self, node: Option<ObjectName>) {
        self.affinity = node;
    }

    /// The address after the last one handed out of this block, if recorded: where a
    /// round-robin search that starts in this block goes on.
    pub fn next(&self) -> Option<u128> {
        self.next
    }

    /// Records where a round-robin search in this block goes on. A hint only: ignored
    /// unless it lies in the block or just after it.
    pub fn set_next(&mut self, next: Option<u128>) {
        self.next = next;
    }

    /// The family of its window.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The index of its window (`address >> BLOCK_BITS`).
    pub fn index(&self) -> u128 {
        self.index
    }

    /// The bitmap of taken addresses: what the free-address search walks.
    pub fn bits(&self) -> &Block {
        &self.bits
    }

    /// Whether nothing in the window is taken.
    pub fn is_empty(&self) -> bool {
        self.holders.is_empty()
    }

    /// How many addresses are taken.
    pub fn len(&self) -> usize {
        self.holders.len()
    }

    fn rank(&self, value: u128) -> Option<usize> {
        debug_assert_eq!(block_index(value), self.index, "address outside the block");
        self.bits.contains(value).then(|| self.bits.rank(value) - 1)
    }

    /// Who holds `value`, if anyone.
    pub fn holder(&self, value: u128) -> Option<&Holder> {
        self.rank(value).map(|i| &*self.holders[i])
    }

    /// Gives `value` to `holder`; false (and nothing changes) if it is taken.
    pub fn insert(&mut self, value: u128, holder: Holder) -> bool {
        if !self.bits.insert(value) {
            return false;
        }
        Arc::make_mut(&mut self.holders).insert(self.bits.rank(value) - 1, Arc::new(holder));
        true
    }

    /// Frees `value`, returning who held it.
    pub fn remove(&mut self, value: u128) -> Option<Holder> {
        let i = self.rank(value)?;
        self.bits.remove(value);
        Some(Arc::unwrap_or_clone(
            Arc::make_mut(&mut self.holders).remove(i),
        ))
    }

    /// Every taken address (as a number) with its holder, in address order.
    pub fn iter(&self) -> impl Iterator<Item = (u128, &Holder)> + '_ {
        let base = self.index << BLOCK_BITS;
        self.bits
            .offsets()
            .map(move |o| base | u128::from(o))
            .zip(self.holders.iter().map(|h| &**h))
    }

    /// Every allocation of the block, as the public [`Allocation`] type.
    pub fn allocations(&self) -> impl Iterator<Item = Allocation> + '_ {
        self.iter().map(|(v, h)| Allocation {
            address: self.family.addr(v),
            pool: h.pool.clone(),
            network: h.network.clone(),
            owner: h.owner.clone(),
            pod: h.pod.clone(),
            node: h.node.clone(),
        })
    }

    /// The record's body: the portable roaring bitmap (length-prefixed), then a JSON object
    /// with the holders in address order and the affinity.
    pub fn to_bytes(&self) -> Vec<u8> {
        let bitmap = self.bits.to_bytes();
        let mut out = Vec::with_capacity(8 + bitmap.len() + 96 * self.holders.len());
        out.extend_from_slice(&(bitmap.len() as u32).to_be_bytes());
        out.extend_from_slice(&bitmap);
        let body = BodyRef {
            holders: self.holders.iter().map(|h| &**h).collect(),
            affinity: self.affinity.as_ref(),
            next: self.next,
        };
        serde_json::to_writer(&mut out, &body).expect("holders serialize to JSON");
        out
    }

    /// Reads [`BlockRecord::to_bytes`] output for the window `(family, index)`; refuses
    /// malformed bytes, offsets outside the window and a holder count that does not match the
    /// bitmap.
    pub fn from_bytes(family: Family, index: u128, bytes: &[u8]) -> Result<BlockRecord, String> {
        let (len, rest) = bytes
            .split_at_checked(4)
            .ok_or_else(|| "truncated block".to_owned())?;
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
        let (bitmap, json) = rest
            .split_at_checked(len)
            .ok_or_else(|| "truncated block bitmap".to_owned())?;
        let bits = Block::from_bytes(bitmap)?;
        let Body {
            holders,
            affinity,
            next,
        } = serde_json::from_slice(json).map_err(|e| e.to_string())?;
        if holders.len() as u64 != bits.len() {
            return Err(format!(
                "{} holders for {} taken addresses",
                holders.len(),
                bits.len()
            ));
        }
        Ok(BlockRecord {
            family,
            index,
            bits,
            holders: Arc::new(holders.into_iter().map(Arc::new).collect()),
            affinity,
            next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::Owner;

    fn holder(id: &str) -> Holder {
        Holder {
            owner: Owner::new(id, "eth0").unwrap(),
            network: "net1".into(),
            pool: ObjectName::new("p").unwrap(),
            pod: None,
            node: None,
        }
    }

    #[test]
    fn holders_stay_aligned_with_the_bitmap_whatever_the_order() {
        let index = 0x0a06_0000u128 >> BLOCK_BITS;
        let base = index << BLOCK_BITS;
        let mut b = BlockRecord::new(Family::V4, index);
        for off in [9u128, 2, 40, 0, 63, 17] {
            assert!(b.insert(base + off, holder(&format!("c{off}"))));
        }
        assert_eq!(b.remove(base + 40).unwrap().owner.container_id(), "c40");
        let seen: Vec<(u128, String)> = b
            .iter()
            .map(|(v, h)| (v - base, h.owner.container_id().to_owned()))
            .collect();
        let want: Vec<(u128, String)> = [0u128, 2, 9, 17, 63]
            .iter()
            .map(|o| (*o, format!("c{o}")))
            .collect();
        assert_eq!(seen, want);
        b.set_affinity(Some(ObjectName::new("node-1").unwrap()));
        b.set_next(Some(base + 41));
        let back = BlockRecord::from_bytes(Family::V4, index, &b.to_bytes()).unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn foreign_bytes_are_refused_not_trusted() {
        let mut b = BlockRecord::new(Family::V6, 7);
        b.insert(7 << BLOCK_BITS, holder("a"));
        let bytes = b.to_bytes();
        for cut in 0..bytes.len() {
            assert!(BlockRecord::from_bytes(Family::V6, 7, &bytes[..cut]).is_err());
        }
        // A holder list that does not match the bitmap.
        let mut bad = bytes[..bytes.len()].to_vec();
        let json_at = 4 + u32::from_be_bytes(bad[..4].try_into().unwrap()) as usize;
        bad.truncate(json_at);
        bad.extend_from_slice(br#"{"holders": []}"#);
        let err = BlockRecord::from_bytes(Family::V6, 7, &bad).unwrap_err();
        assert!(err.contains("0 holders for 1"), "{err}");
    }
}
