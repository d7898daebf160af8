//! KubeStore passes the conformance kit and the model's property test unchanged, against a
//! real kube-apiserver (see `testenv/`): each scenario in a namespace of its own, with its
//! own prefix and label for the cluster-scoped IPPools and ReservedIPs; and again with the
//! node agent's cache on (`cached`), whose attempts start from what the store last read and
//! wrote.
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

mod cached {
    use super::*;

    fn cached() -> Option<KubeStore> {
        common::fresh_cached_store("cc", "c")
    }

    ipam_core::conformance_tests!(optional: cached());

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

        #[test]
        fn matches_the_model(ops in model::ops()) {
            if let Some(store) = cached() {
                model::check(Arc::new(store), &ops)?;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn matches_the_model(ops in model::ops()) {
        if let Some(store) = fresh() {
            model::check(Arc::new(store), &ops)?;
        }
    }
}
