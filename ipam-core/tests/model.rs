//! The engine against the kit's model (`ipam_core::testkit::model`): random config edits,
//! applies, reservations, ADD, DEL and GC, on the in-memory store committing atomically and
//! committing one operation at a time, and behind caches (`ReadCache`): one that learns
//! only from reads (always stale after a write) and one that learns its writes too.

use std::sync::Arc;

use ipam_core::testkit::{model, ReadCache};
use ipam_core::MemoryStore;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn atomic_store_matches_the_model(ops in model::ops()) {
        model::check(Arc::new(MemoryStore::new()), &ops)?;
    }

    #[test]
    fn in_order_store_matches_the_model(ops in model::ops()) {
        model::check(Arc::new(MemoryStore::in_order()), &ops)?;
    }

    #[test]
    fn in_order_store_behind_a_stale_cache_matches_the_model(ops in model::ops()) {
        model::check(Arc::new(ReadCache::new(MemoryStore::in_order())), &ops)?;
    }

    #[test]
    fn in_order_store_behind_a_cache_of_its_writes_matches_the_model(ops in model::ops()) {
        model::check(Arc::new(ReadCache::learning_writes(MemoryStore::in_order())), &ops)?;
    }
}
