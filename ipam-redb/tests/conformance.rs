//! redb passes the conformance kit and the model's property test unchanged, each scenario on
//! a fresh store in its own temporary directory: the run every embedded backend makes.

ipam_embedded::embedded_conformance_tests!(ipam_redb::Redb);
