//! The search for a free address, as set algebra: capacity ∖ reserved ∖ allocated, computed
//! lazily. Pure: it does no I/O, and asks its caller for the blocks it needs.
//!
//! Allocated addresses are kept in [`Block`]s over aligned windows of 2^[`BLOCK_BITS`]
//! addresses of a family's number line: one 64-bit word in memory, a portable roaring bitmap
//! when stored ([`Block::to_bytes`]). A block exists only once something
//! in it is allocated, so memory follows allocations, never the size of the pool (an IPv6 /64
//! with one allocation holds one small block). In a store, each block is one record with its
//! own version and the holder of every address ([`BlockRecord`](crate::block::BlockRecord)),
//! shared by every pool and network that covers the window.
//!
//! Finding a free address never materialises the free set: [`first_free`] walks the
//! capacity's intervals, jumps over reserved intervals and over whole runs of allocated
//! addresses (`next_range` on the bitmap), and asks for the blocks it needs one at a time
//! ([`Probe::NeedBlock`]), so that the caller can load them from a store.

use std::fmt;

use roaring::RoaringBitmap;
use rustc_hash::FxHashMap;

use crate::set::IntervalSet;

/// log2 of the number of addresses covered by one [`Block`]: 64 addresses, an IPv4 /26, as
/// Calico's IPAM blocks. Small blocks keep one record small (a full block with its holders is
/// about 8 KiB) and let writers on different blocks of one pool proceed without conflict;
/// the search skips full blocks cheaply, so a large pool costs nothing more per allocation.
pub const BLOCK_BITS: u32 = 6;

const OFFSET_MASK: u128 = (1 << BLOCK_BITS) - 1;
const LAST_BLOCK: u128 = u128::MAX >> BLOCK_BITS;

/// The index of the block that holds `value`.
pub fn block_index(value: u128) -> u128 {
    value >> BLOCK_BITS
}

/// The allocated addresses within one aligned window of 2^[`BLOCK_BITS`] addresses.
///
/// In memory a block is one 64-bit word, bit `i` for the window's `i`-th address: the search
/// reads and writes it without a pointer to follow. Its stored form is the portable roaring
/// serialization ([`Block::to_bytes`]), so that any roaring implementation reads a store's
/// blocks. (A roaring bitmap in memory was measured at 353 ns per allocate+release in a /16
/// at 90 %, against this word's figure in `benches/RESULTS.md`: for at most 64 values it is a
/// vector of containers behind two pointers.)
///
/// ```
/// use ipam_core::search::Block;
/// let mut b = Block::default();
/// b.insert(0x0a06_0005);
/// assert!(b.contains(0x0a06_0005));
/// assert_eq!(b.next_free(0x0a06_0005), Some(0x0a06_0006));
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Block {
    bits: u64,
}

impl Block {
    /// Every address of the window allocated: how a block that cannot be read counts.
    pub fn full() -> Block {
        Block { bits: u64::MAX }
    }

    /// Whether the address `value` (of this block's window) is allocated.
    pub fn contains(&self, value: u128) -> bool {
        self.bits & bit(value) != 0
    }

    /// Marks `value` allocated; false if it already was.
    pub fn insert(&mut self, value: u128) -> bool {
        let was = self.contains(value);
        self.bits |= bit(value);
        !was
    }

    /// Marks `value` free; false if it already was.
    pub fn remove(&mut self, value: u128) -> bool {
        let was = self.contains(value);
        self.bits &= !bit(value);
        was
    }

    /// How many allocated addresses of the window are `<= value`.
    pub fn rank(&self, value: u128) -> usize {
        // Every bit up to and including `value`'s: shifting left drops the ones above it.
        (self.bits << (OFFSET_MASK as u32 - offset(value))).count_ones() as usize
    }

    /// How many addresses of the window are allocated.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u64 {
        u64::from(self.bits.count_ones())
    }

    /// Whether nothing in the window is allocated.
    pub fn is_empty(&self) -> bool {
        self.bits == 0
    }

    /// The first address `>= value` within the window that is not allocated, or `None` when
    /// every address from `value` to the window's end is allocated.
    pub fn next_free(&self, value: u128) -> Option<u128> {
        let free_from_value = !self.bits >> offset(value);
        (free_from_value != 0).then(|| value + u128::from(free_from_value.trailing_zeros()))
    }

    /// How many addresses in `[first, last]` (both within this window) are allocated.
    pub fn count_in(&self, first: u128, last: u128) -> u64 {
        let (lo, hi) = (offset(first), offset(last));
        if lo > hi {
            return 0;
        }
        let width = hi - lo + 1;
        let mask = if width == 64 {
            u64::MAX
        } else {
            ((1u64 << width) - 1) << lo
        };
        u64::from((self.bits & mask).count_ones())
    }

    /// The allocated offsets within the window, in order.
    pub fn offsets(self) -> impl Iterator<Item = u32> {
        let mut rest = self.bits;
        std::iter::from_fn(move || {
            (rest != 0).then(|| {
                let next = rest.trailing_zeros();
                rest &= rest - 1;
                next
            })
        })
    }

    /// The portable roaring serialization (run-compressed).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bitmap: RoaringBitmap = self.offsets().collect();
        bitmap.optimize();
        let mut out = Vec::with_capacity(bitmap.serialized_size());
        bitmap
            .serialize_into(&mut out)
            .expect("writing to a Vec cannot fail");
        out
    }

    /// Reads [`Block::to_bytes`] output; refuses malformed bytes and offsets outside a window.
    pub fn from_bytes(bytes: &[u8]) -> Result<Block, String> {
        let bitmap = RoaringBitmap::deserialize_from(bytes).map_err(|e| e.to_string())?;
        if let Some(m) = bitmap.max().filter(|&m| u128::from(m) > OFFSET_MASK) {
            return Err(format!("offset {m} is outside a block of 2^{BLOCK_BITS}"));
        }
        Ok(Block {
            bits: bitmap.iter().fold(0, |bits, o| bits | 1 << o),
        })
    }
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Block({} allocated)", self.len())
    }
}

fn bit(value: u128) -> u64 {
    1 << offset(value)
}

fn offset(value: u128) -> u32 {
    (value & OFFSET_MASK) as u32
}

/// What a caller knows of one block while searching.
#[derive(Clone, Copy, Debug)]
pub enum BlockState<'a> {
    /// Not read yet: the search stops and asks for it.
    Unknown,
    /// Read, and nothing in the window is allocated.
    Empty,
    /// Read.
    Loaded(&'a Block),
    /// Not to be searched: skipped as if every address of it were taken (a block that
    /// another node has claimed, while blocks of one's own or new ones remain).
    Skip,
}

/// The outcome of one step of [`first_free`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// This address is free.
    Free(u128),
    /// The block with this index must be read before the search can go on.
    NeedBlock(u128),
    /// No free address in the window searched.
    Exhausted,
}

/// The first address of `[from, to]` that is in `capacity`, in none of `reserved`, and not
/// allocated according to `block`.
///
/// Cost follows the number of reserved intervals and allocated runs skipped, not the number
/// of addresses.
///
/// ```
/// use ipam_core::search::{first_free, Block, BlockState, Probe};
/// use ipam_core::IntervalSet;
/// let capacity = IntervalSet::from_intervals([(10, 20)]);
/// let reserved = IntervalSet::from_intervals([(10, 11)]);
/// let mut block = Block::default();
/// block.insert(12);
/// let found = first_free(&capacity, &[&reserved], |_| BlockState::Loaded(&block), 0, u128::MAX);
/// assert_eq!(found, Probe::Free(13));
/// ```
pub fn first_free<'a>(
    capacity: &IntervalSet,
    reserved: &[&IntervalSet],
    block: impl Fn(u128) -> BlockState<'a>,
    from: u128,
    to: u128,
) -> Probe {
    let mut x = from;
    loop {
        x = match capacity.next_at_or_after(x) {
            Some(v) if v <= to => v,
            _ => return Probe::Exhausted,
        };
        if let Some(end) = reserved
            .iter()
            .filter_map(|r| r.interval_containing(x))
            .map(|(_, end)| end)
            .max()
        {
            match end.checked_add(1) {
                Some(next) => {
                    x = next;
                    continue;
                }
                None => return Probe::Exhausted,
            }
        }
        let index = block_index(x);
        match block(index) {
            BlockState::Unknown => return Probe::NeedBlock(index),
            BlockState::Empty => return Probe::Free(x),
            BlockState::Skip if index == LAST_BLOCK => return Probe::Exhausted,
            BlockState::Skip => x = (index + 1) << BLOCK_BITS,
            BlockState::Loaded(b) => match b.next_free(x) {
                Some(free) if free == x => return Probe::Free(x),
                Some(free) => x = free,
                None if index == LAST_BLOCK => return Probe::Exhausted,
                None => x = (index + 1) << BLOCK_BITS,
            },
        }
    }
}

/// How the next address is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Strategy {
    /// From the address after the last one handed out, wrapping around (host-local's way):
    /// a just-released address is not handed to the next Pod at once.
    #[default]
    RoundRobin,
    /// The lowest free address (Spiderpool's way).
    FirstFree,
    /// From a random address of the pool, wrapping around.
    Random,
}

impl Strategy {
    /// Where a search starts, for a pool whose stored cursor is `cursor` (the address after
    /// the last one handed out) and whose capacity is `capacity`.
    pub fn start(
        self,
        capacity: &IntervalSet,
        cursor: Option<u128>,
        rng: &mut fastrand::Rng,
    ) -> u128 {
        let first = capacity.first().unwrap_or(0);
        match self {
            Strategy::RoundRobin => cursor.unwrap_or(first),
            Strategy::FirstFree => first,
            Strategy::Random => {
                let total = capacity.len();
                if total == 0 {
                    return first;
                }
                let pick = (u128::from(rng.u64(..)) << 64 | u128::from(rng.u64(..))) % total;
                capacity.nth(pick).unwrap_or(first)
            }
        }
    }
}

/// Searches `[start, ∞)` then `[0, start)`: the whole pool, beginning at `start`.
pub fn first_free_from<'a>(
    capacity: &IntervalSet,
    reserved: &[&IntervalSet],
    block: impl Fn(u128) -> BlockState<'a> + Copy,
    start: u128,
) -> Probe {
    match first_free(capacity, reserved, block, start, u128::MAX) {
        Probe::Exhausted if start > 0 => first_free(capacity, reserved, block, 0, start - 1),
        found => found,
    }
}

/// The allocated addresses of many blocks, by block index. A pure, in-memory value.
///
/// Blocks are found by hashing their index, as the engine's block cache finds them: a lookup
/// costs the same in a /24 and in a /8 (an ordered map of a /8's 262,144 blocks was measured
/// at 3.5× the /24's cost per allocate+release).
///
/// ```
/// use ipam_core::search::Allocations;
/// use ipam_core::IntervalSet;
/// let capacity = IntervalSet::from_intervals([(1, 254)]);
/// let mut a = Allocations::default();
/// let x = a.allocate_first_free(&capacity, &[], 1).unwrap();
/// assert_eq!(x, 1);
/// assert_eq!(a.allocate_first_free(&capacity, &[], 1), Some(2));
/// assert!(a.release(1));
/// assert_eq!(a.len(), 1);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Allocations {
    blocks: FxHashMap<u128, Block>,
}

impl Allocations {
    /// Builds the state from blocks, by index.
    pub fn from_blocks(blocks: impl IntoIterator<Item = (u128, Block)>) -> Allocations {
        Allocations {
            blocks: blocks.into_iter().filter(|(_, b)| !b.is_empty()).collect(),
        }
    }

    /// The blocks with something allocated, in index order.
    pub fn blocks(&self) -> Vec<(u128, Block)> {
        let mut blocks: Vec<(u128, Block)> = self.blocks.iter().map(|(&i, &b)| (i, b)).collect();
        blocks.sort_unstable_by_key(|&(i, _)| i);
        blocks
    }

    /// Whether `value` is allocated.
    pub fn contains(&self, value: u128) -> bool {
        self.blocks
            .get(&block_index(value))
            .is_some_and(|b| b.contains(value))
    }

    /// Marks `value` allocated; false if it already was.
    pub fn insert(&mut self, value: u128) -> bool {
        self.blocks
            .entry(block_index(value))
            .or_default()
            .insert(value)
    }

    /// Marks `value` free; false if it already was. Idempotent.
    pub fn release(&mut self, value: u128) -> bool {
        let index = block_index(value);
        let Some(b) = self.blocks.get_mut(&index) else {
            return false;
        };
        let was = b.remove(value);
        if b.is_empty() {
            self.blocks.remove(&index);
        }
        was
    }

    /// How many addresses are allocated.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u128 {
        self.blocks.values().map(|b| u128::from(b.len())).sum()
    }

    /// The allocated addresses, in order.
    pub fn iter(&self) -> impl Iterator<Item = u128> {
        self.blocks()
            .into_iter()
            .flat_map(|(i, b)| b.offsets().map(move |o| (i << BLOCK_BITS) | u128::from(o)))
    }

    /// How many allocated addresses lie in `set`.
    pub fn count_in(&self, set: &IntervalSet) -> u128 {
        let intervals = set.intervals();
        let mut n = 0u128;
        for (&index, block) in &self.blocks {
            let (first, last) = (index << BLOCK_BITS, (index << BLOCK_BITS) | OFFSET_MASK);
            // The intervals that reach into the window: from the first that ends in it or
            // after it, while they start before its end.
            let from = intervals.partition_point(|&(_, b)| b < first);
            for &(a, b) in intervals[from..].iter().take_while(|&&(a, _)| a <= last) {
                n += u128::from(block.count_in(a.max(first), b.min(last)));
            }
        }
        n
    }

    /// The first free address from `start` (wrapping around), or `None` when the pool is
    /// used up.
    pub fn find_free(
        &self,
        capacity: &IntervalSet,
        reserved: &[&IntervalSet],
        start: u128,
    ) -> Option<u128> {
        let lookup = |i| match self.blocks.get(&i) {
            Some(b) => BlockState::Loaded(b),
            None => BlockState::Empty,
        };
        match first_free_from(capacity, reserved, lookup, start) {
            Probe::Free(x) => Some(x),
            Probe::Exhausted => None,
            Probe::NeedBlock(_) => unreachable!("every block is known"),
        }
    }

    /// Finds a free address from `start` and marks it allocated.
    pub fn allocate_first_free(
        &mut self,
        capacity: &IntervalSet,
        reserved: &[&IntervalSet],
        start: u128,
    ) -> Option<u128> {
        let x = self.find_free(capacity, reserved, start)?;
        self.insert(x);
        Some(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    const SIZE: u128 = 1 << BLOCK_BITS;

    #[test]
    fn next_free_skips_a_whole_run() {
        let mut b = Block::default();
        for v in 10..50u128 {
            b.insert(v);
        }
        assert_eq!(b.next_free(9), Some(9));
        assert_eq!(b.next_free(10), Some(50));
        assert_eq!(b.next_free(49), Some(50));
        for v in 50..=OFFSET_MASK {
            b.insert(v);
        }
        assert_eq!(b.next_free(10), None);
    }

    #[test]
    fn search_crosses_blocks_and_asks_for_unknown_ones() {
        let capacity = IntervalSet::from_intervals([(2 * SIZE - 2, 2 * SIZE + 5)]);
        let mut full = Block::default();
        full.insert(2 * SIZE - 2);
        full.insert(2 * SIZE - 1);
        let lookup = |i| {
            if i == 1 {
                BlockState::Loaded(&full)
            } else {
                BlockState::Unknown
            }
        };
        assert_eq!(
            first_free(&capacity, &[], lookup, 0, u128::MAX),
            Probe::NeedBlock(2)
        );
        let lookup = |i| {
            if i == 1 {
                BlockState::Loaded(&full)
            } else {
                BlockState::Empty
            }
        };
        assert_eq!(
            first_free(&capacity, &[], lookup, 0, u128::MAX),
            Probe::Free(2 * SIZE)
        );
    }

    #[test]
    fn search_at_the_top_of_ipv6_does_not_overflow() {
        let capacity = IntervalSet::from_intervals([(u128::MAX - 2, u128::MAX)]);
        let reserved = IntervalSet::from_intervals([(u128::MAX - 1, u128::MAX)]);
        let mut a = Allocations::default();
        assert_eq!(
            a.allocate_first_free(&capacity, &[&reserved], 0),
            Some(u128::MAX - 2)
        );
        assert_eq!(a.allocate_first_free(&capacity, &[&reserved], 0), None);
        let mut top = Allocations::default();
        let cap = IntervalSet::from_intervals([(u128::MAX, u128::MAX)]);
        assert_eq!(
            top.allocate_first_free(&cap, &[], u128::MAX),
            Some(u128::MAX)
        );
        assert_eq!(top.allocate_first_free(&cap, &[], u128::MAX), None);
    }

    #[test]
    fn blocks_round_trip_and_refuse_foreign_bytes() {
        let mut b = Block::default();
        for v in [0u128, 7, SIZE - 1] {
            b.insert(v);
        }
        assert_eq!(Block::from_bytes(&b.to_bytes()).unwrap(), b);
        assert!(Block::from_bytes(b"not a bitmap").is_err());
        let mut wide = RoaringBitmap::new();
        wide.insert(SIZE as u32);
        let mut bytes = Vec::new();
        wide.serialize_into(&mut bytes).unwrap();
        assert!(Block::from_bytes(&bytes)
            .unwrap_err()
            .contains("outside a block"));
    }

    #[test]
    fn a_full_slash16_fills_its_blocks_and_each_bitmap_is_small() {
        let mut a = Allocations::default();
        let capacity = IntervalSet::from_intervals([(0x0a06_0001, 0x0a06_fffe)]);
        while a.allocate_first_free(&capacity, &[], 0).is_some() {}
        assert_eq!(a.len(), 65534);
        assert_eq!(a.blocks().len() as u128, 65536 / SIZE);
        for (_, block) in a.blocks() {
            assert!(block.to_bytes().len() < 64, "{}", block.to_bytes().len());
        }
    }

    proptest! {
        /// A block answers every question as the set of its offsets does, and its roaring
        /// form reads back to the same block.
        #[test]
        fn a_block_is_the_set_of_its_offsets(
            taken in prop::collection::btree_set(0u128..SIZE, 0..=SIZE as usize),
            probe in 0u128..SIZE,
            span in 0u128..SIZE,
        ) {
            let base = 7 * SIZE;
            let mut b = Block::default();
            for &t in &taken {
                prop_assert!(b.insert(base + t));
            }
            if let Some(&t) = taken.first() {
                prop_assert!(!b.insert(base + t), "a second insert changes nothing");
            }
            prop_assert_eq!(b.len(), taken.len() as u64);
            prop_assert_eq!(b.is_empty(), taken.is_empty());
            prop_assert_eq!(b.contains(base + probe), taken.contains(&probe));
            prop_assert_eq!(b.rank(base + probe), taken.range(..=probe).count());
            let last = (probe + span).min(SIZE - 1);
            prop_assert_eq!(b.count_in(base + probe, base + last), taken.range(probe..=last).count() as u64);
            prop_assert_eq!(
                b.next_free(base + probe),
                (probe..SIZE).find(|o| !taken.contains(o)).map(|o| base + o)
            );
            prop_assert_eq!(b.offsets().map(u128::from).collect::<Vec<_>>(), taken.iter().copied().collect::<Vec<_>>());
            prop_assert_eq!(Block::from_bytes(&b.to_bytes()).unwrap(), b);
        }

        /// Allocation by search agrees with the plain model: the first free value from the
        /// start, wrapping, outside reservations.
        #[test]
        fn find_free_matches_the_model(
            cap in prop::collection::vec((0u128..300_000, 0u128..70_000), 1..4),
            res in prop::collection::vec((0u128..300_000, 0u128..2_000), 0..6),
            taken in prop::collection::vec(0u128..370_000, 0..300),
            start in 0u128..370_000,
        ) {
            let capacity = IntervalSet::from_intervals(cap.into_iter().map(|(a, l)| (a, a + l)));
            let reserved = IntervalSet::from_intervals(res.into_iter().map(|(a, l)| (a, a + l)));
            let mut a = Allocations::default();
            let mut model = BTreeSet::new();
            for t in taken {
                a.insert(t);
                model.insert(t);
            }
            let free = |v: &u128| capacity.contains(*v) && !reserved.contains(*v) && !model.contains(v);
            // The model walks candidates near `start` and the pool's lowest values: enough to
            // decide, since the pools here are small next to the u128 line.
            let expected = capacity
                .intervals()
                .iter()
                .flat_map(|&(lo, hi)| lo..=hi)
                .filter(|v| *v >= start)
                .find(free)
                .or_else(|| capacity.intervals().iter().flat_map(|&(lo, hi)| lo..=hi).find(free));
            prop_assert_eq!(a.find_free(&capacity, &[&reserved], start), expected);
            prop_assert_eq!(a.count_in(&capacity), model.iter().filter(|v| capacity.contains(**v)).count() as u128);
        }
    }
}
