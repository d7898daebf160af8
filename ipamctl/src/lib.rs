//! `ipamctl`, the operator's CLI, as a library: the binary `src/main.rs` only calls
//! [`main_with`]. The store is opened through `ipam-store`, as the CNI plugin opens it.
//!
//! - [`manifest`]: reads and validates the input of `apply` (our kinds and the seed's
//!   Spiderpool kinds), all of it before anything is applied;
//! - [`commands`]: `apply`, `get`, `delete`, `explain` as functions over an
//!   [`Ipam`](ipam_core::Ipam) on any store;
//! - [`output`]: kubectl-style tables and the JSON/YAML shapes;
//! - [`cli`]: the command line, and opening the store for one command;
//! - [`error`]: the typed errors, each printed as one line.

pub mod cli;
pub mod commands;
pub mod error;
pub mod manifest;
pub mod output;
mod strict;

pub use cli::{main_with, Cli};
pub use error::{CtlError, ManifestError, Origin};
