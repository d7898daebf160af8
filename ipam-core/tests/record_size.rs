//! A store with a per-record size limit (Kubernetes: etcd's request size) and the engine: a
//! record above the limit is refused before anything of its transaction is written, and it
//! is not retried, since no retry can make it fit.

use std::sync::Arc;

use ipam_core::testkit::{pool, request, reserved, CountingStore};
use ipam_core::{Config, Error, Ipam, MemoryStore, PodRef, StoreError};

/// Records of at most 2 KiB, applied one by one as a store of single objects does, so that
/// a refusal in the middle of a commit would leave the operations before it applied.
fn limited() -> Arc<CountingStore<MemoryStore>> {
    Arc::new(CountingStore::new(
        MemoryStore::in_order().with_record_limit(2048),
    ))
}

fn engine(store: &Arc<CountingStore<MemoryStore>>) -> Ipam<Arc<CountingStore<MemoryStore>>> {
    Ipam::with_config(
        store.clone(),
        Config {
            seed: Some(1),
            ..Config::default()
        },
    )
}

/// The reservation `r-huge`: 300 single addresses, about 4 KB as a record.
fn huge() -> ipam_core::ReservedIp {
    let ips: Vec<String> = (0..300)
        .map(|i| format!("10.9.{}.{}", i / 200, i % 200))
        .collect();
    let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
    reserved("r-huge", &ips)
}

#[test]
fn an_apply_with_one_record_too_large_writes_nothing_and_is_not_retried() {
    let store = limited();
    let ipam = engine(&store);
    let err = pollster::block_on(ipam.apply_all(
        &[reserved("r-small", &["10.9.9.1"]), huge()],
        &[pool("p", "10.8.0.0/24", &["10.8.0.0/24"])],
    ))
    .unwrap_err();
    let Error::Store(StoreError::TooLarge {
        key,
        size: Some(size),
        limit,
        ..
    }) = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!((key.as_str(), *limit), ("reservedip/r-huge", 2048));
    assert!(*size > 2048, "{size}");
    assert_eq!(
        err.to_string(),
        format!(
            "store refuses reservedip/r-huge: it would be {size} bytes as stored, more than the \
             2048 the store takes per record (the in-memory store's configured limit)"
        )
    );
    // Refused before the first write, and once: the reads of one attempt, no write at all.
    let (_, writes) = store.take();
    assert_eq!(writes, 0);
    assert!(pollster::block_on(ipam.reserved_ips()).unwrap().is_empty());
    assert!(pollster::block_on(ipam.pools()).unwrap().is_empty());
}

#[test]
fn an_allocation_whose_holder_would_make_its_block_too_large_is_refused_at_once() {
    let store = limited();
    let ipam = engine(&store);
    pollster::block_on(ipam.apply_pool(pool("p", "10.8.0.0/24", &["10.8.0.0/24"]))).unwrap();
    // Each holder records a 400-byte Pod name: a few fit in one block of 2 KiB, then the
    // block is full in bytes while it still has free addresses.
    let with_pod = |id: &str| {
        request(id, &["p"]).pod(PodRef {
            namespace: None,
            name: format!("{id}-{}", "x".repeat(400)),
            uid: None,
            statefulset: None,
        })
    };
    let mut granted = 0;
    let err = loop {
        match pollster::block_on(ipam.allocate(&with_pod(&format!("c{granted}")))) {
            Ok(_) => granted += 1,
            Err(e) => break e,
        }
        assert!(granted < 64, "the limit was never reached");
    };
    assert!(granted >= 2, "{granted}");
    assert!(
        matches!(&err, Error::Store(StoreError::TooLarge { key, .. }) if key == "block/10.8.0.0/26"),
        "{err:?}"
    );
    // Nothing of the refused ADD is stored: its owner has no index entry and no address.
    store.take();
    let refused = ipam_core::testkit::owner(&format!("c{granted}"));
    assert!(pollster::block_on(ipam.owner_allocations(&refused))
        .unwrap()
        .is_empty());
    assert_eq!(
        pollster::block_on(ipam.allocations(None)).unwrap().len(),
        granted
    );
    // A holder that fits still gets an address of the same block.
    pollster::block_on(ipam.allocate(&request("small", &["p"]))).unwrap();
}
