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

use common::ipamctl_on_cluster as ipamctl;
use common::test_cluster as cluster;
use common::{call, kubectl_ok, unique};
use serde_json::{json, Value};

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

/// A namespace for the allocation objects of one test.
fn namespace(kubeconfig: &Path) -> String {
    common::namespace(kubeconfig, "adv")
}

/// Applies `yaml` with ipamctl to the store of `ns`; panics unless it succeeds.
fn apply(kubeconfig: &Path, ns: &str, yaml: &str) {
    let (status, _, err) = ipamctl(kubeconfig, ns, &["apply", "-f", "-"], yaml);
    assert_eq!(status, 0, "apply: {err}\n{yaml}");
}

/// An IPPool `name` of `subnet` handing out `ips`, as a manifest.
fn ippool(name: &str, subnet: &str, ips: &str) -> String {
    format!(
        "{{apiVersion: ipam.rs/v1alpha1, kind: IPPool, metadata: {{name: {name}}}, \
         spec: {{subnet: {subnet}, ips: [{ips}]}}}}"
    )
}

/// A ReservedIP `name` with `ips` (YAML flow text, which kubectl 1.20 reads only as JSON).
fn reservedip_json(name: &str, ips: &str) -> String {
    flow_to_json(&format!(
        "{{apiVersion: ipam.rs/v1alpha1, kind: ReservedIP, metadata: {{name: {name}}}, spec: {{ips: {ips}}}}}"
    ))
}

/// YAML flow text as JSON (kubectl 1.20 takes a document that starts with `{` for JSON).
fn flow_to_json(flow: &str) -> String {
    let value: Value = serde_yaml_ng::from_str(flow).unwrap_or_else(|e| panic!("{e}: {flow}"));
    value.to_string()
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
    let _turn = one_at_a_time();
    let ns = namespace(&k);
    let pool = unique("pgc");
    apply(
        &k,
        &ns,
        &ippool(&pool, "10.91.0.0/24", "10.91.0.1-10.91.0.200"),
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

/// An invalid ReservedIP stops every allocation while it exists (it is cluster-wide, and
/// what it reserves cannot be known): the tests of this file that allocate take turns with
/// the ones that write one.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// B2: a ReservedIP with one malformed entry, applied with kubectl, was silently ignored and
/// its addresses handed out, explicit requests included; ipamctl said "not found" and
/// "allocatable", and could neither fix nor delete it. Now it fails closed, is named
/// everywhere, and ipamctl repairs and deletes it.
#[test]
fn an_invalid_reservedip_fails_closed_and_can_be_repaired() {
    let Some(k) = cluster() else { return };
    let _turn = one_at_a_time();
    let ns = namespace(&k);
    let (pool, guard) = (unique("p-guard"), unique("r-guard"));
    apply(
        &k,
        &ns,
        &ippool(&pool, "10.93.0.0/24", "10.93.0.10-10.93.0.13"),
    );
    let conf = network(
        &k,
        "n-guard",
        &ns,
        "node1",
        json!({"ippools": {"ipv4": [pool]}}),
    );
    for bad in [
        "[10.93.0.10-10.93.0.12, garbage]",
        "[10.93.0.10-10.93.0.12, 010.93.0.13]",
        "['10.93.0.10 - 10.93.0.12']",
        "[10.93.0.10-10.93.0.12, 10.93.0.5/24]",
        "[10.93.0.10-10.93.0.12, 'fd00::1']",
    ] {
        kubectl_ok(&k, &["apply", "-f", "-"], &reservedip_json(&guard, bad));
        let a = call("ADD", "g-1", &conf).run();
        assert_eq!(a.code(), Some(5), "{bad}: {a:#?}");
        assert!(
            a.msg().contains(&format!("reservedips/{guard} is invalid")),
            "{a:#?}"
        );
        let a = call("ADD", "g-2", &conf)
            .var("CNI_ARGS", "IP=10.93.0.11")
            .run();
        assert_eq!(a.code(), Some(5), "{bad}: {a:#?}");
        let (status, _, err) = ipamctl(&k, &ns, &["get", "reservedip", &guard], "");
        assert_eq!(status, 1);
        assert!(err.contains("is invalid") && err.contains("spec"), "{err}");
        let (status, _, err) = ipamctl(&k, &ns, &["get", "reservedips"], "");
        assert_eq!(status, 0, "{err}");
        assert!(
            err.contains(&format!("warning: reservedips/{guard} is invalid")),
            "{err}"
        );
        let (_, out, _) = ipamctl(&k, &ns, &["explain", "10.93.0.11"], "");
        assert!(
            out.contains("not allocatable") && out.contains("stopped"),
            "{out}"
        );
    }
    // ipamctl repairs it: the valid entries reserve again, and allocation resumes.
    let fixed = format!(
        "{{apiVersion: ipam.rs/v1alpha1, kind: ReservedIP, metadata: {{name: {guard}}}, \
         spec: {{ips: [10.93.0.10-10.93.0.12]}}}}"
    );
    let (status, out, err) = ipamctl(&k, &ns, &["apply", "-f", "-"], &fixed);
    assert_eq!(
        (status, out.as_str()),
        (0, format!("reservedip/{guard} configured\n").as_str()),
        "{err}"
    );
    assert_eq!(add("g-1", &conf), "10.93.0.13");
    let a = call("ADD", "g-2", &conf)
        .var("CNI_ARGS", "IP=10.93.0.11")
        .run();
    assert_eq!(a.code(), Some(101), "{a:#?}");
    // And deletes it, invalid or not.
    kubectl_ok(
        &k,
        &["apply", "-f", "-"],
        &reservedip_json(&guard, "[garbage]"),
    );
    let (status, out, err) = ipamctl(&k, &ns, &["delete", "reservedip", &guard], "");
    assert_eq!(
        (status, out),
        (0, format!("reservedip/{guard} deleted\n")),
        "{err}"
    );
    assert_eq!(add("g-2", &conf), "10.93.0.10");
}

/// B2, the copy: a ReservedIP copied with `kubectl get -o yaml`, renamed and applied carries
/// the original's `ipam.rs/name` annotation. It is read under its own name and counts.
#[test]
fn a_renamed_copy_of_a_reservedip_counts_under_its_own_name() {
    let Some(k) = cluster() else { return };
    let _turn = one_at_a_time();
    let ns = namespace(&k);
    let (pool, orig, copy) = (unique("p-copy"), unique("r-orig"), unique("r-copy"));
    apply(
        &k,
        &ns,
        &format!(
            "{}\n---\n{}",
            ippool(&pool, "10.94.0.0/24", "10.94.0.10-10.94.0.13"),
            reservedip_json(&orig, "[10.94.0.10]")
        ),
    );
    let yaml = kubectl_ok(&k, &["get", "reservedip", &orig, "-o", "json"], "");
    let mut obj: Value = serde_json::from_str(&yaml).unwrap();
    assert_eq!(obj["metadata"]["annotations"]["ipam.rs/name"], json!(orig));
    obj["metadata"]["name"] = json!(copy);
    obj["spec"]["ips"] = json!(["10.94.0.11"]);
    for field in [
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "managedFields",
    ] {
        obj["metadata"].as_object_mut().unwrap().remove(field);
    }
    kubectl_ok(&k, &["apply", "-f", "-"], &obj.to_string());
    let conf = network(
        &k,
        "n-copy",
        &ns,
        "node1",
        json!({"ippools": {"ipv4": [pool]}}),
    );
    let a = call("ADD", "c-1", &conf)
        .var("CNI_ARGS", "IP=10.94.0.11")
        .run();
    assert_eq!(a.code(), Some(101), "{a:#?}");
    assert!(a.msg().contains(&copy), "{a:#?}");
    assert_eq!(add("c-2", &conf), "10.94.0.12");
    ipamctl(&k, &ns, &["delete", "reservedip", &orig], "");
    ipamctl(&k, &ns, &["delete", "reservedip", &copy], "");
}

/// B5: one malformed IPAMBlock or IPAMOwner broke GC, STATUS, `get ippools` and `get
/// allocations` for every network. Now it affects only what it covers, and is named.
#[test]
fn a_malformed_block_or_owner_affects_only_what_it_covers() {
    let Some(k) = cluster() else { return };
    let _turn = one_at_a_time();
    let ns = namespace(&k);
    let (pe, pm) = (unique("pe"), unique("pm"));
    apply(
        &k,
        &ns,
        &format!(
            "{}\n---\n{}",
            ippool(&pe, "10.95.0.0/24", "10.95.0.0/25"),
            ippool(&pm, "10.96.0.0/24", "10.96.0.0/26")
        ),
    );
    let ne = network(&k, "n-e", &ns, "node1", json!({"ippools": {"ipv4": [pe]}}));
    let nm = network(&k, "n-m", &ns, "node1", json!({"ippools": {"ipv4": [pm]}}));
    let held = add("e-1", &ne);
    add("e-2", &ne);
    add("m-1", &nm);
    // Break the first holder of the block of e-1's address.
    let first: std::net::Ipv4Addr = held.parse().unwrap();
    let block = format!("b4-{:08x}", u32::from(first) & !63);
    let block = block.as_str();
    let text = kubectl_ok(
        &k,
        &["-n", &ns, "get", "ipamblock", block, "-o", "json"],
        "",
    );
    let mut obj: Value = serde_json::from_str(&text).unwrap();
    obj["spec"]["holders"][0] = json!(format!("{held} e-1"));
    kubectl_ok(&k, &["replace", "-f", "-"], &obj.to_string());

    // The other network goes on: GC, STATUS, ADD, DEL.
    let mut gc = nm.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "m-1", "ifname": "eth0"}]);
    call("GC", "", &gc).unset("CNI_CONTAINERID").run().ok();
    call("STATUS", "", &nm).unset("CNI_CONTAINERID").run().ok();
    add("m-2", &nm);
    call("DEL", "m-2", &nm).run().ok();
    // The listings go on, and name the block.
    for what in ["ippools", "allocations"] {
        let (status, out, err) = ipamctl(&k, &ns, &["get", what], "");
        assert_eq!(status, 0, "{what}: {err}");
        assert!(out.contains(&pm), "{what}: {out}");
        if what == "allocations" {
            assert!(
                err.contains(&format!("ipamblocks/{block} is invalid: spec.holders[0]")),
                "{err}"
            );
        }
    }
    // What the block covers is neither handed out nor released.
    let a = call("ADD", "e-3", &ne)
        .var("CNI_ARGS", &format!("IP={held}"))
        .run();
    assert_eq!(a.code(), Some(5), "{a:#?}");
    assert!(a.msg().contains(block), "{a:#?}");
    let d = call("DEL", "e-2", &ne).run();
    assert_eq!(d.code(), Some(5), "{d:#?}");
    // Its pool's other blocks still serve; the block counts as full.
    let fresh = add("e-4", &ne);
    assert!(fresh.starts_with("10.95.0."), "{fresh}");

    // A malformed owner index (m-1's, of the other network): a GC of this network skips it,
    // releases what it can (e-4), and names the owners the bad block keeps it from.
    let owners = kubectl_ok(&k, &["-n", &ns, "get", "ipamowners", "-o", "json"], "");
    let owners: Value = serde_json::from_str(&owners).unwrap();
    let mut m1 = owners["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["spec"]["containerID"] == json!("m-1"))
        .expect("m-1's index")
        .clone();
    m1["spec"]["held"][0]["address"] = json!("not-an-ip");
    kubectl_ok(&k, &["replace", "-f", "-"], &m1.to_string());
    let mut gc = ne.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    let g = call("GC", "", &gc).unset("CNI_CONTAINERID").run();
    assert_eq!(g.code(), Some(5), "{g:#?}");
    assert!(
        g.msg()
            .contains("released 1 allocation(s) but could not release 2 owner(s)")
            && g.msg().contains(block)
            && !g.msg().contains("m-1"),
        "{g:#?}"
    );
    let (_, out, _) = ipamctl(&k, &ns, &["get", "allocations"], "");
    assert!(!out.contains(&fresh) && out.contains("m-1"), "{out}");
    let d = call("DEL", "m-1", &nm).run();
    assert_eq!(d.code(), Some(5), "{d:#?}");
    assert!(d.msg().contains("spec.held[0].address"), "{d:#?}");
}

/// B8: ipamctl could neither fix nor delete an invalid IPPool written with kubectl.
#[test]
fn an_invalid_pool_is_named_and_ipamctl_repairs_and_deletes_it() {
    let Some(k) = cluster() else { return };
    let _turn = one_at_a_time();
    let ns = "ipam-rs";
    let pbad = unique("pbad");
    let bad = format!(
        "{{apiVersion: ipam.rs/v1alpha1, kind: IPPool, metadata: {{name: {pbad}}}, \
         spec: {{subnet: 10.97.0.0/24, ips: [10.97.0.10-10.97.0.20], ipVersion: 200}}}}"
    );
    kubectl_ok(&k, &["apply", "-f", "-"], &flow_to_json(&bad));
    let conf = network(
        &k,
        "n-bad",
        ns,
        "node1",
        json!({"ippools": {"ipv4": [pbad]}}),
    );
    let a = call("ADD", "b-1", &conf).run();
    assert_eq!(a.code(), Some(5), "{a:#?}");
    assert!(a.msg().contains("spec.ipVersion"), "{a:#?}");
    let (status, _, err) = ipamctl(&k, ns, &["get", "ippool", &pbad], "");
    assert_eq!(status, 1);
    assert!(err.contains("spec.ipVersion"), "{err}");
    let (status, _, err) = ipamctl(&k, ns, &["get", "ippools"], "");
    assert_eq!(status, 0, "{err}");
    assert!(err.contains(&format!("ippools/{pbad} is invalid")), "{err}");
    let good = bad.replace(", ipVersion: 200", "");
    let (status, out, err) = ipamctl(&k, ns, &["apply", "-f", "-"], &good);
    assert_eq!(
        (status, out),
        (0, format!("ippool/{pbad} configured\n")),
        "{err}"
    );
    assert_eq!(add("b-1", &conf), "10.97.0.10");
    call("DEL", "b-1", &conf).run().ok();
    kubectl_ok(&k, &["apply", "-f", "-"], &flow_to_json(&bad));
    let (status, out, err) = ipamctl(&k, ns, &["delete", "ippool", &pbad], "");
    assert_eq!(
        (status, out),
        (0, format!("ippool/{pbad} deleted\n")),
        "{err}"
    );
}

/// B3: one IPPool used from two store namespaces handed out the same address twice (pools
/// are cluster-scoped, blocks per namespace). A pool belongs to one namespace's store.
#[test]
fn a_pool_is_used_from_one_store_namespace_only() {
    let Some(k) = cluster() else { return };
    let _turn = one_at_a_time();
    let (nsa, nsb) = (namespace(&k), namespace(&k));
    let pool = unique("pns");
    apply(
        &k,
        &nsa,
        &ippool(&pool, "10.92.0.0/24", "10.92.0.10-10.92.0.20"),
    );
    let ipam = json!({"ippools": {"ipv4": [pool]}});
    let a = add("nsa-1", &network(&k, "nsa", &nsa, "node1", ipam.clone()));
    assert_eq!(a, "10.92.0.10");
    let b = call("ADD", "nsb-1", &network(&k, "nsb", &nsb, "node1", ipam)).run();
    assert_eq!(b.code(), Some(5), "{b:#?}");
    assert!(
        b.details()
            .contains(&format!("belongs to the store in namespace {nsa:?}")),
        "{b:#?}"
    );
    // Nor can the other store take it over.
    let (status, _, err) = ipamctl(
        &k,
        &nsb,
        &["apply", "-f", "-"],
        &ippool(&pool, "10.92.0.0/24", "10.92.0.10-10.92.0.30"),
    );
    assert_eq!(status, 1);
    assert!(err.contains("belongs to the store in namespace"), "{err}");
    let (_, out, _) = ipamctl(&k, &nsb, &["get", "ippools"], "");
    assert!(!out.contains(&pool), "{out}");
}

/// B7: `delete ippool --force` with ADDs running let holders of the deleted pool survive
/// (45 in the report). The pool is marked first, and an ADD that took from it meanwhile gives
/// back: no holder of the deleted pool remains, and every ADD either succeeded before the
/// deletion released it, or failed naming the pool.
#[test]
fn a_forced_deletion_under_adds_leaves_no_holder_of_the_pool() {
    let Some(k) = cluster() else { return };
    let _turn = one_at_a_time();
    let ns = namespace(&k);
    let pool = unique("pfr");
    apply(
        &k,
        &ns,
        &ippool(&pool, "10.98.0.0/24", "10.98.0.1-10.98.0.250"),
    );
    let conf = network(
        &k,
        "n-fr",
        &ns,
        "node1",
        json!({"ippools": {"ipv4": [pool]}}),
    );
    for i in 0..20 {
        add(&format!("fr-pre-{i}"), &conf);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let adders: Vec<_> = (0..3)
        .map(|t| {
            let (conf, stop) = (conf.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut outcomes = Vec::new();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let r = call("ADD", &format!("fr-{t}-{i}"), &conf).run();
                    outcomes.push((r.code(), r.msg().to_owned()));
                    i += 1;
                }
                outcomes
            })
        })
        .collect();
    let (status, out, err) = ipamctl(&k, &ns, &["delete", "ippool", &pool, "--force"], "");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let outcomes: Vec<_> = adders.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert!(!outcomes.is_empty(), "no ADD ran during the deletion");
    assert_eq!(
        (status, out),
        (0, format!("ippool/{pool} deleted\n")),
        "{err}"
    );
    assert!(err.contains("warning: released "), "{err}");
    for (code, msg) in &outcomes {
        assert!(
            code.is_none() || (*code == Some(7) && msg.contains(&pool)),
            "{code:?} {msg}"
        );
    }
    let (_, out, _) = ipamctl(&k, &ns, &["get", "allocations", "-o", "json"], "");
    let items: Value = serde_json::from_str(&out).unwrap();
    let left: Vec<&Value> = items["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["pool"] == json!(pool))
        .collect();
    assert!(
        left.is_empty(),
        "{} holders of the deleted pool survive: {left:?}",
        left.len()
    );
    // The name is free again, and the subnet too.
    apply(
        &k,
        &ns,
        &ippool(&pool, "10.98.0.0/24", "10.98.0.1-10.98.0.250"),
    );
    assert!(add("fr-after", &conf).starts_with("10.98.0."));
}

/// B10: two `ipamctl apply` of overlapping pools at once were both created (5 of 5 times).
/// Now one of them is refused, naming the other.
#[test]
fn overlapping_pools_applied_at_once_are_never_both_created() {
    let Some(k) = cluster() else { return };
    let _turn = one_at_a_time();
    let ns = namespace(&k);
    for round in 0..5 {
        let (a, b) = (unique("ova"), unique("ovb"));
        let subnet = format!("10.99.{round}.0/24");
        let (ya, yb) = (
            ippool(&a, &subnet, &format!("10.99.{round}.10-10.99.{round}.20")),
            ippool(&b, &subnet, &format!("10.99.{round}.15-10.99.{round}.25")),
        );
        let (k1, ns1, k2, ns2) = (k.clone(), ns.clone(), k.clone(), ns.clone());
        let first = std::thread::spawn(move || ipamctl(&k1, &ns1, &["apply", "-f", "-"], &ya));
        let second = std::thread::spawn(move || ipamctl(&k2, &ns2, &["apply", "-f", "-"], &yb));
        let (r1, r2) = (first.join().unwrap(), second.join().unwrap());
        let created = [r1.0, r2.0].iter().filter(|s| **s == 0).count();
        assert_eq!(created, 1, "round {round}: {r1:?} {r2:?}");
        let refused = if r1.0 == 0 { &r2.2 } else { &r1.2 };
        assert!(refused.contains("overlaps ippool"), "{refused}");
    }
}

/// B14: after a pool's subnet was changed with kubectl, its holders vanished from ALLOCATED
/// (though `get allocations --pool` listed them), and a forced deletion would have missed
/// them. A pool's holders are found wherever they lie.
#[test]
fn a_pool_moved_with_kubectl_still_counts_and_releases_its_holders() {
    let Some(k) = cluster() else { return };
    let _turn = one_at_a_time();
    let ns = "ipam-rs";
    let pool = unique("pmv");
    apply(
        &k,
        ns,
        &ippool(&pool, "10.88.0.0/24", "10.88.0.10-10.88.0.20"),
    );
    let conf = network(
        &k,
        "n-mv",
        ns,
        "node1",
        json!({"ippools": {"ipv4": [pool]}}),
    );
    add("mv-1", &conf);
    add("mv-2", &conf);
    let patch = r#"{"spec":{"subnet":"10.89.0.0/24","ips":["10.89.0.10-10.89.0.20"]}}"#;
    kubectl_ok(
        &k,
        &["patch", "ippool", &pool, "--type=merge", "-p", patch],
        "",
    );
    let (status, out, err) = ipamctl(&k, ns, &["get", "ippool", &pool, "-o", "json"], "");
    assert_eq!(status, 0, "{err}");
    let got: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(got["spec"]["subnet"], json!("10.89.0.0/24"));
    assert_eq!(got["status"]["allocatedIPCount"], json!(2), "{got}");
    let (status, _, err) = ipamctl(&k, ns, &["delete", "ippool", &pool, "--force"], "");
    assert_eq!(status, 0, "{err}");
    assert!(err.contains("released 2 allocation(s)"), "{err}");
}
