//! sled passes the conformance kit unchanged.

use std::time::Duration;

use ipam_sled::{OpenOptions, SledStore};

#[test]
fn sled_store_passes_the_conformance_kit() {
    let root = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    ipam_core::testkit::run_all(|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        SledStore::open(
            &root.path().join(n.to_string()),
            &OpenOptions {
                lock_wait: Duration::from_secs(5),
            },
        )
        .unwrap()
    });
}
