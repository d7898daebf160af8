//! Criterion benchmarks for the workspace live in `benches/`; this crate has no library code.
