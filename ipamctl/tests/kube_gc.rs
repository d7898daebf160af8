//! `ipamctl gc --dry-run` against a real kube-apiserver (`testenv/`; `IPAM_TEST_KUBECONFIG`
//! names its admin kubeconfig): allocations made for Pods that were deleted, re-created,
//! finished or stranded on a deleted node are listed with their reason; those of a live Pod,
//! or that name no Pod, are not. The test API server runs no kubelet: its Pods are objects
//! whose `spec.nodeName` and `status.phase` the test writes. Without a cluster the tests say
//! so and pass, except under `CI=true`.

use std::path::Path;

use ipam_core::testkit;
use ipam_core::{Ipam, PodRef, Request, Slot};
use ipam_test_support::{kubectl_ok, test_cluster as cluster, unique};
use pollster::block_on;

/// This package's `ipamctl` on the Kubernetes store of `namespace`.
fn ipamctl(kubeconfig: &Path, namespace: &str, args: &[&str]) -> (i32, String, String) {
    let bin = Path::new(env!("CARGO_BIN_EXE_ipamctl"));
    ipam_test_support::ipamctl_on_cluster(bin, kubeconfig, namespace, args, "")
}

/// A Pod object in `namespace`, bound to `node` (no kubelet runs it).
fn pod_manifest(namespace: &str, name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
         spec:\n  nodeName: {node}\n  automountServiceAccountToken: false\n  \
         containers: [{{name: c, image: registry.example.invalid/none:0}}]\n"
    )
}

fn uid_of(kubeconfig: &Path, namespace: &str, pod: &str) -> String {
    let jsonpath = "jsonpath={.metadata.uid}";
    kubectl_ok(
        kubeconfig,
        &["get", "pod", "-n", namespace, pod, "-o", jsonpath],
        "",
    )
}

#[test]
fn gc_dry_run_lists_each_kind_of_leak_and_nothing_else() {
    let Some(k) = cluster() else { return };
    let ns = ipam_test_support::namespace(&k, "gc");
    // The ServiceAccount admission wants the Pods' account to exist; no controller makes it.
    kubectl_ok(&k, &["create", "serviceaccount", "default", "-n", &ns], "");
    let node = unique("gc-node");
    let missing_node = unique("gc-node-deleted");
    kubectl_ok(
        &k,
        &["apply", "-f", "-"],
        &format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {node}}}\n"),
    );
    let pool = unique("gc-pool");
    let manifest = format!(
        "apiVersion: ipam.rs/v1alpha1\nkind: IPPool\nmetadata: {{name: {pool}}}\n\
         spec: {{subnet: 'fd45:{id:x}::/120', ips: ['fd45:{id:x}::10-fd45:{id:x}::40']}}\n",
        id = std::process::id() % 0xffff
    );
    let bin = Path::new(env!("CARGO_BIN_EXE_ipamctl"));
    let applied =
        ipam_test_support::ipamctl_on_cluster(bin, &k, &ns, &["apply", "-f", "-"], &manifest);
    assert_eq!(applied.0, 0, "{}", applied.2);

    for (name, on) in [
        ("live", node.as_str()),
        ("recreated", node.as_str()),
        ("done", node.as_str()),
        ("stranded", missing_node.as_str()),
    ] {
        kubectl_ok(&k, &["apply", "-f", "-"], &pod_manifest(&ns, name, on));
    }
    // kubectl 1.20 patches no subresource: the status is replaced through the raw API.
    let pod = kubectl_ok(&k, &["get", "pod", "done", "-n", &ns, "-o", "json"], "");
    let mut pod: serde_json::Value = serde_json::from_str(&pod).unwrap();
    pod["status"]["phase"] = "Succeeded".into();
    let status_path = format!("/api/v1/namespaces/{ns}/pods/done/status");
    kubectl_ok(
        &k,
        &["replace", "--raw", &status_path, "-f", "-"],
        &pod.to_string(),
    );
    let uid = |pod: &str| Some(uid_of(&k, &ns, pod));

    let store = ipam_kube::KubeStore::connect(&ipam_kube::KubeOptions {
        kubeconfig: Some(k.clone()),
        namespace: ns.clone(),
        ..ipam_kube::KubeOptions::default()
    })
    .unwrap();
    let store = std::sync::Arc::new(store);
    let ipam = Ipam::new(store.clone());
    // The plugin of a node that is not Ready (the test's Node reports no condition at all).
    let on_unready_node = Ipam::with_config(
        store,
        ipam_core::Config {
            node: Some(testkit::name(&node)),
            ..ipam_core::Config::default()
        },
    );
    let mut addresses = std::collections::BTreeMap::new();
    for (id, pod) in [
        ("a-live", Some(("live", uid("live")))),
        ("a-live-no-uid", Some(("live", None))),
        ("a-no-pod", None),
        (
            "a-gone",
            Some((
                "gone",
                Some("0e0e0e0e-0000-4000-8000-000000000000".to_owned()),
            )),
        ),
        (
            "a-recreated",
            Some((
                "recreated",
                Some("0e0e0e0e-0000-4000-8000-000000000001".to_owned()),
            )),
        ),
        ("a-done", Some(("done", uid("done")))),
        ("a-stranded", Some(("stranded", uid("stranded")))),
    ] {
        let mut request =
            Request::new(testkit::owner(id), "gc-test").slot(Slot::any_of([testkit::name(&pool)]));
        if let Some((name, uid)) = pod {
            request = request.pod(PodRef {
                namespace: Some(ns.clone()),
                name: name.to_owned(),
                uid,
                statefulset: None,
            });
        }
        let granted = block_on(ipam.allocate(&request)).expect("ADD");
        addresses.insert(id, granted[0].allocation.address.to_string());
    }

    // Its Pod is gone, but its sandbox may still run on the node that is not Ready: kept.
    let request = Request::new(testkit::owner("a-gone-unready"), "gc-test")
        .slot(Slot::any_of([testkit::name(&pool)]))
        .pod(PodRef {
            namespace: Some(ns.clone()),
            name: "gone-too".to_owned(),
            uid: Some("0e0e0e0e-0000-4000-8000-000000000002".to_owned()),
            statefulset: None,
        });
    block_on(on_unready_node.allocate(&request)).expect("ADD on the node that is not Ready");
    addresses.insert("a-gone-unready", String::new());

    let (status, out, err) = ipamctl(&k, &ns, &["gc", "--dry-run", "-o", "json"]);
    assert_eq!(status, 0, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut got: Vec<(String, String, String)> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["address"].as_str().unwrap().to_owned(),
                i["reason"].as_str().unwrap().to_owned(),
                i["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    let recreated_uid = uid_of(&k, &ns, "recreated");
    let mut want = vec![
        (
            addresses["a-gone"].clone(),
            "podGone".to_owned(),
            "the Pod no longer exists".to_owned(),
        ),
        (
            addresses["a-recreated"].clone(),
            "otherPod".to_owned(),
            format!("the Pod of this name is another one (UID {recreated_uid})"),
        ),
        (
            addresses["a-done"].clone(),
            "finished".to_owned(),
            "the Pod has Succeeded".to_owned(),
        ),
        (
            addresses["a-stranded"].clone(),
            "nodeGone".to_owned(),
            format!("the Pod's node {missing_node} no longer exists"),
        ),
    ];
    want.sort();
    assert_eq!(got, want, "{out}");
    let item = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["reason"] == "otherPod")
        .unwrap();
    assert_eq!(item["podName"], "recreated");
    assert_eq!(item["currentUid"], recreated_uid.as_str());
    assert_eq!(
        item["containerID"],
        testkit::owner("a-recreated").container_id()
    );

    // The table: one row per leak, the reason as a sentence.
    let (status, table, err) = ipamctl(&k, &ns, &["gc", "--dry-run"]);
    assert_eq!((status, err.as_str()), (0, ""));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    assert!(
        lines[0].starts_with("ADDRESS") && lines[0].ends_with("REASON"),
        "{table}"
    );
    assert!(
        table.contains(&format!("{ns}/gone")) && table.contains("the Pod has Succeeded"),
        "{table}"
    );

    // Nothing was released: a dry run.
    assert_eq!(block_on(ipam.allocations(None)).unwrap().len(), 8);

    // A store with nothing leaked says so.
    let empty = ipam_test_support::namespace(&k, "gc-empty");
    let (status, out, err) = ipamctl(&k, &empty, &["gc", "--dry-run"]);
    assert_eq!(
        (status, out.as_str(), err.as_str()),
        (0, "", "No leaked allocations found\n")
    );

    for id in addresses.keys() {
        block_on(ipam.release(&testkit::owner(id), None)).unwrap();
    }
    kubectl_ok(&k, &["delete", "ippool", &pool], "");
    kubectl_ok(&k, &["delete", "node", &node], "");
    kubectl_ok(
        &k,
        &["delete", "namespace", &ns, &empty, "--wait=false"],
        "",
    );
}
