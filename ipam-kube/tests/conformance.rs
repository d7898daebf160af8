//! KubeStore passes the conformance kit and the model's property test unchanged, against a
//! real kube-apiserver (see `testenv/`): each scenario in a namespace of its own, with its
//! own prefix and label for the cluster-scoped IPPools and ReservedIPs.
//!
//! The cluster is the one `IPAM_TEST_KUBECONFIG` names. Without it the tests say so and
//! pass, except under `CI=true`, where a missing cluster is a failure.

mod common;

use std::sync::Arc;

use ipam_core::testkit::model;
use ipam_kube::KubeStore;
use proptest::prelude::*;

fn fresh() -> Option<KubeStore> {
    common::fresh_store("conf", "t")
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
