//! The controller's sync and its Lease against a real kube-apiserver (`testenv/`;
//! `IPAM_TEST_KUBECONFIG` names its admin kubeconfig): a leak is released only once it has
//! lasted the grace period, never while its Pod lives or while the node that made it is not
//! Ready; two electors share one Lease, and a silent or departing leader is replaced. The
//! test server has no kubelet: Pods and Nodes are objects the test writes. Without a cluster
//! the tests say so and pass, except under `CI=true`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipam_controller::controller::lease::{Elector, Role};
use ipam_controller::controller::metrics::Metrics;
use ipam_controller::controller::{Controller, Settings};
use ipam_core::{Config, IpPool, IpPoolSpec, Ipam, ObjectName, Owner, PodRef, Request, Slot};
use ipam_kube::{KubeOptions, KubeStore};
use ipam_test_support::{kubectl_ok, test_cluster as cluster, unique};
use pollster::block_on;

fn store(kubeconfig: &std::path::Path, namespace: &str) -> Arc<KubeStore> {
    Arc::new(
        KubeStore::connect(&KubeOptions {
            kubeconfig: Some(kubeconfig.to_owned()),
            namespace: namespace.to_owned(),
            deadline: None,
            ..KubeOptions::default()
        })
        .unwrap(),
    )
}

/// Until `deadline` passes, tries `f` every 100 ms; whether it ever held.
fn eventually(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + deadline;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_sync_releases_only_leaks_that_lasted_and_only_those() {
    let Some(k) = cluster() else { return };
    let ns = ipam_test_support::namespace(&k, "ctl");
    kubectl_ok(&k, &["create", "serviceaccount", "default", "-n", &ns], "");
    let live_pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: live, namespace: {ns}}}\n\
         spec: {{automountServiceAccountToken: false, containers: [{{name: c, image: registry.example.invalid/none:0}}]}}\n"
    );
    kubectl_ok(&k, &["apply", "-f", "-"], &live_pod);
    let live_uid = kubectl_ok(
        &k,
        &[
            "get",
            "pod",
            "live",
            "-n",
            &ns,
            "-o",
            "jsonpath={.metadata.uid}",
        ],
        "",
    );
    // A Node that reports nothing: not Ready.
    let silent = unique("ctl-silent");
    kubectl_ok(
        &k,
        &["apply", "-f", "-"],
        &format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {silent}}}\n"),
    );
    let store = store(&k, &ns);
    let pool = unique("ctl-pool");
    let id = std::process::id() % 0xffff;
    let ipam = Ipam::new(store.clone());
    block_on(
        ipam.apply_pool(
            IpPool::new(
                pool.as_str(),
                IpPoolSpec {
                    subnet: format!("fd46:{id:x}::/120"),
                    ips: vec![format!("fd46:{id:x}::10-fd46:{id:x}::40")],
                    ..IpPoolSpec::default()
                },
            )
            .unwrap(),
        ),
    )
    .unwrap();
    let on_silent_node = Ipam::with_config(
        store.clone(),
        Config {
            node: Some(ObjectName::new(silent.as_str()).unwrap()),
            ..Config::default()
        },
    );
    let add = |ipam: &Ipam<Arc<KubeStore>>, owner: &str, pod: Option<(&str, &str)>| {
        let mut request = Request::new(Owner::new(owner, "eth0").unwrap(), "ctl-test")
            .slot(Slot::any_of([ObjectName::new(pool.as_str()).unwrap()]));
        if let Some((name, uid)) = pod {
            request = request.pod(PodRef {
                namespace: Some(ns.clone()),
                name: name.to_owned(),
                uid: Some(uid.to_owned()),
                statefulset: None,
            });
        }
        block_on(ipam.allocate(&request)).unwrap()[0]
            .allocation
            .address
    };
    let live = add(&ipam, "c-live", Some(("live", &live_uid)));
    let no_pod = add(&ipam, "c-no-pod", None);
    let gone = add(
        &ipam,
        "c-gone",
        Some(("gone", "0e0e0e0e-0000-4000-8000-00000000000a")),
    );
    let gone_on_silent = add(
        &on_silent_node,
        "c-gone-silent",
        Some(("gone-too", "0e0e0e0e-0000-4000-8000-00000000000b")),
    );

    let grace = Duration::from_secs(3);
    let metrics = Arc::new(Metrics::default());
    let mut controller = Controller::new(
        store.clone(),
        Settings {
            leak_grace: grace,
            interval: Duration::from_secs(1),
            max_releases: 10,
        },
        metrics.clone(),
    );
    let leadership = Arc::new(Mutex::new(Some(Instant::now() + Duration::from_secs(3600))));
    let held = || -> Vec<std::net::IpAddr> {
        let mut v: Vec<_> = block_on(ipam.allocations(None))
            .unwrap()
            .into_iter()
            .map(|a| a.address)
            .collect();
        v.sort();
        v
    };
    let started = Instant::now();
    let first = controller.sync(&leadership).unwrap();
    assert_eq!((first.allocations, first.leaks, first.released), (4, 1, 0));
    assert_eq!(held().len(), 4, "a leak seen once is not released");
    // Sync until the grace period has passed (however slow this machine is), then once more.
    while started.elapsed() < grace {
        let r = controller.sync(&leadership).unwrap();
        if started.elapsed() < grace {
            assert_eq!(r.released, 0, "released before the grace period");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let last = controller.sync(&leadership).unwrap();
    assert_eq!(last.released, 1, "{last:?}");
    let mut want = vec![live, no_pod, gone_on_silent];
    want.sort();
    assert_eq!(held(), want, "only {gone} goes");
    assert!(metrics
        .render()
        .lines()
        .any(|l| l == "ipam_rs_leaks_released_total{reason=\"podGone\"} 1"));
    // The pool's status counts what is left.
    assert!(eventually(Duration::from_secs(60), || {
        kubectl_ok(
            &k,
            &[
                "get",
                "ippool",
                &pool,
                "-o",
                "jsonpath={.status.allocatedIPCount}",
            ],
            "",
        ) == "3"
    }));

    // A leader whose Lease lapsed releases nothing, not even a leak that is due.
    kubectl_ok(
        &k,
        &[
            "delete",
            "pod",
            "live",
            "-n",
            &ns,
            "--grace-period=0",
            "--force",
        ],
        "",
    );
    assert!(eventually(Duration::from_secs(60), || {
        controller.sync(&leadership).unwrap().leaks == 1
    }));
    std::thread::sleep(grace + Duration::from_millis(500));
    *leadership.lock().unwrap() = None;
    let lapsed = controller.sync(&leadership).unwrap();
    assert_eq!((lapsed.leaks, lapsed.released), (1, 0));
    assert_eq!(held().len(), 3);
    *leadership.lock().unwrap() = Some(Instant::now() + Duration::from_secs(3600));
    assert_eq!(
        controller.sync(&leadership).unwrap().released,
        1,
        "it was due"
    );
    assert!(!held().contains(&live));

    for owner in ["c-no-pod", "c-gone-silent"] {
        block_on(ipam.release(&Owner::new(owner, "eth0").unwrap(), None)).unwrap();
    }
    kubectl_ok(&k, &["delete", "ippool", &pool], "");
    kubectl_ok(&k, &["delete", "node", &silent], "");
    kubectl_ok(&k, &["delete", "namespace", &ns, "--wait=false"], "");
}

#[test]
fn one_elector_leads_and_another_takes_over_when_it_stops() {
    let Some(k) = cluster() else { return };
    let ns = ipam_test_support::namespace(&k, "lease");
    let store = store(&k, &ns);
    let duration = Duration::from_secs(2);
    let mut a = Elector::new(&ns, "ipam-controller", "replica-a", duration);
    let mut b = Elector::new(&ns, "ipam-controller", "replica-b", duration);
    assert_eq!(block_on(a.step(&store)).unwrap(), Role::Leader);
    assert_eq!(
        block_on(b.step(&store)).unwrap(),
        Role::Follower(Some("replica-a".into()))
    );
    // While a renews, b never takes over.
    let until = Instant::now() + duration * 2;
    let mut renewed = Instant::now();
    while Instant::now() < until {
        assert_eq!(block_on(a.step(&store)).unwrap(), Role::Leader);
        renewed = Instant::now();
        assert!(matches!(
            block_on(b.step(&store)).unwrap(),
            Role::Follower(_)
        ));
        std::thread::sleep(Duration::from_millis(300));
    }
    // a stops renewing: b takes over once the Lease has not changed for its duration, as b
    // saw it (b's look came after a's last renewal).
    assert!(eventually(Duration::from_secs(60), || {
        block_on(b.step(&store)).unwrap() == Role::Leader
    }));
    let silent_for = renewed.elapsed();
    assert!(
        silent_for >= duration,
        "taken over {silent_for:?} after the last renewal"
    );
    // a, back, finds b leading; b gives the Lease up and a takes it at once.
    assert_eq!(
        block_on(a.step(&store)).unwrap(),
        Role::Follower(Some("replica-b".into()))
    );
    block_on(b.release(&store)).unwrap();
    assert_eq!(block_on(a.step(&store)).unwrap(), Role::Leader);
    kubectl_ok(&k, &["delete", "namespace", &ns, "--wait=false"], "");
}

#[test]
fn the_watches_see_pods_nodes_and_statefulsets_come_and_go() {
    let Some(k) = cluster() else { return };
    let ns = ipam_test_support::namespace(&k, "watch");
    kubectl_ok(&k, &["create", "serviceaccount", "default", "-n", &ns], "");
    let store = store(&k, &ns);
    let watch =
        ipam_controller::controller::watch::ClusterWatch::start(store.client()).expect("start");
    let first = watch
        .wait_listed(Duration::from_secs(120))
        .expect("every kind listed");
    assert!(first.pod(&ns, "w").is_none());
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: w, namespace: {ns}}}\n\
         spec: {{automountServiceAccountToken: false, containers: [{{name: c, image: registry.example.invalid/none:0}}]}}\n"
    );
    kubectl_ok(&k, &["apply", "-f", "-"], &pod);
    let node = unique("watch-node");
    kubectl_ok(
        &k,
        &["apply", "-f", "-"],
        &format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {node}}}\n"),
    );
    let sts = format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: db, namespace: {ns}}}\n\
         spec: {{replicas: 2, serviceName: db, selector: {{matchLabels: {{app: db}}}},\n\
         template: {{metadata: {{labels: {{app: db}}}}, spec: {{containers: [{{name: c, image: registry.example.invalid/none:0}}]}}}}}}\n"
    );
    kubectl_ok(&k, &["apply", "-f", "-"], &sts);
    let seen = |f: &dyn Fn(&ipam_api::Workloads) -> bool| {
        eventually(Duration::from_secs(60), || {
            watch.snapshot().is_ok_and(|w| f(&w))
        })
    };
    assert!(seen(&|w| w.pod(&ns, "w").is_some()), "the Pod was not seen");
    assert!(
        seen(&|w| w.node(&node).is_some_and(|n| !n.ready)),
        "the Node was not seen"
    );
    assert!(
        seen(&|w| w.statefulset(&ns, "db").is_some_and(|s| s.replicas == 2)),
        "the StatefulSet was not seen"
    );
    kubectl_ok(
        &k,
        &["scale", "statefulset", "db", "-n", &ns, "--replicas=1"],
        "",
    );
    assert!(
        seen(&|w| w
            .statefulset(&ns, "db")
            .is_some_and(|s| s.replicas == 1 && !s.wants(1))),
        "the scale-down was not seen"
    );
    kubectl_ok(
        &k,
        &[
            "delete",
            "pod",
            "w",
            "-n",
            &ns,
            "--grace-period=0",
            "--force",
        ],
        "",
    );
    kubectl_ok(&k, &["delete", "node", &node], "");
    kubectl_ok(&k, &["delete", "statefulset", "db", "-n", &ns], "");
    assert!(
        seen(&|w| w.pod(&ns, "w").is_none()
            && w.node(&node).is_none()
            && w.statefulset(&ns, "db").is_none()),
        "the deletions were not seen"
    );
    assert!(watch.events() > 0);
}
