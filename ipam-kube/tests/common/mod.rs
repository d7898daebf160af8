//! What the tests against a real API server share.

use std::path::PathBuf;

/// The test API server's admin kubeconfig (`IPAM_TEST_KUBECONFIG`), or `None` after saying
/// the tests are skipped; under `CI=true` a missing one is a failure.
pub fn test_kubeconfig() -> Option<PathBuf> {
    let Some(kubeconfig) = std::env::var_os("IPAM_TEST_KUBECONFIG") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "IPAM_TEST_KUBECONFIG is not set: CI must start a test API server (testenv/start.sh)"
        );
        eprintln!("skipped: IPAM_TEST_KUBECONFIG is not set (start one with testenv/start.sh)");
        return None;
    };
    Some(PathBuf::from(kubeconfig))
}
