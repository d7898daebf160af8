//! The `ipam-cni` CNI IPAM plugin and the `ipamctl` operator CLI, as a library so that
//! both binaries stay thin and their logic is testable.
//!
//! - [`store`]: picks and opens the store a configuration or a flag names.
//! - [`cni`]: the CNI plugin's commands.
//! - [`ctl`]: the `ipamctl` commands.

pub mod cni;
pub mod ctl;
pub mod store;
