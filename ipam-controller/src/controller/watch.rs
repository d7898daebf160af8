//! The cluster's Pods, Nodes and StatefulSets as the controller's syncs read them: kept by
//! watches (kube's `watcher`: a paged list, then a watch from its resourceVersion, resumed or
//! listed again after a failure, with back-off), not listed at every sync.
//!
//! Only what the rules read is kept ([`PodFacts`], [`NodeFacts`], [`StatefulSetFacts`]), so
//! the memory follows the number of objects, not their size. A kind's view changes whole at
//! the end of each list (`InitDone`): its objects are gathered aside and swapped in then, so a
//! list that fails part-way never shows a part. Until every kind has completed one list,
//! [`ClusterWatch::snapshot`] has nothing to give, and a sync judges nothing.
//!
//! A view may lag the cluster (a watch that broke and is being resumed). That is safe for
//! the rules: a leak must last a grace period at every look, and is read again with a GET
//! just before its release, so an old view can delay a release, never cause one.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use ipam_api::{NodeFacts, PodFacts, StatefulSetFacts, Workloads};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

/// One kind's view: the objects of its last complete list, kept current by its watch.
#[derive(Debug)]
struct View<K, V> {
    /// Whether a list has completed: only then is `items` the whole kind.
    listed: bool,
    items: BTreeMap<K, V>,
    /// A list in progress.
    next: Option<BTreeMap<K, V>>,
    /// Events applied, and the last failure of the watch with when it happened (cleared by
    /// the next event).
    events: u64,
    failing: Option<(Instant, String)>,
}

impl<K: Ord, V> Default for View<K, V> {
    fn default() -> Self {
        View {
            listed: false,
            items: BTreeMap::new(),
            next: None,
            events: 0,
            failing: None,
        }
    }
}

impl<K: Ord, V> View<K, V> {
    /// Applies one event of the watch, each object by its key and facts (`None`: an object
    /// the rules cannot use, left out).
    fn apply<O>(&mut self, event: Event<O>, facts: impl Fn(O) -> Option<(K, V)>) {
        self.events += 1;
        self.failing = None;
        match event {
            Event::Init => self.next = Some(BTreeMap::new()),
            Event::InitApply(o) => {
                if let Some((k, v)) = facts(o) {
                    self.next.get_or_insert_with(BTreeMap::new).insert(k, v);
                }
            }
            Event::InitDone => {
                self.items = self.next.take().unwrap_or_default();
                self.listed = true;
            }
            Event::Apply(o) => {
                if let Some((k, v)) = facts(o) {
                    self.items.insert(k, v);
                }
            }
            Event::Delete(o) => {
                if let Some((k, _)) = facts(o) {
                    self.items.remove(&k);
                }
            }
        }
    }
}

/// The three views.
#[derive(Debug, Default)]
struct Views {
    pods: View<(String, String), PodFacts>,
    nodes: View<String, NodeFacts>,
    statefulsets: View<(String, String), StatefulSetFacts>,
}

/// The watches of the cluster's Pods, Nodes and StatefulSets, on a thread of their own.
#[derive(Clone, Debug)]
pub struct ClusterWatch {
    views: Arc<Mutex<Views>>,
}

/// Why a snapshot cannot be given yet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the watches have not listed every kind yet: {waiting}{}", .failing.as_ref().map(|f| format!(" (last failure: {f})")).unwrap_or_default())]
pub struct NotListed {
    /// The kinds still waiting for their first complete list.
    pub waiting: String,
    /// The last failure of one of their watches.
    pub failing: Option<String>,
}

impl ClusterWatch {
    /// Starts the watches with `client`, on a thread of their own, for as long as the
    /// process lives.
    pub fn start(client: Client) -> std::io::Result<ClusterWatch> {
        let views = Arc::new(Mutex::new(Views::default()));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let shared = views.clone();
        std::thread::Builder::new()
            .name("watches".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let pods = follow(
                        Api::<Pod>::all(client.clone()),
                        shared.clone(),
                        |v| &mut v.pods,
                        |pod: Pod| {
                            ipam_kube::pod_facts(pod).map(|(ns, name, facts)| ((ns, name), facts))
                        },
                    );
                    let nodes = follow(
                        Api::<Node>::all(client.clone()),
                        shared.clone(),
                        |v| &mut v.nodes,
                        |node: Node| {
                            let facts = ipam_kube::node_facts(&node);
                            node.metadata.name.map(|n| (n, facts))
                        },
                    );
                    let statefulsets = follow(
                        Api::<StatefulSet>::all(client),
                        shared,
                        |v| &mut v.statefulsets,
                        |sts: StatefulSet| {
                            let facts = ipam_kube::statefulset_facts(&sts);
                            let meta = sts.metadata;
                            Some(((meta.namespace?, meta.name?), facts))
                        },
                    );
                    futures::join!(pods, nodes, statefulsets);
                })
            })?;
        Ok(ClusterWatch { views })
    }

    /// The cluster as the watches see it now: every kind from its last complete list and
    /// the events since. `Err` until each kind has completed a list.
    pub fn snapshot(&self) -> Result<Workloads, NotListed> {
        let views = self.views.lock().unwrap_or_else(|e| e.into_inner());
        let mut waiting = Vec::new();
        let mut failing = None;
        let mut check = |name: &str, listed: bool, failure: &Option<(Instant, String)>| {
            if !listed {
                waiting.push(name.to_owned());
                if let Some((_, f)) = failure {
                    failing = Some(f.clone());
                }
            }
        };
        check("pods", views.pods.listed, &views.pods.failing);
        check("nodes", views.nodes.listed, &views.nodes.failing);
        check(
            "statefulsets",
            views.statefulsets.listed,
            &views.statefulsets.failing,
        );
        if !waiting.is_empty() {
            return Err(NotListed {
                waiting: waiting.join(", "),
                failing,
            });
        }
        Ok(Workloads {
            pods: views.pods.items.clone(),
            nodes: views.nodes.items.clone(),
            statefulsets: views.statefulsets.items.clone(),
        })
    }

    /// The events the watches have applied, every kind together (a measure of their work).
    pub fn events(&self) -> u64 {
        let views = self.views.lock().unwrap_or_else(|e| e.into_inner());
        views.pods.events + views.nodes.events + views.statefulsets.events
    }

    /// Waits up to `timeout` for a snapshot (tests, and a controller's first sync).
    pub fn wait_listed(&self, timeout: Duration) -> Result<Workloads, NotListed> {
        let until = Instant::now() + timeout;
        loop {
            match self.snapshot() {
                Ok(w) => return Ok(w),
                Err(e) if Instant::now() >= until => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

/// Follows one kind's watch for ever, applying its events to its view.
async fn follow<O, K, V>(
    api: Api<O>,
    views: Arc<Mutex<Views>>,
    view: fn(&mut Views) -> &mut View<K, V>,
    facts: fn(O) -> Option<(K, V)>,
) where
    O: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    K: Ord,
{
    let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
    while let Some(event) = events.next().await {
        let mut views = views.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Ok(event) => view(&mut views).apply(event, facts),
            Err(e) => view(&mut views).failing = Some((Instant::now(), e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipam_api::PodPhase;

    fn facts(o: (&'static str, bool)) -> Option<(String, NodeFacts)> {
        Some((o.0.to_owned(), NodeFacts { ready: o.1 }))
    }

    #[test]
    fn a_view_is_whole_only_after_a_complete_list_and_swaps_at_its_end() {
        let mut v: View<String, NodeFacts> = View::default();
        v.apply(Event::Init, facts);
        v.apply(Event::InitApply(("n1", true)), facts);
        // Part of a list is not the kind.
        assert!(!v.listed);
        v.apply(Event::InitDone, facts);
        assert!(v.listed);
        assert_eq!(v.items.keys().collect::<Vec<_>>(), ["n1"]);
        v.apply(Event::Apply(("n2", false)), facts);
        v.apply(Event::Delete(("n1", true)), facts);
        assert_eq!(v.items.keys().collect::<Vec<_>>(), ["n2"]);
        // A list again (a watch that expired): the old view stays until the new one is
        // complete, then the new one replaces it whole (n2 is gone from it).
        v.apply(Event::Init, facts);
        v.apply(Event::InitApply(("n3", true)), facts);
        assert_eq!(v.items.keys().collect::<Vec<_>>(), ["n2"]);
        v.apply(Event::InitDone, facts);
        assert_eq!(v.items.keys().collect::<Vec<_>>(), ["n3"]);
        assert_eq!(v.events, 8);
    }

    #[test]
    fn no_snapshot_until_every_kind_is_listed() {
        let watch = ClusterWatch {
            views: Arc::new(Mutex::new(Views::default())),
        };
        let err = watch.snapshot().unwrap_err();
        assert_eq!(err.waiting, "pods, nodes, statefulsets");
        {
            let mut views = watch.views.lock().unwrap();
            views.pods.listed = true;
            views.nodes.listed = true;
            views.statefulsets.failing = Some((Instant::now(), "403 Forbidden".into()));
        }
        let err = watch.snapshot().unwrap_err();
        assert_eq!(
            err.to_string(),
            "the watches have not listed every kind yet: statefulsets (last failure: 403 Forbidden)"
        );
        {
            let mut views = watch.views.lock().unwrap();
            views.statefulsets.listed = true;
            views.pods.items.insert(
                ("default".into(), "web".into()),
                PodFacts {
                    uid: "u".into(),
                    phase: PodPhase::Live,
                    node: None,
                },
            );
        }
        assert_eq!(watch.snapshot().unwrap().pods.len(), 1);
    }
}
