//! The `ipam-cni` CNI IPAM plugin, as a library so that the binary stays thin and its logic
//! is testable: [`cni`]. The store it names is opened by `ipam-store`.

pub mod cni;
