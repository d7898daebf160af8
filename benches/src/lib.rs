//! Benchmarks for the workspace: the criterion suites live in `benches/`; [`scale`] is the
//! simulation of a cluster at Kubernetes' limits that `benches/scale.rs` reports.

pub mod scale;
