//! CNI error codes and the error a failed invocation prints.

use std::fmt;

use ipam_core::{Error, StoreError};

/// The error codes this plugin returns: the CNI specification's well-known codes and the
/// plugin's own (100 and above), exactly as the project's contract tabulates them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// 1: `cniVersion` missing or not supported, or a command the version does not have.
    IncompatibleVersion,
    /// 4: bad environment (`CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_IFNAME`, `CNI_ARGS`).
    BadEnvironment,
    /// 5: the store could not be read or written (unreadable, unwritable, corrupt).
    Io,
    /// 6: stdin is not JSON, too large, or a field has the wrong type.
    Decode,
    /// 7: invalid network configuration.
    InvalidConfig,
    /// 11: the store stayed busy past the bounded wait; try again later.
    TryAgainLater,
    /// 50: STATUS: the plugin cannot serve ADD now.
    NotReady,
    /// 100: every candidate pool is used up.
    Exhausted,
    /// 101: a requested address is not available.
    Unavailable,
    /// 102: CHECK found that the owner does not hold what `prevResult` says (the contract has
    /// no code for this; see docs/cni.md).
    CheckFailed,
}

impl Code {
    /// The number written in the error's `code` field.
    pub fn number(self) -> u32 {
        match self {
            Code::IncompatibleVersion => 1,
            Code::BadEnvironment => 4,
            Code::Io => 5,
            Code::Decode => 6,
            Code::InvalidConfig => 7,
            Code::TryAgainLater => 11,
            Code::NotReady => 50,
            Code::Exhausted => 100,
            Code::Unavailable => 101,
            Code::CheckFailed => 102,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

/// A failed CNI invocation: what is printed as `{"cniVersion","code","msg","details"}`.
///
/// ```
/// use ipam_cni::cni::error::{CniError, Code};
/// use ipam_cni::cni::result::{render, ErrorResult};
/// let e = CniError::new(Code::InvalidConfig, "ipam.dataDir: \"x\": must be an absolute path");
/// assert_eq!(e.code().number(), 7);
/// assert_eq!(
///     render(&ErrorResult::of(&e, None)).unwrap(),
///     r#"{"cniVersion":"1.1.0","code":7,"details":"","msg":"ipam.dataDir: \"x\": must be an absolute path"}"#
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct CniError {
    code: Code,
    msg: String,
    details: String,
}

impl CniError {
    /// An error with `code` and a message a person can act on.
    pub fn new(code: Code, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// The same error with `details` (the underlying cause, for logs and humans).
    pub fn with_details(mut self, details: impl Into<String>) -> CniError {
        self.details = details.into();
        self
    }

    /// The code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The message.
    pub fn msg(&self) -> &str {
        &self.msg
    }

    /// The details (may be empty).
    pub fn details(&self) -> &str {
        &self.details
    }
}

impl From<Error> for CniError {
    /// Maps an engine error to its contract code. Messages are the engine's own, which name
    /// the pools with their counts (100), the ReservedIP or holder (101) and the path (5).
    fn from(e: Error) -> CniError {
        let code = match &e {
            Error::Invalid(_)
            | Error::NotFound { .. }
            | Error::WrongFamily { .. }
            | Error::DefinedPoolOverlaps { .. }
            | Error::PoolInUse { .. }
            | Error::PoolDeleting { .. } => Code::InvalidConfig,
            Error::Exhausted { .. } => Code::Exhausted,
            Error::Unavailable { .. } => Code::Unavailable,
            Error::TryAgainLater { .. } | Error::StillHeld(_) => Code::TryAgainLater,
            Error::Store(s) => return CniError::from_store(s),
        };
        CniError::new(code, e.to_string())
    }
}

impl CniError {
    /// Maps a store failure: busy or conflicting → 11, anything else → 5. `msg` says what
    /// failed and `details` why: runtimes print the two joined (podman: "msg: details"), so
    /// a cause in both would read twice.
    pub fn from_store(e: &StoreError) -> CniError {
        let code = match e {
            StoreError::Busy { .. }
            | StoreError::Conflict { .. }
            | StoreError::Transient { .. } => Code::TryAgainLater,
            _ => Code::Io,
        };
        let mut details: Vec<String> = Vec::new();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            let link = own_text(s);
            // A wrapper that displays exactly as what it wraps adds nothing.
            if !link.is_empty() && details.last() != Some(&link) {
                details.push(link);
            }
            source = s.source();
        }
        CniError::new(code, own_text(e)).with_details(details.join(": "))
    }
}

/// An error's message without its cause's, which many errors append to their own
/// (`StoreError::Io` displays as "store I/O error: CONTEXT: CAUSE").
fn own_text(e: &(dyn std::error::Error + 'static)) -> String {
    let text = e.to_string();
    match e.source() {
        Some(cause) => match text.strip_suffix(&format!(": {cause}")) {
            Some(own) => own.to_owned(),
            None => text,
        },
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipam_core::{ObjectName, Owner, PoolCounts, Unavailable};

    #[test]
    fn engine_errors_map_to_contract_codes() {
        let pool = ObjectName::new("p").unwrap();
        let cases: Vec<(Error, u32)> = vec![
            (
                Error::Exhausted {
                    pools: vec![PoolCounts {
                        pool: pool.clone(),
                        total: 3,
                        reserved: 2,
                        reserved_by_network: 0,
                        allocated: 1,
                        available: 0,
                    }],
                },
                100,
            ),
            (
                Error::Unavailable {
                    address: "10.0.0.1".parse().unwrap(),
                    reason: Unavailable::Reserved {
                        by: vec![ObjectName::new("r").unwrap()],
                    },
                },
                101,
            ),
            (
                Error::Unavailable {
                    address: "10.0.0.1".parse().unwrap(),
                    reason: Unavailable::Held {
                        owner: Owner::new("c", "eth0").unwrap(),
                    },
                },
                101,
            ),
            (
                Error::TryAgainLater {
                    what: "allocate".into(),
                    attempts: 16,
                    last: "concurrent updates kept conflicting".into(),
                },
                11,
            ),
            (
                Error::Store(StoreError::Busy {
                    what: "lock".into(),
                }),
                11,
            ),
            (
                Error::Store(StoreError::Corrupt {
                    key: "k".into(),
                    reason: "r".into(),
                }),
                5,
            ),
            (
                Error::Store(StoreError::Io {
                    context: "open /x".into(),
                    source: "denied".into(),
                }),
                5,
            ),
        ];
        for (e, code) in cases {
            let text = e.to_string();
            let c = CniError::from(e);
            assert_eq!(c.code().number(), code, "{text}");
            // msg and details together say the whole message, each part once.
            match c.details() {
                "" => assert_eq!(c.msg(), text),
                d => assert_eq!(format!("{}: {d}", c.msg()), text),
            }
        }
    }

    #[test]
    fn store_errors_give_the_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("read /d/store.redb: {0}")]
        struct Wrapper(#[source] std::io::Error);
        let io = || std::io::Error::other("disk on fire");
        let c = CniError::from_store(&StoreError::Io {
            context: "open /d".into(),
            source: Box::new(Wrapper(io())),
        });
        assert_eq!(
            (c.msg(), c.details()),
            (
                "store I/O error: open /d",
                "read /d/store.redb: disk on fire"
            )
        );
        // A cause that does not repeat its own cause keeps its whole text.
        let c = CniError::from_store(&StoreError::Io {
            context: "open /d".into(),
            source: Box::new(io()),
        });
        assert_eq!(c.details(), "disk on fire");
        let c = CniError::from_store(&StoreError::Busy {
            what: "lock /d/lock held for 30s".into(),
        });
        assert_eq!(
            (c.msg(), c.details()),
            ("store busy: lock /d/lock held for 30s; try again later", "")
        );
    }
}
