//! One address, one holder, through the real binaries, across what operators do between
//! calls: editing a network's `ranges`, overlapping pools and inline ranges, networks whose
//! inline pool names collide, moving or narrowing a pool that holds addresses.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::{call, netconf, run_with_stdin, Reply};
use serde_json::{json, Value};

fn add(id: &str, conf: &Value) -> Reply {
    call("ADD", id, conf).run()
}

fn added(id: &str, conf: &Value) -> Vec<String> {
    add(id, conf).ok().addresses()
}

fn ctl(dir: &Path, args: &[&str], stdin: &str) -> (i32, String, String) {
    let ipamctl = common::ipamctl();
    run_with_stdin(
        Command::new(ipamctl).arg("--data-dir").arg(dir).args(args),
        stdin,
    )
}

fn pool_yaml(name: &str, subnet: &str, ips: &str) -> String {
    format!(
        "apiVersion: ipam.rs/v1alpha1\nkind: IPPool\nmetadata:\n  name: {name}\nspec:\n  subnet: {subnet}\n  ips:\n  - {ips}\n"
    )
}

/// Every address held in the store, with its holder, as `ipamctl get allocations -o json`
/// prints them; panics if one is listed twice.
fn holders(dir: &Path) -> BTreeSet<(String, String)> {
    let (status, out, err) = ctl(dir, &["get", "allocations", "-o", "json"], "");
    assert_eq!(status, 0, "{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    let mut seen = BTreeSet::new();
    let mut addresses = BTreeSet::new();
    for item in json["items"].as_array().unwrap() {
        let address = item["address"].as_str().unwrap().to_owned();
        assert!(
            addresses.insert(address.clone()),
            "{address} held twice: {out}"
        );
        seen.insert((address, item["containerID"].as_str().unwrap().to_owned()));
    }
    seen
}

#[test]
fn editing_a_networks_ranges_never_hands_a_held_address_to_another() {
    let dir = tempfile::tempdir().unwrap();
    let range = |start: &str, end: &str| json!({"subnet": "10.7.0.0/24", "rangeStart": start, "rangeEnd": end});
    let v6 = json!({"subnet": "fd07::/120", "rangeStart": "fd07::10", "rangeEnd": "fd07::11"});
    // Dual-stack, one range per set.
    let before = netconf(
        "1.0.0",
        "net1",
        dir.path(),
        json!({"ranges": [[range("10.7.0.10", "10.7.0.11")], [v6]]}),
    );
    let a = added("a", &before);
    assert_eq!(a, ["10.7.0.10/24", "fd07::10/120"]);

    // The IPv4 set grows a second range (its pool is relabelled), the IPv6 set is dropped:
    // the holder keeps its address, the next container gets another one.
    let grown = netconf(
        "1.0.0",
        "net1",
        dir.path(),
        json!({"ranges": [[range("10.7.0.10", "10.7.0.11"), range("10.7.0.20", "10.7.0.20")]]}),
    );
    assert_eq!(added("a", &grown), ["10.7.0.10/24"]);
    let b = added("b", &grown);
    assert_eq!(b, ["10.7.0.11/24"]);
    // Reordered so the new range comes first: still nobody gets a held address.
    let reordered = netconf(
        "1.0.0",
        "net1",
        dir.path(),
        json!({"ranges": [[range("10.7.0.20", "10.7.0.20"), range("10.7.0.10", "10.7.0.11")]]}),
    );
    assert_eq!(added("b", &reordered), ["10.7.0.11/24"]);
    assert_eq!(added("c", &reordered), ["10.7.0.20/24"]);
    let full = add("d", &reordered);
    assert_eq!(full.code(), Some(100), "{full:#?}");
    // The holders as the store has them: four addresses, four holders, none twice.
    let held = holders(dir.path());
    assert_eq!(held.len(), 4, "{held:?}");

    // The range moves to another subnet: the holder gets an address of the new subnet with
    // the new prefix, never its old address with a foreign prefix.
    let moved = netconf(
        "1.0.0",
        "net1",
        dir.path(),
        json!({"ranges": [[{"subnet": "10.8.0.0/16", "rangeStart": "10.8.0.10", "rangeEnd": "10.8.0.10", "gateway": "10.8.0.1"}]]}),
    );
    let reply = add("a", &moved).ok();
    assert_eq!(reply.addresses(), ["10.8.0.10/16"]);
    assert_eq!(reply.json["ips"][0]["gateway"], "10.8.0.1");
    // DEL releases everything the container holds on the network, old and new.
    call("DEL", "a", &moved).run().ok();
    let left: BTreeSet<String> = holders(dir.path()).into_iter().map(|(a, _)| a).collect();
    assert_eq!(left, ["10.7.0.11", "10.7.0.20"].map(String::from).into());
}

#[test]
fn overlapping_pools_are_refused_and_never_share_an_address() {
    let dir = tempfile::tempdir().unwrap();
    let (status, _, err) = ctl(
        dir.path(),
        &["apply", "-f", "-"],
        &pool_yaml("a", "10.9.0.0/24", "10.9.0.10-10.9.0.20"),
    );
    assert_eq!(status, 0, "{err}");
    let (status, out, err) = ctl(
        dir.path(),
        &["apply", "-f", "-"],
        &pool_yaml("b", "10.9.0.0/16", "10.9.0.15-10.9.0.30"),
    );
    assert_eq!(status, 1, "{out}");
    assert!(
        err.contains("\"b\"") && err.contains("\"a\"") && err.contains("10.9.0.15-10.9.0.20"),
        "{err}"
    );
    let (_, out, _) = ctl(dir.path(), &["get", "ippools"], "");
    assert!(!out.contains("\nb "), "{out}");

    // A network whose inline range overlaps one of its ippools: code 7, nothing taken.
    let conf = netconf(
        "1.0.0",
        "net1",
        dir.path(),
        json!({"ranges": [[{"subnet": "10.9.0.0/24", "rangeStart": "10.9.0.18", "rangeEnd": "10.9.0.25"}]],
               "ippools": {"ipv4": ["a"]}}),
    );
    let refused = add("c1", &conf);
    assert_eq!(refused.code(), Some(7), "{refused:#?}");
    assert!(refused.msg().contains("\"a\""), "{refused:#?}");
    assert!(holders(dir.path()).is_empty());

    // An inline range of another network over the pool shares its addresses: each is
    // handed out once, whichever network asks.
    let other = netconf(
        "1.0.0",
        "net2",
        dir.path(),
        json!({"ranges": [[{"subnet": "10.9.0.0/24", "rangeStart": "10.9.0.10", "rangeEnd": "10.9.0.12"}]]}),
    );
    let pooled = netconf(
        "1.0.0",
        "net3",
        dir.path(),
        json!({"ippools": {"ipv4": ["a"]}}),
    );
    let mut got = BTreeSet::new();
    let mut used_up = 0;
    for i in 0..3 {
        for (id, conf) in [(format!("x{i}"), &other), (format!("y{i}"), &pooled)] {
            let reply = add(&id, conf);
            if reply.status == Some(0) {
                assert!(got.insert(reply.addresses()[0].clone()), "{reply:#?}");
            } else {
                assert_eq!(reply.code(), Some(100), "{reply:#?}");
                used_up += 1;
            }
        }
    }
    // net2's three addresses went to x0, y0 and x1 (y0 took one of them from the pool):
    // x2 finds its range used up.
    assert_eq!((got.len(), used_up), (5, 1), "{got:?}");
    assert_eq!(holders(dir.path()).len(), 5);
}

#[test]
fn networks_whose_inline_pool_names_collide_stay_apart() {
    let dir = tempfile::tempdir().unwrap();
    // Network `x` with a two-range set names its pools `x-0-0`, `x-0-1`; network `x-0` with
    // one range names its pool `x-0-0` too.
    let x = netconf(
        "1.0.0",
        "x",
        dir.path(),
        json!({"ranges": [[{"subnet": "10.10.0.0/24", "rangeStart": "10.10.0.10", "rangeEnd": "10.10.0.10"},
                            {"subnet": "10.10.1.0/24", "rangeStart": "10.10.1.10", "rangeEnd": "10.10.1.10"}]]}),
    );
    let x0 = netconf(
        "1.0.0",
        "x-0",
        dir.path(),
        json!({"ranges": [[{"subnet": "10.20.0.0/24", "rangeStart": "10.20.0.10", "rangeEnd": "10.20.0.11"}]]}),
    );
    assert_eq!(added("a", &x), ["10.10.0.10/24"]);
    assert_eq!(added("b", &x0), ["10.20.0.10/24"]);
    assert_eq!(added("c", &x), ["10.10.1.10/24"]);
    assert_eq!(added("d", &x0), ["10.20.0.11/24"]);
    // Each network's repeat still answers with its own subnet.
    assert_eq!(added("a", &x), ["10.10.0.10/24"]);
    assert_eq!(added("b", &x0), ["10.20.0.10/24"]);
    assert_eq!(holders(dir.path()).len(), 4);
}

#[test]
fn a_pool_holding_addresses_keeps_its_subnet_and_narrowing_keeps_counts_exact() {
    let dir = tempfile::tempdir().unwrap();
    let apply = |yaml: &str| ctl(dir.path(), &["apply", "-f", "-"], yaml);
    assert_eq!(
        apply(&pool_yaml("p", "10.11.0.0/24", "10.11.0.10-10.11.0.13")).0,
        0
    );
    let conf = netconf(
        "1.0.0",
        "net1",
        dir.path(),
        json!({"ippools": {"ipv4": ["p"]}}),
    );
    assert_eq!(added("a", &conf), ["10.11.0.10/24"]);

    for (subnet, ips) in [("10.12.0.0/24", "10.12.0.10"), ("fd11::/120", "fd11::10")] {
        let (status, _, err) = apply(&pool_yaml("p", subnet, ips));
        assert_eq!(status, 1, "{subnet}");
        assert!(
            err.contains("spec.subnet") && err.contains("holds 1"),
            "{err}"
        );
    }
    // The holder's repeat still answers with the pool's own prefix.
    assert_eq!(added("a", &conf), ["10.11.0.10/24"]);

    // Narrowed past the held address: it stays held and counted as allocated; available
    // counts the addresses nobody holds.
    assert_eq!(
        apply(&pool_yaml("p", "10.11.0.0/24", "10.11.0.11-10.11.0.13")).0,
        0
    );
    let counts = || {
        let (_, out, _) = ctl(dir.path(), &["get", "ippool", "p", "-o", "json"], "");
        let json: Value = serde_json::from_str(&out).unwrap();
        let s = &json["status"];
        [
            s["totalIPCount"].as_u64().unwrap(),
            s["reservedIPCount"].as_u64().unwrap(),
            s["allocatedIPCount"].as_u64().unwrap(),
            s["availableIPCount"].as_u64().unwrap(),
        ]
    };
    assert_eq!(counts(), [3, 0, 1, 3]);
    assert_eq!(added("a", &conf), ["10.11.0.10/24"]);
    assert_eq!(added("b", &conf), ["10.11.0.11/24"]);
    assert_eq!(counts(), [3, 0, 2, 2]);
}
