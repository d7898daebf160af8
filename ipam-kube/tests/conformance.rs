//! KubeStore passes the conformance kit and the model's property test unchanged, against a
//! real kube-apiserver (see `testenv/`): each scenario in a namespace of its own, with its
//! own prefix and label for the cluster-scoped IPPools and ReservedIPs.
//!
//! The cluster is the one `IPAM_TEST_KUBECONFIG` names. Without it the tests say so and
//! pass, except under `CI=true`, where a missing cluster is a failure.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ipam_core::testkit::model;
use ipam_kube::{KubeOptions, KubeStore};
use proptest::prelude::*;

fn fresh() -> Option<KubeStore> {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let kubeconfig = common::test_kubeconfig()?;
    let n = COUNT.fetch_add(1, Ordering::SeqCst);
    let run = format!("{}-{}", std::process::id(), n);
    let store = KubeStore::connect(&KubeOptions {
        kubeconfig: Some(kubeconfig),
        namespace: format!("conf-{run}"),
        prefix: format!("t{run}-"),
        ..KubeOptions::default()
    })
    .expect("connect to the test API server");
    static CRDS: std::sync::Once = std::sync::Once::new();
    CRDS.call_once(|| pollster::block_on(store.install_crds()).expect("install the CRDs"));
    pollster::block_on(store.ensure_namespace()).expect("create the test namespace");
    Some(store)
}

ipam_core::conformance_tests!(optional: fresh());

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn matches_the_model(ops in model::ops()) {
        if let Some(store) = fresh() {
            model::check(Arc::new(store), &ops)?;
        }
    }
}
