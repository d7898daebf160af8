//! The reproductions of the adversarial report on the Kubernetes store, as they were run: the
//! real plugin and ipamctl against a real kube-apiserver (`testenv/`; `IPAM_TEST_KUBECONFIG`
//! names its admin kubeconfig), objects written with kubectl where the report wrote them so.
//! Each test failed before its fix. Without an API server the tests say so and pass, except
//! under `CI=true`.
//!
//! Cluster-scoped pools are shared by every test of the cluster: each test names its own,
//! and its own subnet.

mod common;

use std::path::Path;
use std::process::Command;

use common::ipamctl_on_cluster as ipamctl;
use common::test_cluster as cluster;
use common::{call, run_with_stdin, unique};
use serde_json::{json, Value};

fn kubectl(kubeconfig: &Path, args: &[&str], stdin: &str) -> (i32, String, String) {
    let kubectl = std::env::var("IPAM_TEST_KUBECTL").unwrap_or_else(|_| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../testenv/kubectl.sh")
            .display()
            .to_string()
    });
    run_with_stdin(
        Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args),
        stdin,
    )
}

/// kubectl that must succeed.
fn kubectl_ok(kubeconfig: &Path, args: &[&str], stdin: &str) -> String {
    let (code, out, err) = kubectl(kubeconfig, args, stdin);
    assert_eq!(code, 0, "kubectl {args:?}: {err}");
    out
}

/// A network `name` on the Kubernetes store of `namespace`, for `node`, drawing from `ipam`.
fn network(kubeconfig: &Path, name: &str, namespace: &str, node: &str, mut ipam: Value) -> Value {
    ipam["type"] = json!("ipam-cni");
    ipam["store"] = json!({"kubernetes": {
        "kubeconfig": kubeconfig.to_str().unwrap(),
        "nodeName": node,
        "namespace": namespace,
    }});
    json!({"cniVersion": "1.1.0", "name": name, "type": "bridge", "ipam": ipam})
}

/// A namespace for the allocation objects of one test (as `deploy/` creates `ipam-rs`).
fn namespace(kubeconfig: &Path) -> String {
    let ns = unique("adv");
    kubectl_ok(kubeconfig, &["create", "namespace", &ns], "");
    ns
}

/// Applies `yaml` with ipamctl to the store of `ns`; panics unless it succeeds.
fn apply(kubeconfig: &Path, ns: &str, yaml: &str) {
    let (status, _, err) = ipamctl(kubeconfig, ns, &["apply", "-f", "-"], yaml);
    assert_eq!(status, 0, "apply: {err}\n{yaml}");
}

/// The address (without prefix) of an ADD that must succeed.
fn add(id: &str, conf: &Value) -> String {
    let reply = call("ADD", id, conf).run().ok();
    reply.addresses()[0]
        .split('/')
        .next()
        .expect("an address")
        .to_owned()
}

/// B1: CNI GC on one node released every other node's allocations of the network, and the
/// next ADD elsewhere got an address still in use. GC releases only what its own node's
/// plugin allocated.
#[test]
fn gc_on_one_node_leaves_other_nodes_alone() {
    let Some(k) = cluster() else { return };
    let ns = namespace(&k);
    let pool = unique("pgc");
    apply(
        &k,
        &ns,
        &format!(
            "{{apiVersion: ipam.rs/v1alpha1, kind: IPPool, metadata: {{name: {pool}}}, \
             spec: {{subnet: 10.91.0.0/24, ips: [10.91.0.1-10.91.0.200]}}}}"
        ),
    );
    let ipam = json!({"ippools": {"ipv4": [pool]}});
    let n1 = network(&k, "ngc", &ns, "worker-1", ipam.clone());
    let n2 = network(&k, "ngc", &ns, "worker-2", ipam);
    let mut on_2 = Vec::new();
    for i in 1..=3 {
        add(&format!("w1-c{i}"), &n1);
        on_2.push(add(&format!("w2-c{i}"), &n2));
    }
    let mut gc1 = n1.clone();
    gc1["cni.dev/valid-attachments"] = json!((1..=3)
        .map(|i| json!({"containerID": format!("w1-c{i}"), "ifname": "eth0"}))
        .collect::<Vec<_>>());
    call("GC", "", &gc1).unset("CNI_CONTAINERID").run().ok();
    let (_, out, err) = ipamctl(&k, &ns, &["get", "allocations", "-o", "json"], "");
    let items: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    let owners: Vec<&str> = items["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["containerID"].as_str().unwrap())
        .collect();
    for i in 1..=3 {
        assert!(owners.contains(&format!("w2-c{i}").as_str()), "{owners:?}");
        assert!(owners.contains(&format!("w1-c{i}").as_str()), "{owners:?}");
    }
    // The next ADD on node 2 gets an address nobody uses.
    let fresh = add("w2-c4", &n2);
    assert!(!on_2.contains(&fresh), "{fresh} is still used on worker-2");
    // Node 1 with nothing left running: its own go, node 2's stay.
    let mut gc1 = n1.clone();
    gc1["cni.dev/valid-attachments"] = json!([]);
    call("GC", "", &gc1).unset("CNI_CONTAINERID").run().ok();
    let (_, out, _) = ipamctl(&k, &ns, &["get", "allocations", "-o", "json"], "");
    let items: Value = serde_json::from_str(&out).unwrap();
    let nodes: Vec<&str> = items["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["node"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(nodes, ["worker-2"; 4], "{items}");
}
