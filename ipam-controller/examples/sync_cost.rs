//! What one controller sync costs the API server: N Pods and N allocations (one per Pod, all
//! live), then syncs, each counted by the API server's own metrics
//! (`apiserver_request_total`, by verb and resource) and timed. Run by
//! `ipam-controller/bench/sync-cost.sh`, which starts a test API server; figures in
//! `ipam-controller/bench/RESULTS.md`.
//!
//! ```text
//! cargo run --release -p ipam-controller --example sync_cost -- KUBECONFIG [N] [SYNCS]
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipam_controller::controller::metrics::Metrics;
use ipam_controller::controller::{Controller, Settings};
use ipam_core::{IpPool, IpPoolSpec, Ipam, ObjectName, Owner, PodRef, Request, Slot};
use ipam_kube::{KubeOptions, KubeStore};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, PostParams};
use pollster::block_on;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kubeconfig = args
        .get(1)
        .expect("usage: sync_cost KUBECONFIG [N] [SYNCS] [watch]");
    let n: usize = args.get(2).map_or(5000, |a| a.parse().expect("N"));
    let syncs: usize = args.get(3).map_or(5, |a| a.parse().expect("SYNCS"));
    let ns = format!("sync-cost-{}", std::process::id());
    let store = Arc::new(
        KubeStore::connect(&KubeOptions {
            kubeconfig: Some(kubeconfig.into()),
            namespace: ns.clone(),
            deadline: None,
            ..KubeOptions::default()
        })
        .expect("connect"),
    );
    let t = Instant::now();
    create_namespace(&store, &ns);
    let pool = ObjectName::new(format!("sync-cost-{}", std::process::id())).unwrap();
    let ipam = Ipam::new(store.clone());
    block_on(
        ipam.apply_pool(
            IpPool::new(
                pool.as_str(),
                IpPoolSpec {
                    subnet: "10.200.0.0/16".into(),
                    ips: vec!["10.200.0.1-10.200.255.254".into()],
                    ..IpPoolSpec::default()
                },
            )
            .unwrap(),
        ),
    )
    .expect("apply the pool");
    for i in 0..n {
        let name = format!("p{i}");
        let uid = create_pod(&store, &ns, &name);
        let request = Request::new(Owner::new(format!("c{i:08}"), "eth0").unwrap(), "net")
            .pod(PodRef {
                namespace: Some(ns.clone()),
                name,
                uid: Some(uid),
                statefulset: None,
            })
            .slot(Slot::any_of([pool.clone()]));
        block_on(ipam.allocate(&request)).expect("ADD");
        if (i + 1) % 1000 == 0 {
            eprintln!(
                "{} Pods and allocations ({} s)",
                i + 1,
                t.elapsed().as_secs()
            );
        }
    }

    let leadership = Arc::new(Mutex::new(Some(
        Instant::now() + Duration::from_secs(86_400),
    )));
    let mut controller = Controller::new(
        store.clone(),
        Settings {
            leak_grace: Duration::from_secs(180),
            interval: Duration::from_secs(10),
            max_releases: 100,
        },
        Arc::new(Metrics::default()),
    );
    // With watches (as the controller runs), the cluster is listed once, before the syncs.
    let watching = std::env::args().nth(4).as_deref() == Some("watch");
    let mut watch_requests = BTreeMap::new();
    if watching {
        let before = requests(&store);
        // As the controller does: the watches' client waits 295 s for a read (a watch is
        // silent while nothing changes).
        let watch_store = KubeStore::connect(&KubeOptions {
            kubeconfig: Some(kubeconfig.clone().into()),
            namespace: ns.clone(),
            deadline: None,
            request_timeout: Duration::from_secs(295),
            ..KubeOptions::default()
        })
        .expect("connect");
        let watch = ipam_controller::controller::watch::ClusterWatch::start(watch_store.client())
            .expect("start the watches");
        // Kept for the process: the client's requests go through the store's runtime.
        std::mem::forget(watch_store);
        let seen = watch
            .wait_listed(Duration::from_secs(600))
            .expect("the watches list every kind");
        assert!(seen.pods.len() >= n, "{} Pods seen", seen.pods.len());
        for (k, v) in &requests(&store) {
            let d = v - before.get(k).copied().unwrap_or(0);
            if d > 0 {
                watch_requests.insert(k.clone(), d);
            }
        }
        controller = controller.watching(watch);
    }
    let servers_cpu = || -> Vec<f64> {
        ["APISERVER_PID", "ETCD_PID"]
            .iter()
            .map(|v| {
                std::env::var(v)
                    .ok()
                    .and_then(|pid| cpu_seconds(&pid))
                    .unwrap_or(0.0)
            })
            .collect()
    };
    let cpu_before = servers_cpu();
    // After the first sync (which also writes the pools' status and looks for crash
    // leftovers, once per grace period): the CPU of syncs at rest.
    let mut cpu_at_rest = cpu_before.clone();
    let mut times = Vec::new();
    let mut per_sync = Vec::new();
    for i in 0..syncs {
        if i == 1 {
            cpu_at_rest = servers_cpu();
        }
        let before = requests(&store);
        let started = Instant::now();
        let report = controller.sync(&leadership).expect("sync");
        times.push(started.elapsed());
        let after = requests(&store);
        assert_eq!(report.allocations, n);
        assert_eq!(report.leaks, 0);
        let mut diff: BTreeMap<String, u64> = BTreeMap::new();
        for (k, v) in &after {
            let d = v - before.get(k).copied().unwrap_or(0);
            if d > 0 {
                diff.insert(k.clone(), d);
            }
        }
        per_sync.push(diff);
    }
    let cpu_after = servers_cpu();
    times.sort();
    let median = times[times.len() / 2];
    // The first sync writes every pool's status; the later ones only what changed (nothing).
    let rest = per_sync.last().expect("one sync at least");
    let total: u64 = rest.values().sum();
    println!(
        "sync_cost: {n} Pods, {n} allocations ({} blocks of 64)",
        n.div_ceil(64)
    );
    println!(
        "  sync time: median {} ms, min {} ms, max {} ms ({syncs} syncs)",
        median.as_millis(),
        times[0].as_millis(),
        times[times.len() - 1].as_millis()
    );
    if watching {
        println!("  the watches' first list (once per process): {watch_requests:?}");
    }
    println!("  first sync's requests: {:?}", per_sync[0]);
    println!("  a sync at rest: {total} requests: {rest:?}");
    println!("  at rest, every 10 s: {} requests per minute", total * 6);
    println!(
        "  API server CPU per sync {:.3} s, etcd {:.3} s (APISERVER_PID, ETCD_PID)",
        (cpu_after[0] - cpu_before[0]) / syncs as f64,
        (cpu_after[1] - cpu_before[1]) / syncs as f64
    );
    if syncs > 1 {
        let rest = (syncs - 1) as f64;
        println!(
            "  API server CPU per sync at rest (syncs 2 to {syncs}) {:.3} s, etcd {:.3} s",
            (cpu_after[0] - cpu_at_rest[0]) / rest,
            (cpu_after[1] - cpu_at_rest[1]) / rest
        );
    }
    println!(
        "  peak memory of this process (the controller's reads): {} MiB",
        peak_rss_mib()
    );
}

fn create_namespace(store: &KubeStore, ns: &str) {
    let object = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(ns.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    block_on(store.send("create namespace", ns.to_owned(), move |c| {
        let api: Api<Namespace> = Api::all(c);
        async move { api.create(&PostParams::default(), &object).await }
    }))
    .expect("create the namespace");
    // The ServiceAccount admission wants the Pods' account; no controller makes it here.
    let account: k8s_openapi::api::core::v1::ServiceAccount = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "default", "namespace": ns}}),
    )
    .unwrap();
    let namespace = ns.to_owned();
    block_on(
        store.send("create serviceaccount", ns.to_owned(), move |c| {
            let api: Api<k8s_openapi::api::core::v1::ServiceAccount> =
                Api::namespaced(c, &namespace);
            async move { api.create(&PostParams::default(), &account).await }
        }),
    )
    .expect("create the ServiceAccount");
}

/// A Pod object (no kubelet runs it); its UID.
fn create_pod(store: &KubeStore, ns: &str, name: &str) -> String {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "automountServiceAccountToken": false,
            "containers": [{"name": "c", "image": "registry.example.invalid/none:0"}]
        }
    }))
    .unwrap();
    let ns = ns.to_owned();
    let created = block_on(store.send("create pod", name.to_owned(), move |c| {
        let api: Api<Pod> = Api::namespaced(c, &ns);
        async move { api.create(&PostParams::default(), &pod).await }
    }))
    .expect("create a Pod");
    created.metadata.uid.expect("a UID")
}

/// `apiserver_request_total` by `verb resource`, summed over codes and scopes.
fn requests(store: &KubeStore) -> BTreeMap<String, u64> {
    let text = block_on(store.send("get", "/metrics".to_owned(), |c| async move {
        let request = http::Request::get("/metrics").body(Vec::new()).unwrap();
        c.request_text(request).await
    }))
    .expect("read the API server's metrics");
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let label = |name: &str| {
            let key = format!("{name}=\"");
            line.split(&key)
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
                .to_owned()
        };
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let key = format!("{} {}", label("verb"), label("resource"));
        *out.entry(key).or_insert(0) += value as u64;
    }
    out
}

/// User and system CPU of process `pid`, in seconds (`/proc/PID/stat`, 100 ticks a second).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}
