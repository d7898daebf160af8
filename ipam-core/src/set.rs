//! Interval sets over the `u128` address line.
//!
//! Reservations and exclusions can be huge (an IPv6 /64 reservation is 2^64 addresses) yet
//! few, so they are kept as sorted, disjoint, non-adjacent inclusive intervals. Memory and
//! time follow the number of intervals, never the number of addresses.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::addr::IpRange;

/// A normalised set of `u128` values: sorted, disjoint, non-adjacent inclusive intervals.
///
/// ```
/// use ipam_core::IntervalSet;
/// let pool = IntervalSet::from_intervals([(10, 19)]);
/// let reserved = IntervalSet::from_intervals([(12, 13), (18, 30)]);
/// let free = pool.difference(&reserved);
/// assert_eq!(free.intervals(), &[(10, 11), (14, 17)]);
/// assert_eq!(free.len(), 6);
/// assert_eq!(pool.intersection(&reserved).len(), 4);
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<(u128, u128)>", into = "Vec<(u128, u128)>")]
pub struct IntervalSet {
    intervals: Vec<(u128, u128)>,
}

/// Stored intervals that are not normalised (a corrupt or foreign record).
#[derive(Debug, thiserror::Error)]
#[error("interval set is not sorted, disjoint and non-adjacent")]
pub struct NotNormalised;

impl TryFrom<Vec<(u128, u128)>> for IntervalSet {
    type Error = NotNormalised;
    fn try_from(intervals: Vec<(u128, u128)>) -> Result<Self, NotNormalised> {
        let ordered = intervals.iter().all(|&(a, b)| a <= b)
            && intervals
                .windows(2)
                .all(|w| w[0].1.checked_add(1).is_some_and(|next| next < w[1].0));
        if ordered {
            Ok(IntervalSet { intervals })
        } else {
            Err(NotNormalised)
        }
    }
}

impl From<IntervalSet> for Vec<(u128, u128)> {
    fn from(set: IntervalSet) -> Self {
        set.intervals
    }
}

impl IntervalSet {
    /// The empty set.
    pub fn new() -> IntervalSet {
        IntervalSet::default()
    }

    /// Builds a set from inclusive intervals in any order, overlapping or not; an interval
    /// whose start is above its end is ignored.
    pub fn from_intervals(intervals: impl IntoIterator<Item = (u128, u128)>) -> IntervalSet {
        let mut v: Vec<(u128, u128)> = intervals.into_iter().filter(|(a, b)| a <= b).collect();
        v.sort_unstable();
        let mut out: Vec<(u128, u128)> = Vec::with_capacity(v.len());
        for (a, b) in v {
            match out.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        IntervalSet { intervals: out }
    }

    /// The set of the addresses in `ranges` (their families are the caller's concern).
    pub fn from_ranges<'a>(ranges: impl IntoIterator<Item = &'a IpRange>) -> IntervalSet {
        IntervalSet::from_intervals(ranges.into_iter().map(IpRange::bounds))
    }

    /// The intervals, sorted and disjoint.
    pub fn intervals(&self) -> &[(u128, u128)] {
        &self.intervals
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.intervals.is_empty()
    }

    /// How many values the set holds (saturating at `u128::MAX`).
    pub fn len(&self) -> u128 {
        self.intervals.iter().fold(0u128, |n, &(a, b)| {
            n.saturating_add((b - a).saturating_add(1))
        })
    }

    /// Whether `value` is in the set. `O(log n)`.
    pub fn contains(&self, value: u128) -> bool {
        self.interval_containing(value).is_some()
    }

    /// The interval that holds `value`, if any. `O(log n)`.
    pub fn interval_containing(&self, value: u128) -> Option<(u128, u128)> {
        let i = self.intervals.partition_point(|&(_, b)| b < value);
        self.intervals.get(i).copied().filter(|&(a, _)| a <= value)
    }

    /// The smallest value of the set that is `>= value`. `O(log n)`.
    pub fn next_at_or_after(&self, value: u128) -> Option<u128> {
        let i = self.intervals.partition_point(|&(_, b)| b < value);
        self.intervals.get(i).map(|&(a, _)| a.max(value))
    }

    /// The smallest value of the set.
    pub fn first(&self) -> Option<u128> {
        self.intervals.first().map(|&(a, _)| a)
    }

    /// The `n`-th smallest value (from 0), if the set has more than `n` values.
    pub fn nth(&self, mut n: u128) -> Option<u128> {
        for &(a, b) in &self.intervals {
            let len = (b - a).saturating_add(1);
            if n < len {
                return Some(a + n);
            }
            n -= len;
        }
        None
    }

    /// Whether every value of `[first, last]` is in the set.
    pub fn contains_interval(&self, first: u128, last: u128) -> bool {
        self.interval_containing(first)
            .is_some_and(|(_, b)| last <= b)
    }

    /// Adds `[first, last]`.
    pub fn insert(&mut self, first: u128, last: u128) {
        *self = self.union(&IntervalSet::from_intervals([(first, last)]));
    }

    /// Values in either set.
    pub fn union(&self, other: &IntervalSet) -> IntervalSet {
        IntervalSet::from_intervals(self.intervals.iter().chain(other.intervals.iter()).copied())
    }

    /// Values in both sets. `O(n + m)`.
    pub fn intersection(&self, other: &IntervalSet) -> IntervalSet {
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < self.intervals.len() && j < other.intervals.len() {
            let (a1, b1) = self.intervals[i];
            let (a2, b2) = other.intervals[j];
            let (lo, hi) = (a1.max(a2), b1.min(b2));
            if lo <= hi {
                out.push((lo, hi));
            }
            if b1 < b2 {
                i += 1;
            } else {
                j += 1;
            }
        }
        IntervalSet { intervals: out }
    }

    /// Values in `self` but not in `other`. `O(n + m)`.
    pub fn difference(&self, other: &IntervalSet) -> IntervalSet {
        let mut out = Vec::new();
        let mut j = 0;
        for &(a, b) in &self.intervals {
            let mut start = a;
            let mut open = true;
            while j < other.intervals.len() && other.intervals[j].1 < start {
                j += 1;
            }
            let mut k = j;
            while k < other.intervals.len() && other.intervals[k].0 <= b {
                let (ra, rb) = other.intervals[k];
                if ra > start {
                    out.push((start, ra - 1));
                }
                match rb.checked_add(1) {
                    Some(next) if next <= b => start = start.max(next),
                    _ => {
                        open = false;
                        break;
                    }
                }
                k += 1;
            }
            if open {
                out.push((start, b));
            }
        }
        IntervalSet { intervals: out }
    }

    /// Whether the two sets share a value.
    pub fn intersects(&self, other: &IntervalSet) -> bool {
        !self.intersection(other).is_empty()
    }
}

impl fmt::Debug for IntervalSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.intervals.iter().map(|(a, b)| a..=b))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn model(set: &IntervalSet) -> BTreeSet<u128> {
        set.intervals().iter().flat_map(|&(a, b)| a..=b).collect()
    }

    fn small_set() -> impl Strategy<Value = IntervalSet> {
        prop::collection::vec((0u128..200, 0u128..12), 0..8)
            .prop_map(|v| IntervalSet::from_intervals(v.into_iter().map(|(a, l)| (a, a + l))))
    }

    fn is_normalised(set: &IntervalSet) -> bool {
        IntervalSet::try_from(set.intervals().to_vec()).is_ok()
    }

    proptest! {
        #[test]
        fn algebra_matches_a_btreeset(a in small_set(), b in small_set(), probe in 0u128..220) {
            let (ma, mb) = (model(&a), model(&b));
            let union = a.union(&b);
            let inter = a.intersection(&b);
            let diff = a.difference(&b);
            prop_assert!(is_normalised(&union) && is_normalised(&inter) && is_normalised(&diff));
            prop_assert_eq!(model(&union), &ma | &mb);
            prop_assert_eq!(model(&inter), &ma & &mb);
            prop_assert_eq!(model(&diff), &ma - &mb);
            prop_assert_eq!(a.len(), ma.len() as u128);
            prop_assert_eq!(a.contains(probe), ma.contains(&probe));
            prop_assert_eq!(a.next_at_or_after(probe), ma.range(probe..).next().copied());
            prop_assert_eq!(a.nth(probe), ma.iter().nth(probe as usize).copied());
            prop_assert_eq!(a.intersects(&b), !(&ma & &mb).is_empty());
        }
    }

    #[test]
    fn extremes_do_not_overflow() {
        let all = IntervalSet::from_intervals([(0, u128::MAX)]);
        assert_eq!(all.len(), u128::MAX);
        let top = IntervalSet::from_intervals([(u128::MAX - 1, u128::MAX)]);
        assert_eq!(all.difference(&top).intervals(), &[(0, u128::MAX - 2)]);
        assert!(top.difference(&all).is_empty());
        let adjacent = IntervalSet::from_intervals([(0, 5), (6, 9), (u128::MAX, u128::MAX)]);
        assert_eq!(adjacent.intervals(), &[(0, 9), (u128::MAX, u128::MAX)]);
    }

    #[test]
    fn stored_sets_must_be_normalised() {
        assert!(IntervalSet::try_from(vec![(5, 1)]).is_err());
        assert!(IntervalSet::try_from(vec![(1, 5), (6, 9)]).is_err());
        assert!(IntervalSet::try_from(vec![(1, 5), (7, 9)]).is_ok());
    }
}
