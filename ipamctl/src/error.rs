//! The errors of `ipamctl`. Each renders as one line that lets an operator act: the binary
//! prints it after `error: ` and exits 1.

use std::fmt;
use std::path::PathBuf;

use ipam_core::ValidationError;

/// Where a manifest document came from: the file (or standard input), the document's place
/// in it, and, inside a `List`, the item's index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The file as the user named it, or `<stdin>`.
    pub source: String,
    /// 1-based number of the YAML document in the file (a JSON file is one document).
    pub document: usize,
    /// The index in `items` when the document is a `List`.
    pub item: Option<usize>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.source, self.document)?;
        if let Some(i) = self.item {
            write!(f, ", items[{i}]")?;
        }
        Ok(())
    }
}

/// Why the input of `ipamctl apply` was refused. When this is returned nothing was applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// A file, directory or standard input could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// What was being read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not YAML (or JSON) at all.
    #[error("{source_name}: document {document}: not valid {format}: {message}")]
    Syntax {
        /// The file, or `<stdin>`.
        source_name: String,
        /// 1-based number of the document being read when parsing failed.
        document: usize,
        /// `YAML` or `JSON`.
        format: &'static str,
        /// The parser's message, with its line and column.
        message: String,
    },
    /// A mapping gives one key twice. Parsers keep the last silently; kubectl refuses the
    /// document, and so does `ipamctl`, since which value was meant is ambiguous.
    #[error("{source_name}: document {document}: {field}: mapping key {key:?} is given twice{}; remove one of them", at_suffix(.at))]
    DuplicateKey {
        /// The file, or `<stdin>`.
        source_name: String,
        /// 1-based number of the document.
        document: usize,
        /// The path of the field in the document (`spec.ips`).
        field: String,
        /// The key as written.
        key: String,
        /// The parser's line and column of the second value, when it gives them.
        at: Option<(usize, usize)>,
    },
    /// A document is well-formed but not a valid object: the message names the field and
    /// quotes the value.
    #[error("{origin}{}: {error}", object_suffix(.object))]
    Invalid {
        /// Where the document is.
        origin: Origin,
        /// `kind "name"` when they could be read.
        object: Option<String>,
        /// The field, value and reason (boxed to keep the error small to return).
        error: Box<ValidationError>,
    },
    /// Two documents of one input define the same object: which one is meant is ambiguous.
    #[error("{origin} ({object}): defined again; it was first defined at {first}")]
    Duplicate {
        /// The second definition.
        origin: Origin,
        /// `kind "name"`.
        object: String,
        /// The first definition.
        first: Origin,
    },
    /// The input held no object at all (as `kubectl apply` refuses it).
    #[error("no objects passed to apply")]
    Empty,
}

fn at_suffix(at: &Option<(usize, usize)>) -> String {
    at.map(|(line, column)| format!(" (the second value at line {line}, column {column})"))
        .unwrap_or_default()
}

fn applied_text(applied: &Result<Vec<String>, String>) -> String {
    match applied {
        Ok(none) if none.is_empty() => "nothing was applied".to_owned(),
        Ok(some) => format!(
            "the store applies one object at a time, and before the failure it applied {}; \
             the rest of the input is not applied (apply it again once the cause is fixed)",
            some.join(", ")
        ),
        Err(why) => format!(
            "what was applied before the failure could not be read back ({why}); \
             compare the input with ipamctl get"
        ),
    }
}

fn object_suffix(object: &Option<String>) -> String {
    object
        .as_ref()
        .map(|o| format!(" ({o})"))
        .unwrap_or_default()
}

/// Every failure of an `ipamctl` command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CtlError {
    /// The command line is wrong (unknown resource type, bad address, ...).
    #[error("{0}")]
    Usage(String),
    /// `apply` refused its input; nothing was applied. (Boxed: it is much larger than the
    /// other variants.)
    #[error("{0}; nothing was applied")]
    Manifest(Box<ManifestError>),
    /// A named object does not exist (`ippool "x" not found`).
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// `ippool`, `reservedip` or `allocation`.
        kind: &'static str,
        /// The name as given.
        name: String,
    },
    /// `delete ippool` without `--force` on a pool that has allocations.
    #[error("ippool {pool:?} has {allocated} allocation(s); release them (CNI DEL) first, or delete with --force to release them")]
    PoolInUse {
        /// The pool.
        pool: String,
        /// How many allocations it has.
        allocated: u128,
    },
    /// The store could not be opened.
    #[error("cannot open the {store}: {source}")]
    Open {
        /// Which store: `store in DIR`.
        store: String,
        /// Why.
        #[source]
        source: ipam_core::StoreError,
    },
    /// A command that only reads or removes was pointed at a data directory that does not
    /// exist. It is not created: a mistyped `--data-dir` should not look like an empty store.
    #[error("no store in {}: the directory does not exist (check --data-dir; ipamctl apply creates it)", .data_dir.display())]
    NoStore {
        /// The data directory.
        data_dir: PathBuf,
    },
    /// The store failed during `apply`. Where it applies a transaction atomically (the
    /// embedded stores) nothing was applied; a store of single objects (Kubernetes) may have
    /// applied the objects before the one that failed, which are named.
    #[error("{source}; {}", applied_text(.applied))]
    Apply {
        /// The failure.
        source: ipam_core::Error,
        /// `ippool/NAME created|configured` for each object of the input the store holds
        /// as written now and did not before, read back after the failure; or why it could
        /// not be read back.
        applied: Result<Vec<String>, String>,
    },
    /// A forced pool deletion stopped after releasing some of its holders (listed on
    /// stderr): the pool stays marked as being deleted, and hands out nothing.
    #[error("{source}; ippool/{pool} is marked as being deleted and hands out nothing: run the deletion again to finish it")]
    DeletionStopped {
        /// The pool.
        pool: String,
        /// Why it stopped.
        source: ipam_core::Error,
    },
    /// The engine refused or failed.
    #[error(transparent)]
    Engine(#[from] ipam_core::Error),
    /// Writing the output failed (e.g. a closed pipe).
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// An object could not be rendered as JSON or YAML.
    #[error("cannot render output: {0}")]
    Render(String),
}

impl From<ManifestError> for CtlError {
    fn from(e: ManifestError) -> CtlError {
        CtlError::Manifest(Box::new(e))
    }
}

impl CtlError {
    /// The message as one line, as the contract wants on stderr: embedded line breaks (from
    /// a parser's message, say) become spaces.
    pub fn one_line(&self) -> String {
        self.to_string()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }
}
