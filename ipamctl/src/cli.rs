//! The command line of `ipamctl` and its dispatch: parse, open the store, run one command,
//! close the store.

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipam_core::Ipam;
use ipam_store::{self as store, Quoting, StoreChoice, DEFAULT_DATA_DIR, DEFAULT_LOCK_WAIT};

use crate::commands::{self, GetOptions, Resource};
use crate::error::CtlError;
use crate::manifest::{self, Input};
use crate::output::Format;

/// `ipamctl`: the operator's CLI for IPPools, ReservedIPs and allocations.
#[derive(Debug, Parser)]
// The first line of `--help` is part of the CLI's output, written as it has always been
// (it was the description of the package ipamctl came from), not taken from this package's.
#[command(
    name = "ipamctl",
    version,
    about = "The ipam-cni CNI IPAM plugin and the ipamctl operator CLI",
    long_about = None
)]
pub struct Cli {
    /// Directory of the embedded store (as `dataDir` of the CNI configuration).
    #[arg(long, global = true, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Which store holds the state.
    #[arg(long, global = true, value_enum, default_value_t = StoreKind::Redb)]
    pub store: StoreKind,
    /// The kubeconfig of the Kubernetes store; implies `--store kubernetes`.
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The namespace of the Kubernetes store's allocation objects (default `ipam-rs`).
    #[arg(long, global = true, value_name = "NS")]
    pub namespace: Option<String>,
    /// The API the cluster serves pools and reservations with: ipam.rs (IPPool, ReservedIP;
    /// the default) or spiderpool (SpiderIPPool, SpiderReservedIP). For the Kubernetes
    /// store; implies `--store kubernetes`.
    #[arg(long, global = true, value_name = "API", value_parser = parse_api)]
    pub api: Option<ipam_api::Api>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The `--store` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// redb in the data directory (the default).
    Redb,
    /// sled in the data directory.
    Sled,
    /// Kubernetes custom resources (`--kubeconfig`, or the usual discovery).
    Kubernetes,
}

/// The commands. Each is a type of its own that owns its arguments, checks them and runs:
/// what is refused on the command line is refused before the store is opened.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or update IPPools and ReservedIPs from manifests.
    Apply(Apply),
    /// Show IPPools, ReservedIPs or allocations.
    Get(Get),
    /// Delete an IPPool or a ReservedIP.
    Delete(Delete),
    /// Tell every reason an address is or is not allocatable.
    Explain(Explain),
    /// List leaked allocations, and why: their Pod is gone, is another, has finished or is on
    /// a deleted node (Kubernetes store; --dry-run).
    Gc(Gc),
}

/// `apply -f PATH...`.
#[derive(Debug, Args)]
pub struct Apply {
    /// A file, a directory of *.yaml|*.yml|*.json, or - for standard input; repeatable.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub files: Vec<String>,
}

/// `get TYPE [NAME] [-o FORMAT] [--pool POOL]`.
#[derive(Debug, Args)]
pub struct Get {
    /// ippools, reservedips or allocations (or TYPE/NAME).
    pub resource: String,
    /// One object (for allocations: its address).
    pub name: Option<String>,
    /// Output format: wide, json or yaml.
    #[arg(short = 'o', long = "output", value_name = "FORMAT")]
    pub output: Option<Format>,
    /// Allocations of this pool only.
    #[arg(long, value_name = "POOL")]
    pub pool: Option<String>,
}

/// `delete TYPE NAME [--force]`.
#[derive(Debug, Args)]
pub struct Delete {
    /// ippool or reservedip (or TYPE/NAME).
    pub resource: String,
    /// The object's name.
    pub name: Option<String>,
    /// Delete a pool even if it has allocations, releasing them.
    #[arg(long)]
    pub force: bool,
}

/// `explain ADDRESS`.
#[derive(Debug, Args)]
pub struct Explain {
    /// The address.
    pub address: String,
}

/// `gc --dry-run [-o wide|json|yaml]`.
#[derive(Debug, Args)]
pub struct Gc {
    /// Only list what is leaked and why (required: ipamctl releases nothing).
    #[arg(long)]
    pub dry_run: bool,
    /// Output format: wide, json or yaml.
    #[arg(short = 'o', long = "output", value_name = "FORMAT")]
    pub output: Option<Format>,
}

/// `--api`: `ipam.rs` or `spiderpool`.
fn parse_api(value: &str) -> Result<ipam_api::Api, String> {
    value
        .parse()
        .map_err(|_| format!("unknown API {value:?}; allowed: ipam.rs, spiderpool"))
}

/// Splits `TYPE/NAME` (kubectl's form) or takes `TYPE` and `NAME` apart.
fn split_target(
    resource: &str,
    name: Option<String>,
) -> Result<(Resource, Option<String>), CtlError> {
    match resource.split_once('/') {
        Some((kind, n)) if name.is_none() && !n.is_empty() => {
            Ok((Resource::parse(kind)?, Some(n.to_owned())))
        }
        Some(_) => Err(CtlError::Usage(format!(
            "{resource:?}: give either TYPE/NAME or TYPE NAME"
        ))),
        None => Ok((Resource::parse(resource)?, name)),
    }
}

impl Cli {
    /// Runs the command: validates what can be validated without the store (the store
    /// choice first, then the command's own arguments), then opens the store (and holds its
    /// lock) only for the command itself.
    pub fn run(
        self,
        stdin: &mut dyn Read,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<(), CtlError> {
        let target = Target {
            choice: self.store_choice()?,
            data_dir: self.data_dir,
        };
        match self.command {
            Command::Apply(c) => c.run(&target, stdin, out, err),
            Command::Get(c) => c.run(&target, out, err),
            Command::Delete(c) => c.run(&target, out, err),
            Command::Explain(c) => c.run(&target, out),
            Command::Gc(c) => c.run(&target, out, err),
        }
    }

    /// The store the global flags name. A store this build lacks is a mistake on the
    /// command line, found before anything else is looked at.
    fn store_choice(&self) -> Result<StoreChoice, CtlError> {
        let not_built =
            |kind: &str, e: store::NotBuilt| CtlError::Usage(format!("--store {kind}: {e}"));
        if self.api.is_some() && self.store == StoreKind::Sled {
            return Err(CtlError::Usage(
                "--api is for the Kubernetes store, not --store sled".to_owned(),
            ));
        }
        let kube = self.kubeconfig.is_some() || self.namespace.is_some() || self.api.is_some();
        match (self.store, kube) {
            (StoreKind::Redb, false) => Ok(StoreChoice::Redb),
            (StoreKind::Sled, false) => {
                store::sled(Quoting::Bare).map_err(|e| not_built("sled", e))
            }
            (StoreKind::Kubernetes, _) | (StoreKind::Redb, true) => {
                let choice = store::KubeChoice {
                    kubeconfig: self.kubeconfig.clone(),
                    node: None,
                    namespace: self.namespace.clone(),
                    api: self.api.unwrap_or_default(),
                };
                store::kubernetes(choice, Quoting::Bare).map_err(|e| not_built("kubernetes", e))
            }
            (StoreKind::Sled, true) => Err(CtlError::Usage(
                "--kubeconfig and --namespace are for the Kubernetes store, not --store sled"
                    .to_owned(),
            )),
        }
    }
}

/// The store a command runs on, chosen but not yet opened.
struct Target {
    choice: StoreChoice,
    data_dir: PathBuf,
}

/// An opened store, for one command.
struct Session {
    ipam: Ipam<Box<dyn ipam_core::Store>>,
    counts: Option<Box<dyn store::CountsBoard>>,
    pods: Option<Box<dyn store::PodDirectory>>,
}

impl Session {
    /// Where the store shows counts to others (the IPPool objects' status, which `kubectl
    /// get ippools` prints): apply and get refresh those they count.
    fn board(&self) -> Option<&dyn store::CountsBoard> {
        self.counts.as_deref()
    }
}

impl Target {
    /// Opens the store. Only apply creates one (`creates`); the other commands never leave
    /// a new data directory behind.
    fn open(&self, creates: bool) -> Result<Session, CtlError> {
        if self.choice.is_embedded() && !creates && !self.data_dir.exists() {
            return Err(CtlError::NoStore {
                data_dir: self.data_dir.clone(),
            });
        }
        let opened =
            store::open(&self.choice, &self.data_dir, DEFAULT_LOCK_WAIT).map_err(|source| {
                CtlError::Open {
                    store: if self.choice.is_embedded() {
                        format!("store in {}", self.data_dir.display())
                    } else {
                        "Kubernetes store".to_owned()
                    },
                    source,
                }
            })?;
        Ok(Session {
            ipam: Ipam::new(opened.store),
            counts: opened.counts,
            pods: opened.pods,
        })
    }
}

// Each command checks its arguments before it opens the store: a refused input must not even
// create a data directory, and a typo must not wait for the store's lock.

impl Apply {
    /// Reads and validates every manifest, then applies them.
    fn run(
        self,
        target: &Target,
        stdin: &mut dyn Read,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<(), CtlError> {
        let inputs: Vec<Input> = self.files.iter().map(|f| Input::from_arg(f)).collect();
        let manifests = manifest::load(&inputs, stdin)?;
        let s = target.open(true)?;
        pollster::block_on(commands::apply(&s.ipam, &manifests, s.board(), out, err))
    }
}

impl Get {
    /// Resolves what to show, then shows it.
    fn run(
        self,
        target: &Target,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<(), CtlError> {
        let (resource, name) = split_target(&self.resource, self.name)?;
        let options = GetOptions {
            name,
            pool: self.pool,
            format: self.output.unwrap_or_default(),
        };
        let s = target.open(false)?;
        pollster::block_on(commands::get(
            &s.ipam,
            resource,
            &options,
            s.board(),
            out,
            err,
        ))
    }
}

impl Delete {
    /// Resolves the one object to delete, then deletes it.
    fn run(
        self,
        target: &Target,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<(), CtlError> {
        let (resource, name) = split_target(&self.resource, self.name)?;
        let name = name.ok_or_else(|| {
            CtlError::Usage(format!(
                "delete {}: which one? give its NAME",
                resource.singular()
            ))
        })?;
        if resource == Resource::Allocations {
            return Err(commands::delete_allocation_refusal());
        }
        let s = target.open(false)?;
        pollster::block_on(commands::delete(
            &s.ipam, resource, &name, self.force, out, err,
        ))
    }
}

impl Explain {
    /// Checks the address, then explains it.
    fn run(self, target: &Target, out: &mut dyn Write) -> Result<(), CtlError> {
        commands::parse_address(&self.address, commands::EXPLAIN_CONTEXT)?;
        let s = target.open(false)?;
        pollster::block_on(commands::explain(&s.ipam, &self.address, out))
    }
}

impl Gc {
    /// Checks that a listing on the Kubernetes store is asked for, then lists the leaks.
    fn run(
        self,
        target: &Target,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<(), CtlError> {
        if !self.dry_run {
            return Err(CtlError::Usage(
                "gc needs --dry-run: ipamctl only lists leaked allocations; releasing one safely \
                 takes a grace period and a fresh look at its Pod"
                    .to_owned(),
            ));
        }
        if target.choice.is_embedded() {
            return Err(CtlError::Usage(
                "gc judges allocations by the cluster's Pods and Nodes: use the Kubernetes store \
                 (--kubeconfig PATH or --store kubernetes); on a host without Kubernetes the \
                 runtime's CNI GC releases what it no longer runs"
                    .to_owned(),
            ));
        }
        let s = target.open(false)?;
        let pods = s
            .pods
            .as_deref()
            .expect("the Kubernetes store looks up Pods");
        let format = self.output.unwrap_or_default();
        pollster::block_on(commands::gc_dry_run(&s.ipam, pods, format, out, err))
    }
}

/// The whole program: parses `args`, runs, and returns the exit status (0 or 1), having
/// written a one-line reason to `err` on failure. `--help` and `--version` exit 0.
pub fn main_with<I, T>(
    args: I,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = write!(out, "{e}");
                return 0;
            }
            // clap's message spans several lines; the contract wants one.
            // Keep what precedes the usage summary, joined.
            let rendered = e.render().to_string();
            let message = rendered
                .lines()
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            let _ = writeln!(err, "error: {message} (see ipamctl --help)");
            return 1;
        }
    };
    match cli.run(stdin, out, err) {
        Ok(()) => 0,
        Err(e) => {
            let _ = out.flush();
            let _ = writeln!(err, "error: {}", e.one_line());
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `ipamctl` with `args` on an empty stdin: (status, stdout, stderr).
    fn ipamctl(args: &[&str]) -> (i32, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let status = main_with(
            std::iter::once("ipamctl").chain(args.iter().copied()),
            &mut std::io::empty(),
            &mut out,
            &mut err,
        );
        (
            status,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn usage_errors_are_one_line_and_exit_1() {
        for (args, expect) in [
            (&["frobnicate"][..], "error: unrecognized subcommand 'frobnicate' (see ipamctl --help)\n"),
            (&["get"], "error: the following required arguments were not provided: <RESOURCE> (see ipamctl --help)\n"),
            (&["get", "pods"], "error: unknown resource type \"pods\"; use ippools, reservedips or allocations\n"),
            (&["get", "ippools", "-o", "xml"], "error: invalid value 'xml' for '--output <FORMAT>': unknown output format \"xml\"; allowed: wide, json, yaml (see ipamctl --help)\n"),
            (&["delete", "ippool"], "error: delete ippool: which one? give its NAME\n"),
            (&["delete", "ippool/a", "b"], "error: \"ippool/a\": give either TYPE/NAME or TYPE NAME\n"),
            (&["--store", "sled", "--kubeconfig", "/k", "get", "ippools"], "error: --kubeconfig and --namespace are for the Kubernetes store, not --store sled\n"),
            (&["apply"], "error: the following required arguments were not provided: --filename <PATH> (see ipamctl --help)\n"),
            (&["--store", "sled", "--api", "spiderpool", "get", "ippools"], "error: --api is for the Kubernetes store, not --store sled\n"),
            (&["gc"], "error: gc needs --dry-run: ipamctl only lists leaked allocations; releasing one safely takes a grace period and a fresh look at its Pod\n"),
            (&["gc", "--dry-run"], "error: gc judges allocations by the cluster's Pods and Nodes: use the Kubernetes store (--kubeconfig PATH or --store kubernetes); on a host without Kubernetes the runtime's CNI GC releases what it no longer runs\n"),
            (&["--api", "spider", "get", "ippools"], "error: invalid value 'spider' for '--api <API>': unknown API \"spider\"; allowed: ipam.rs, spiderpool (see ipamctl --help)\n"),
        ] {
            let (status, out, err) = ipamctl(args);
            assert_eq!((status, out.as_str(), err.as_str()), (1, "", expect), "{args:?}");
        }
    }

    #[test]
    fn an_unreadable_kubeconfig_is_named() {
        for args in [
            &["--kubeconfig", "/nonexistent/kubeconfig", "get", "ippools"][..],
            &[
                "--store",
                "kubernetes",
                "--kubeconfig",
                "/nonexistent/kubeconfig",
                "get",
                "ippools",
            ],
        ] {
            let (status, _, err) = ipamctl(args);
            assert_eq!(status, 1, "{args:?}");
            assert!(err.contains("/nonexistent/kubeconfig"), "{args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }

    #[test]
    fn help_exits_0() {
        let (status, out, _) = ipamctl(&["--help"]);
        assert_eq!(status, 0);
        assert!(
            out.starts_with("The ipam-cni CNI IPAM plugin and the ipamctl operator CLI\n\nUsage: ipamctl [OPTIONS] <COMMAND>\n"),
            "{out}"
        );
        assert!(out.contains("apply") && out.contains("explain"), "{out}");
    }
}
