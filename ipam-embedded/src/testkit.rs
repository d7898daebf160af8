//! The conformance run every embedded backend's tests make (feature `testkit`), written once:
//! `ipam-redb` and `ipam-sled` each call [`embedded_conformance_tests!`](crate::embedded_conformance_tests)
//! with their `Backend`, and so pass the same scenarios and the same property test against
//! the model, each on a fresh store in a temporary directory of its own.

use std::time::Duration;

use ipam_core::testkit::Guarded;

use crate::{Backend, EmbeddedStore, OpenOptions};

#[doc(hidden)]
pub use ipam_core;
#[doc(hidden)]
pub use proptest;

/// A store of backend `B` in a temporary directory of its own, removed after the store is
/// dropped.
pub type Fresh<B> = Guarded<EmbeddedStore<B>, tempfile::TempDir>;

/// A fresh store of backend `B` in a new temporary directory.
pub fn fresh<B: Backend>() -> Fresh<B> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let options = OpenOptions {
        lock_wait: Duration::from_secs(5),
    };
    let store = EmbeddedStore::<B>::open(dir.path(), &options).expect("open a fresh store");
    Guarded::new(store, dir)
}

/// One `#[test]` per scenario of ipam-core's conformance kit
/// ([`conformance_tests!`](ipam_core::conformance_tests)), and the property test
/// `matches_the_model` (48 cases), on fresh stores of the embedded backend `$backend`.
///
/// ```ignore
/// ipam_embedded::embedded_conformance_tests!(ipam_redb::Redb);
/// ```
#[macro_export]
macro_rules! embedded_conformance_tests {
    ($backend:ty) => {
        fn fresh() -> $crate::testkit::Fresh<$backend> {
            $crate::testkit::fresh::<$backend>()
        }

        $crate::testkit::ipam_core::conformance_tests!(fresh());

        $crate::testkit::proptest::proptest! {
            #![proptest_config($crate::testkit::proptest::test_runner::Config {
                cases: 48,
                ..$crate::testkit::proptest::test_runner::Config::default()
            })]

            #[test]
            fn matches_the_model(ops in $crate::testkit::ipam_core::testkit::model::ops()) {
                $crate::testkit::ipam_core::testkit::model::check(
                    ::std::sync::Arc::new(fresh()),
                    &ops,
                )?;
            }
        }
    };
}
