//! The in-memory store passes the conformance kit that every backend must pass, both as an
//! atomic store and as a store that applies each operation on its own, in order (the way a
//! store of single objects such as Kubernetes commits).

mod atomic {
    ipam_core::conformance_tests!(ipam_core::MemoryStore::new());
}

mod in_order {
    ipam_core::conformance_tests!(ipam_core::MemoryStore::in_order());
}
