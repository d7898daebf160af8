//! What the tests against a real API server share.

pub use ipam_test_support::test_cluster as test_kubeconfig;

/// A store of its own on the test API server, or `None` as [`test_kubeconfig`] says: in a new
/// namespace `{what}-PID-N`, with the prefix and label `{tag}PID-N-` for its cluster-scoped
/// objects, so that tests never see each other's pools. Installs this build's CRDs once.
#[allow(dead_code)] // deploy.rs makes its stores as an installation does
pub fn fresh_store(what: &str, tag: &str) -> Option<ipam_kube::KubeStore> {
    store_with(what, tag, false)
}

/// As [`fresh_store`], with the cache a node agent's store keeps
/// ([`ipam_kube::KubeOptions::cache`]).
#[allow(dead_code)] // conformance.rs
pub fn fresh_cached_store(what: &str, tag: &str) -> Option<ipam_kube::KubeStore> {
    store_with(what, tag, true)
}

fn store_with(what: &str, tag: &str, cache: bool) -> Option<ipam_kube::KubeStore> {
    stores_sharing(what, tag, &[cache]).map(|mut v| v.remove(0))
}

/// Stores on one fresh namespace and prefix (as [`fresh_store`] makes them), one per entry of
/// `caches`, each with its own connection and with the node agent's cache or without: what
/// several nodes' agents and plugins share.
#[allow(dead_code)] // agents.rs
pub fn stores_sharing(what: &str, tag: &str, caches: &[bool]) -> Option<Vec<ipam_kube::KubeStore>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let kubeconfig = test_kubeconfig()?;
    let n = COUNT.fetch_add(1, Ordering::SeqCst);
    let run = format!("{}-{}", std::process::id(), n);
    let stores: Vec<ipam_kube::KubeStore> = caches
        .iter()
        .map(|&cache| {
            ipam_kube::KubeStore::connect(&ipam_kube::KubeOptions {
                kubeconfig: Some(kubeconfig.clone()),
                namespace: format!("{what}-{run}"),
                prefix: format!("{tag}{run}-"),
                cache,
                ..ipam_kube::KubeOptions::default()
            })
            .expect("connect to the test API server")
        })
        .collect();
    static CRDS: std::sync::Once = std::sync::Once::new();
    CRDS.call_once(|| pollster::block_on(stores[0].install_crds()).expect("install the CRDs"));
    pollster::block_on(stores[0].ensure_namespace()).expect("create the test namespace");
    Some(stores)
}
