//! The in-memory store passes the conformance kit that every backend must pass.

#[test]
fn memory_store_passes_the_conformance_kit() {
    ipam_core::testkit::run_all(ipam_core::MemoryStore::new);
}
