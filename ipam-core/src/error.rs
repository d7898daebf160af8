//! Errors. Each carries what its message needs, so that the message alone lets a person act.

use std::fmt;
use std::net::IpAddr;

use crate::addr::Family;
use crate::name::{ObjectName, Owner};
use crate::validation::ValidationError;

/// A failure of a [`Store`](crate::Store) backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A precondition of a commit did not hold: someone else wrote first. The engine
    /// re-reads and retries.
    #[error("concurrent update conflict on {key}")]
    Conflict {
        /// The key whose version did not match.
        key: String,
    },
    /// A failure that may pass: a timeout, a lost response, an overloaded or restarting
    /// server. The engine retries it with backoff, like a conflict; past the bound the
    /// operation fails with [`Error::TryAgainLater`].
    #[error("store temporarily unavailable: {context}: {source}")]
    Transient {
        /// What was being done, and with which server or path.
        context: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The store is held by others past the bounded wait.
    #[error("store busy: {what}; try again later")]
    Busy {
        /// What was waited for, and how long.
        what: String,
    },
    /// Reading or writing the store failed.
    #[error("store I/O error: {context}: {source}")]
    Io {
        /// What was being done, with the path where there is one.
        context: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A record is larger than the store takes. Not retried: it cannot pass. The engine
    /// checks every record of a transaction against [`Store::record_size`](crate::Store)
    /// before it writes the first, so nothing of that transaction is written; a store that
    /// refuses one itself (an API server's etcd) stops there, as at any failed operation.
    #[error("store refuses {key}: {}", too_large_text(.size, .limit, .why))]
    TooLarge {
        /// The record's key (`reservedip/NAME`, `block/10.6.0.0/26`).
        key: String,
        /// Its size as the store would write it, in bytes, where known before writing.
        size: Option<u64>,
        /// The most the store takes per record, in bytes.
        limit: u64,
        /// Where the limit comes from, or what the store said when it refused.
        why: String,
    },
    /// A stored record could not be decoded.
    #[error("store is corrupt: record {key}: {reason}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An object of the store is there but invalid (written around the project's checks,
    /// with kubectl): whatever it covers is not handed out, and it can be shown, replaced
    /// and deleted.
    #[error("{key} is invalid: {reason}; {repair}")]
    Invalid {
        /// The object, as the store names it (`reservedips/r-guard`, `ipamblocks/b4-0a280000`).
        key: String,
        /// What is wrong with it, naming the field.
        reason: String,
        /// How to repair it.
        repair: &'static str,
    },
}

fn too_large_text(size: &Option<u64>, limit: &u64, why: &str) -> String {
    match size {
        Some(size) => {
            format!("it would be {size} bytes as stored, more than the {limit} the store takes per record ({why})")
        }
        None => format!("it is larger than the store takes per record ({limit} bytes): {why}"),
    }
}

/// Counts of one pool, as quoted in "used up" messages and shown by `ipamctl get`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolCounts {
    /// The pool.
    pub pool: ObjectName,
    /// `totalIPCount`.
    pub total: u128,
    /// `reservedIPCount`, plus what the requesting network's own `reserved` list keeps out
    /// (see `reserved_by_network`).
    pub reserved: u128,
    /// The part of `reserved` due only to the network's own `reserved` list (0 outside a
    /// CNI request).
    pub reserved_by_network: u128,
    /// `allocatedIPCount`.
    pub allocated: u128,
    /// `availableIPCount`.
    pub available: u128,
}

impl fmt::Display for PoolCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pool {:?} (total {}, reserved {}",
            self.pool.as_str(),
            self.total,
            self.reserved
        )?;
        if self.reserved_by_network > 0 {
            write!(
                f,
                " ({} by ReservedIPs, {} by the network's `reserved`)",
                self.reserved - self.reserved_by_network,
                self.reserved_by_network
            )?;
        }
        write!(
            f,
            ", allocated {}, available {})",
            self.allocated, self.available
        )
    }
}

/// Why a requested address cannot be handed out.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unavailable {
    /// The address is in none of the candidate pools' `ips`.
    OutsidePools {
        /// The candidate pools.
        pools: Vec<ObjectName>,
    },
    /// The address is excluded, the gateway, or the subnet's network or broadcast address.
    NotAllocatable {
        /// The pool that lists it.
        pool: ObjectName,
        /// Which rule keeps it out, e.g. `spec.excludeIPs`.
        rule: String,
    },
    /// A ReservedIP covers the address.
    Reserved {
        /// The ReservedIP objects that cover it (empty when only the network's own
        /// `reserved` list does).
        by: Vec<ObjectName>,
    },
    /// Another owner holds the address.
    Held {
        /// The holder.
        owner: Owner,
    },
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::OutsidePools { pools } => {
                write!(f, "it is in none of the pools {}", quoted_list(pools))
            }
            Unavailable::NotAllocatable { pool, rule } => {
                write!(f, "pool {:?} keeps it out ({rule})", pool.as_str())
            }
            Unavailable::Reserved { by } if by.is_empty() => {
                f.write_str("it is reserved by the network configuration")
            }
            Unavailable::Reserved { by } => {
                write!(f, "it is reserved by ReservedIP {}", quoted_list(by))
            }
            Unavailable::Held { owner } => write!(f, "it is held by {owner}"),
        }
    }
}

/// The facts of [`Error::StillHeld`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StillHeld {
    /// The address.
    pub address: IpAddr,
    /// The Pod asking (`namespace/name`).
    pub pod: String,
    /// The earlier Pod's UID.
    pub uid: Option<String>,
    /// The earlier sandbox's owner.
    pub holder: Owner,
    /// The node whose plugin took it for the earlier Pod.
    pub node: Option<ObjectName>,
}

impl fmt::Display for StillHeld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "address {} of StatefulSet Pod {} is still held by its earlier Pod (uid {}) for {}",
            self.address,
            self.pod,
            self.uid.as_deref().unwrap_or("unknown"),
            self.holder
        )?;
        if let Some(node) = &self.node {
            write!(f, " on node {node}")?;
        }
        f.write_str(
            ", whose sandbox was not torn down: it is handed over after that DEL, or by \
             ipam-controller once the earlier Pod is gone and its node is Ready or deleted",
        )
    }
}

fn quoted_list(names: &[ObjectName]) -> String {
    names
        .iter()
        .map(|n| format!("{:?}", n.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What kind of object an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// An IPPool.
    IpPool,
    /// A ReservedIP.
    ReservedIp,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::IpPool => "ippool",
            ObjectKind::ReservedIp => "reservedip",
        })
    }
}

/// Every failure of the IPAM engine. Exhaustive: a caller that maps errors (the CNI plugin's
/// codes) names every variant, so a new one is a compile error there, not a silent default.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value was refused; nothing was changed.
    #[error("invalid {0}")]
    Invalid(#[from] ValidationError),
    /// An object named in a request does not exist.
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// Its kind.
        kind: ObjectKind,
        /// Its name.
        name: String,
    },
    /// A pool listed for one family is of the other.
    #[error("ippool {pool:?} is an {family} pool (subnet {subnet}), listed for {wanted}")]
    WrongFamily {
        /// The pool.
        pool: String,
        /// Its family.
        family: Family,
        /// Its subnet.
        subnet: String,
        /// The family the request wanted.
        wanted: Family,
    },
    /// Every candidate pool is used up.
    #[error("all IP addresses used up: {}", .pools.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Exhausted {
        /// The counts of each candidate pool.
        pools: Vec<PoolCounts>,
    },
    /// A requested address cannot be handed out.
    #[error("requested address {address} is not available: {reason}")]
    Unavailable {
        /// The address.
        address: IpAddr,
        /// Why.
        reason: Unavailable,
    },
    /// A pool still has allocations and `force` was not given.
    #[error(
        "ippool {pool:?} has {allocated} allocation(s); release them first or force the deletion"
    )]
    PoolInUse {
        /// The pool.
        pool: String,
        /// How many addresses it still hands.
        allocated: u128,
    },
    /// A pool the request defines ([`Request::defining`](crate::Request::defining)) overlaps a
    /// stored pool one of its slots names: one address would answer for two of its pools.
    /// Nothing was changed.
    #[error("pool {defined:?} of the request overlaps ippool {pool:?} at {at}: a request's own pools must not overlap the stored pools it names")]
    DefinedPoolOverlaps {
        /// The pool the request defines.
        defined: String,
        /// The stored pool.
        pool: String,
        /// The first addresses both hold, as a range.
        at: String,
    },
    /// A pool named by the request is being deleted (`ipamctl delete ippool`): it hands
    /// out nothing.
    #[error("ippool {pool:?} is being deleted")]
    PoolDeleting {
        /// The pool.
        pool: String,
    },
    /// A StatefulSet Pod's address is still held by an earlier Pod of the same name whose
    /// sandbox has not been torn down (no DEL yet): it may still run, on a node that cannot
    /// be reached, so the address waits for that DEL or for ipam-controller, which keeps it
    /// for the identity once the earlier Pod is gone and its node is Ready or deleted.
    /// Nothing was changed; the runtime retries the sandbox.
    #[error("{0}")]
    StillHeld(Box<StillHeld>),
    /// Concurrent writers kept winning, or the store kept failing transiently, past the
    /// retry budget.
    #[error("{what}: {last} after {attempts} attempts; try again later")]
    TryAgainLater {
        /// The operation.
        what: String,
        /// How many attempts were made.
        attempts: u32,
        /// What the last attempt ran into.
        last: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    /// Whether retrying later may succeed (store busy, retries exhausted).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::TryAgainLater { .. }
                | Error::StillHeld(_)
                | Error::Store(StoreError::Busy { .. })
        )
    }
}
