//! Objects too large for the API server's etcd, against a real kube-apiserver: the store
//! states its limit, so the engine refuses such a record before writing anything; and when
//! the server refuses one itself, the refusal is permanent, not retried as if it might pass.
//!
//! The cluster is the one `IPAM_TEST_KUBECONFIG` names. Without it the tests say so and
//! pass, except under `CI=true`, where a missing cluster is a failure.

mod common;

use ipam_core::backend::{Expect, Key, Record, Transaction};
use ipam_core::testkit::reserved;
use ipam_core::{Error, Ipam, ReservedIp, Store, StoreError};
use ipam_kube::{KubeStore, ETCD_REQUEST_LIMIT, MAX_OBJECT_BYTES};

fn fresh() -> Option<KubeStore> {
    common::fresh_store("size", "s")
}

/// A ReservedIP of `n` single addresses: about 15 bytes of JSON each.
fn many(name: &str, n: u32) -> ReservedIp {
    let ips: Vec<String> = (0..n)
        .map(|i| {
            let a = 0x0a00_0000 + 2 * i;
            std::net::Ipv4Addr::from(a).to_string()
        })
        .collect();
    let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
    reserved(name, &ips)
}

fn size_of(store: &KubeStore, r: &ReservedIp) -> u64 {
    let key = Key::ReservedIp(r.name().clone());
    store
        .record_size(&key, &Record::ReservedIp(r.clone()))
        .expect("the Kubernetes store has a limit")
        .size
}

#[test]
fn an_apply_with_an_object_above_the_limit_is_refused_before_anything_is_written() {
    let Some(store) = fresh() else { return };
    let ipam = Ipam::new(store);
    // 2 MB, as in the report: the small object came first and was created.
    let huge = many("r-huge", 145_000);
    let size = size_of(ipam.store(), &huge);
    assert!(size > 2_000_000, "{size}");
    let err = pollster::block_on(ipam.apply_all(&[reserved("r-asmall", &["10.9.0.1"]), huge], &[]))
        .unwrap_err();
    let Error::Store(StoreError::TooLarge {
        key,
        size: Some(said),
        limit,
        ..
    }) = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(
        (key.as_str(), *said, *limit),
        ("reservedip/r-huge", size, MAX_OBJECT_BYTES)
    );
    assert!(
        err.to_string().starts_with(&format!(
            "store refuses reservedip/r-huge: it would be {size} bytes as stored, more than the {MAX_OBJECT_BYTES} the store takes per record (as a Kubernetes object; etcd takes at most 1.5 MiB"
        )),
        "{err}"
    );
    assert!(pollster::block_on(ipam.reserved_ips()).unwrap().is_empty());
}

/// The margin below etcd's limit is enough: an object just below the store's limit is
/// stored.
#[test]
fn an_object_just_below_the_limit_is_stored() {
    let Some(store) = fresh() else { return };
    let mut n = 90_000;
    let mut r = many("r-edge", n);
    while size_of(&store, &r) + 64 < MAX_OBJECT_BYTES {
        n += ((MAX_OBJECT_BYTES - size_of(&store, &r)) / 16).max(1) as u32;
        r = many("r-edge", n);
    }
    while size_of(&store, &r) > MAX_OBJECT_BYTES {
        n -= 1;
        r = many("r-edge", n);
    }
    let ipam = Ipam::new(store);
    pollster::block_on(ipam.apply_reserved_ip(r)).unwrap();
    assert_eq!(pollster::block_on(ipam.reserved_ips()).unwrap().len(), 1);
}

/// A write the store's own check did not stop (another client's object, a cluster whose
/// etcd takes less): etcd's "request is too large", or the API server's 413 for a body
/// above 3 MiB, is permanent and says so.
#[test]
fn the_servers_refusal_of_a_size_is_permanent() {
    let Some(store) = fresh() else { return };
    for (name, n) in [("r-etcd", 120_000), ("r-body", 260_000)] {
        let r = many(name, n);
        let size = size_of(&store, &r);
        assert!(size > ETCD_REQUEST_LIMIT, "{size}");
        let mut txn = Transaction::new();
        txn.put(
            Key::ReservedIp(r.name().clone()),
            Record::ReservedIp(r),
            Expect::Absent,
        );
        // Straight to the store, past the engine's check.
        let err = pollster::block_on(store.commit(txn)).unwrap_err();
        let StoreError::TooLarge {
            size: None, limit, ..
        } = &err
        else {
            panic!("{name} ({size} bytes): {err:?}");
        };
        assert_eq!(*limit, ETCD_REQUEST_LIMIT);
        let text = err.to_string();
        assert!(text.contains("refused to create"), "{text}");
        assert!(text.contains("1.5 MiB"), "{text}");
    }
}
