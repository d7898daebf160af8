//! redb passes the conformance kit and the model's property test unchanged, each scenario on
//! a fresh store in its own temporary directory.

use std::sync::Arc;
use std::time::Duration;

use ipam_core::testkit::{model, Guarded};
use ipam_redb::{OpenOptions, RedbStore};
use proptest::prelude::*;

fn fresh() -> Guarded<RedbStore, tempfile::TempDir> {
    let dir = tempfile::tempdir().unwrap();
    let options = OpenOptions {
        lock_wait: Duration::from_secs(5),
    };
    Guarded::new(RedbStore::open(dir.path(), &options).unwrap(), dir)
}

ipam_core::conformance_tests!(fresh());

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn matches_the_model(ops in model::ops()) {
        model::check(Arc::new(fresh()), &ops)?;
    }
}
