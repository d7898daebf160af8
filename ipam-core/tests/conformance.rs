//! The in-memory store passes the conformance kit that every backend must pass, both as an
//! atomic store and as a store that applies each operation on its own, in order (the way a
//! store of single objects such as Kubernetes commits); and behind a cache that learns only
//! from reads, so that every attempt the engine makes from a cache may be stale
//! (`ReadCache`).

mod atomic {
    ipam_core::conformance_tests!(ipam_core::MemoryStore::new());
}

mod in_order {
    ipam_core::conformance_tests!(ipam_core::MemoryStore::in_order());
}

mod behind_a_stale_cache {
    ipam_core::conformance_tests!(ipam_core::testkit::ReadCache::new(
        ipam_core::MemoryStore::new()
    ));
}

mod in_order_behind_a_stale_cache {
    ipam_core::conformance_tests!(ipam_core::testkit::ReadCache::new(
        ipam_core::MemoryStore::in_order()
    ));
}

mod behind_a_cache_of_its_writes {
    ipam_core::conformance_tests!(ipam_core::testkit::ReadCache::learning_writes(
        ipam_core::MemoryStore::in_order()
    ));
}
