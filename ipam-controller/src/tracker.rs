//! Which leaks have lasted: a leak is released only after it has been judged one at every
//! look for a grace period.
//!
//! One look is one snapshot, and a snapshot can be wrong for a moment: a Pod's status lags
//! its sandbox, a list is older than the moment it is read, a node that stopped reporting is
//! still `Ready` until the node controller notices (`--node-monitor-grace-period`, 40 s by
//! default). The tracker remembers since when each allocation has been a leak without a
//! break; a look that keeps it starts the clock again. An allocation is known to the tracker
//! at most as long as it exists, so one younger than the grace period is never due, and a
//! controller that starts (or takes over) waits a whole grace period before its first
//! release.
//!
//! Pure: the caller passes the time.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use ipam_api::Workloads;
//! use ipam_controller::tracker::Tracker;
//! # use ipam_core::{Allocation, ObjectName, Owner, PodRef};
//! # let gone = Allocation {
//! #     address: "10.6.168.131".parse().unwrap(),
//! #     pool: ObjectName::new("test-ippool").unwrap(),
//! #     network: "k8s-pod-network".into(),
//! #     owner: Owner::new("c0ffee", "eth0").unwrap(),
//! #     pod: Some(PodRef { namespace: Some("default".into()), name: "web-0".into(), uid: None, statefulset: None }),
//! #     node: None,
//! # };
//! let mut tracker = Tracker::new(Duration::from_secs(180));
//! let t0 = Instant::now();
//! let empty = Workloads::default();
//! // Its Pod is gone: a leak, but not yet one that has lasted.
//! assert!(tracker.observe(t0, &[gone.clone()], &empty).due.is_empty());
//! let later = tracker.observe(t0 + Duration::from_secs(181), &[gone.clone()], &empty);
//! assert_eq!(later.due.len(), 1);
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipam_api::Workloads;
use ipam_core::{Allocation, Owner};

use crate::leak::{judge, Leak, Verdict};

/// Since when each allocation has been a leak.
#[derive(Debug)]
pub struct Tracker {
    grace: Duration,
    leaking_since: HashMap<Key, Instant>,
}

/// One allocation: its owner, network and address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    owner: Owner,
    network: String,
    address: IpAddr,
}

impl Key {
    fn of(a: &Allocation) -> Key {
        Key {
            owner: a.owner.clone(),
            network: a.network.clone(),
            address: a.address,
        }
    }
}

/// What one look found.
#[derive(Debug, Default)]
pub struct Observed {
    /// The leaks that have lasted the grace period, with why, in the allocations' order.
    pub due: Vec<(Allocation, Leak)>,
    /// Every allocation that is a leak now, due or not.
    pub leaks: usize,
}

impl Tracker {
    /// A tracker that makes a leak due when it has lasted `grace`.
    pub fn new(grace: Duration) -> Tracker {
        Tracker {
            grace,
            leaking_since: HashMap::new(),
        }
    }

    /// One look at the cluster at `now`: every allocation of the store (read before
    /// `cluster`) judged on `cluster`. Allocations that are gone are forgotten.
    pub fn observe(
        &mut self,
        now: Instant,
        allocations: &[Allocation],
        cluster: &Workloads,
    ) -> Observed {
        let mut observed = Observed::default();
        let mut still = HashMap::with_capacity(self.leaking_since.len());
        for a in allocations {
            let Verdict::Leaked(why) = judge(a, cluster) else {
                continue;
            };
            let key = Key::of(a);
            let since = self.leaking_since.get(&key).copied().unwrap_or(now);
            observed.leaks += 1;
            if now.saturating_duration_since(since) >= self.grace {
                observed.due.push((a.clone(), why));
            }
            still.insert(key, since);
        }
        self.leaking_since = still;
        observed
    }

    /// Forgets `allocation` (released, or kept by a last look): if it is a leak at the next
    /// look, its clock starts again.
    pub fn forget(&mut self, allocation: &Allocation) {
        self.leaking_since.remove(&Key::of(allocation));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipam_api::{PodFacts, PodPhase};
    use ipam_core::{ObjectName, PodRef};
    use proptest::prelude::*;

    fn allocation(n: u8) -> Allocation {
        Allocation {
            address: format!("10.6.0.{n}").parse().unwrap(),
            pool: ObjectName::new("p").unwrap(),
            network: "net".into(),
            owner: Owner::new(format!("c{n}"), "eth0").unwrap(),
            pod: Some(PodRef {
                namespace: Some("default".into()),
                name: format!("pod-{n}"),
                uid: Some(format!("u{n}")),
                statefulset: None,
            }),
            node: None,
        }
    }

    /// The cluster where the Pods of `running` run (the others are gone).
    fn cluster(running: &[u8]) -> Workloads {
        let mut c = Workloads::default();
        for &n in running {
            let facts = PodFacts {
                uid: format!("u{n}"),
                phase: PodPhase::Live,
                node: None,
            };
            c.pods.insert(("default".into(), format!("pod-{n}")), facts);
        }
        c
    }

    const GRACE: Duration = Duration::from_secs(60);

    #[test]
    fn a_leak_is_due_after_the_grace_period_without_a_break() {
        let mut t = Tracker::new(GRACE);
        let t0 = Instant::now();
        let a = [allocation(1)];
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(t.observe(at(0), &a, &cluster(&[])).leaks, 1);
        assert!(t.observe(at(59), &a, &cluster(&[])).due.is_empty());
        // The Pod shows up again (a list that lagged): the clock starts again.
        assert_eq!(t.observe(at(60), &a, &cluster(&[1])).leaks, 0);
        assert!(t.observe(at(61), &a, &cluster(&[])).due.is_empty());
        assert!(t.observe(at(120), &a, &cluster(&[])).due.is_empty());
        let due = t.observe(at(121), &a, &cluster(&[])).due;
        assert_eq!(due, vec![(allocation(1), Leak::PodGone)]);
        t.forget(&allocation(1));
        assert!(t.observe(at(122), &a, &cluster(&[])).due.is_empty());
    }

    #[test]
    fn an_allocation_that_went_away_is_forgotten() {
        let mut t = Tracker::new(GRACE);
        let t0 = Instant::now();
        t.observe(t0, &[allocation(1)], &cluster(&[]));
        // Released by its DEL, then its address and owner come back for another Pod.
        t.observe(t0 + GRACE, &[], &cluster(&[]));
        let back = t.observe(t0 + GRACE * 2, &[allocation(1)], &cluster(&[]));
        assert!(back.due.is_empty());
    }

    proptest! {
        /// The model: an allocation is due at a look exactly when every look over the
        /// preceding grace period (back to one at least `GRACE` earlier), and this one,
        /// judged it a leak.
        #[test]
        fn due_exactly_when_leaking_for_the_whole_grace(
            looks in prop::collection::vec((1u64..40, any::<bool>(), any::<bool>()), 1..40)
        ) {
            let mut t = Tracker::new(GRACE);
            let t0 = Instant::now();
            let mut now = 0u64;
            let mut history: Vec<(u64, bool)> = Vec::new();
            for (step, running, present) in looks {
                now += step;
                let allocations: Vec<Allocation> = if present { vec![allocation(1)] } else { vec![] };
                let c = cluster(if running { &[1] } else { &[] });
                let got = t.observe(t0 + Duration::from_secs(now), &allocations, &c);
                // Absent counts as a break, as does running.
                let leaking = present && !running;
                history.push((now, leaking));
                let start = history.iter().rposition(|&(_, l)| !l).map_or(0, |i| i + 1);
                let want = leaking && now - history[start].0 >= GRACE.as_secs();
                prop_assert_eq!(got.due.len() == 1, want, "{:?}", history);
            }
        }
    }
}
