//! sled passes the conformance kit and the model's property test unchanged, each scenario on
//! a fresh store in its own temporary directory.

use std::sync::Arc;
use std::time::Duration;

use ipam_core::testkit::{model, Guarded};
use ipam_sled::{OpenOptions, SledStore};
use proptest::prelude::*;

fn fresh() -> Guarded<SledStore, tempfile::TempDir> {
    let dir = tempfile::tempdir().unwrap();
    let options = OpenOptions {
        lock_wait: Duration::from_secs(5),
    };
    Guarded::new(SledStore::open(dir.path(), &options).unwrap(), dir)
}

ipam_core::conformance_tests!(fresh());

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn matches_the_model(ops in model::ops()) {
        model::check(Arc::new(fresh()), &ops)?;
    }
}
