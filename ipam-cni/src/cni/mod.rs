//! The CNI IPAM plugin: everything the `ipam-cni` binary does, as a library.
//!
//! An invocation goes through three stages, so that a refused request never touches the
//! store:
//! 1. [`Invocation::parse`]: read the environment and stdin, validate them ([`mod@env`],
//!    [`config`]);
//! 2. open the store the configuration names ([`ipam_store::open`]);
//! 3. [`Invocation::execute`] the command against an [`ipam_core::Ipam`] on it.
//!
//! [`run`] strings them together, writes what the binary prints and yields its exit
//! status.
//!
//! ```
//! use ipam_cni::cni::run;
//! let vars = [("CNI_COMMAND", "VERSION")];
//! let mut stdout = Vec::new();
//! let status = run(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()),
//!                  &mut &b"{}"[..], &mut stdout);
//! assert_eq!(status, 0);
//! assert!(String::from_utf8(stdout).unwrap().contains("supportedVersions"));
//! ```

pub mod agent;
pub mod command;
pub mod config;
pub mod env;
pub mod error;
pub mod log;
pub mod result;
pub mod settings;
pub mod version;

use std::io::{Read, Write};
use std::time::Duration;

use ipam_core::Ipam;
use ipam_store::DEFAULT_LOCK_WAIT;

use self::command::{Executed, Invocation, Prepared};
use self::config::AgentSocket;
use self::config::{decode_stdin, MAX_STDIN_BYTES};
use self::env::Command;
use self::error::{CniError, Code};
use self::log::LogConfig;
use self::result::{AddResult, ErrorResult};
use self::version::CniVersion;

/// What the binary prints on stdout and the status it exits with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// Protocol output only: a result, an error object, or nothing.
    pub stdout: String,
    /// 0 on success, 1 on any error (the code is in the error object).
    pub exit_code: i32,
}

impl Output {
    /// A success printing `result` (nothing when `None`).
    pub fn success(result: Option<&impl serde::Serialize>) -> Output {
        match result.map(result::render).transpose() {
            Ok(line) => Output {
                stdout: line.map(|l| format!("{l}\n")).unwrap_or_default(),
                exit_code: 0,
            },
            Err(e) => Output::failure(
                None,
                CniError::new(
                    Code::Io,
                    "internal error in ipam-cni: cannot write the result",
                )
                .with_details(e.to_string()),
            ),
        }
    }

    /// A failure printing `e` in `version` (the request's, when it was understood).
    pub fn failure(version: Option<CniVersion>, e: CniError) -> Output {
        // Rendering an error object cannot fail; should it, the runtime still gets one.
        const FALLBACK: &str = r#"{"cniVersion":"1.1.0","code":5,"details":"","msg":"internal error in ipam-cni: cannot write the error"}"#;
        let line =
            result::render(&ErrorResult::of(&e, version)).unwrap_or_else(|_| FALLBACK.to_owned());
        Output {
            stdout: format!("{line}\n"),
            exit_code: 1,
        }
    }
}

/// How long to wait for other processes holding the store: `IPAM_CNI_LOCK_WAIT_MS`, else
/// [`DEFAULT_LOCK_WAIT`].
pub fn lock_wait(var: impl Fn(&str) -> Option<String>) -> Duration {
    var("IPAM_CNI_LOCK_WAIT_MS")
        .and_then(|ms| ms.parse::<u64>().ok())
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_LOCK_WAIT)
}

/// Runs one invocation: validates, then has the node agent do it when one answers on the
/// configured socket ([`agent`]), else opens the store, executes, and writes the output to
/// `stdout`. Returns the exit status.
///
/// The output is written while the store is still open: an ADD whose result cannot be
/// written (stdout closed or full) gives back the addresses it took and fails, since a
/// runtime that never read them would never release them.
pub fn run(
    var: impl Fn(&str) -> Option<String>,
    stdin: &mut impl Read,
    stdout: &mut impl Write,
) -> i32 {
    // Until the configuration says otherwise, so that a request refused before it is read
    // still leaves its line.
    log::init(LogConfig::default());
    let mut bytes = Vec::new();
    // One byte more than allowed, so that an oversized stdin is seen as such.
    if let Err(e) = stdin
        .take(MAX_STDIN_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
    {
        let e = CniError::new(Code::Decode, format!("cannot read stdin: {e}"));
        Subject::of(&var, None).log_failure(&e);
        return deliver_failure(stdout, Output::failure(None, e));
    }
    let (inv, subject) = match prepare(&var, &bytes) {
        Ok(ready) => ready,
        Err(out) => return deliver_failure(stdout, out),
    };
    if inv.finds_no_store() {
        return deliver_failure(stdout, Output::success(None::<&AddResult>));
    }
    let wait = lock_wait(&var);
    if let Some(socket) = inv.net().agent.path() {
        match agent::ask(socket, &var, &bytes, wait, stdout) {
            Ok(status) => return status,
            Err(agent::NotAnswered::Absent) if inv.net().agent == AgentSocket::Default => {}
            Err(why) => ::log::warn!(
                "{} on {}: the agent at {} {why}; doing the call here",
                subject.command,
                subject.network,
                socket.display()
            ),
        }
    }
    let session = Session::open(&inv, wait);
    execute_and_answer(&inv, &subject, session.as_ref(), &mut |out| {
        write_output(stdout, out)
    })
}

/// Validates a request: the invocation to run and what its log lines name, or the output
/// of its refusal (logged) or of VERSION.
pub fn prepare(
    var: &impl Fn(&str) -> Option<String>,
    stdin: &[u8],
) -> Result<(Invocation, Subject), Output> {
    let decoded = decode_stdin(stdin);
    // Every failure is logged, whichever stage refused it, so that it leaves a trace where
    // the runtime keeps the plugin's stderr (or in the configured file, if it came late).
    let subject = Subject::of(var, decoded.as_ref().ok());
    match Invocation::parse_decoded(var, decoded) {
        Err((version, e)) => {
            subject.log_failure(&e);
            Err(Output::failure(version, e))
        }
        Ok(Prepared::Version) => Err(Output::success(Some(&result::version_result()))),
        Ok(Prepared::Run(inv)) => Ok((*inv, subject)),
    }
}

/// A store opened for commands, with what they need of it besides its records: the direct
/// path opens one per call, the node agent keeps one open.
pub struct Session {
    ipam: Ipam<Box<dyn ipam_core::Store>>,
    pods: Option<Box<dyn ipam_store::PodDirectory>>,
    requests: Option<Box<dyn ipam_store::ServerRequests>>,
}

impl Session {
    /// The requests the store has sent to its server so far, where it has one (Kubernetes).
    pub fn requests(&self) -> Option<ipam_store::RequestCounts> {
        self.requests.as_ref().map(|r| r.so_far())
    }

    /// The engine on an opened store, for the node the store says.
    pub fn new(opened: ipam_store::Opened) -> Session {
        let config = ipam_core::Config {
            node: opened.node,
            ..ipam_core::Config::default()
        };
        Session {
            ipam: Ipam::with_config(opened.store, config),
            pods: opened.pods,
            requests: opened.requests,
        }
    }

    /// Opens the store `inv`'s configuration names for this one call, waiting up to `wait`
    /// for other processes; a failure is the call's error (for STATUS: "not ready").
    pub fn open(inv: &Invocation, wait: Duration) -> Result<Session, CniError> {
        let net = inv.net();
        ipam_store::open(&net.store, &net.data_dir, wait)
            .map(Session::new)
            .map_err(|e| Session::open_failure(inv.command(), &e))
    }

    /// The error of a call whose store could not be opened (`e`).
    pub fn open_failure(command: Command, e: &ipam_core::StoreError) -> CniError {
        let e = CniError::from_store(e);
        if command == Command::Status {
            CniError::new(
                Code::NotReady,
                format!("the store is not usable: {}", e.msg()),
            )
            .with_details(e.details())
        } else {
            e
        }
    }

    /// The engine.
    pub fn ipam(&self) -> &Ipam<Box<dyn ipam_core::Store>> {
        &self.ipam
    }
}

/// Executes `inv` on `session` (or fails with the error of opening it) and hands the output
/// to `deliver`, which may be called a second time with a failure when the first output
/// could not be delivered. A failure is logged. Returns the exit status. The one way a
/// command is carried out, by the plugin and by the node agent.
pub fn execute_and_answer(
    inv: &Invocation,
    subject: &Subject,
    session: Result<&Session, &CniError>,
    deliver: &mut dyn FnMut(&Output) -> std::io::Result<()>,
) -> i32 {
    let version = Some(inv.net().version);
    let outcome = session
        .map_err(CniError::clone)
        .and_then(|session| execute_and_deliver(inv, session, deliver));
    match outcome {
        Ok(status) => status,
        Err(e) => {
            subject.log_failure(&e);
            let out = Output::failure(version, e);
            match deliver(&out) {
                Ok(()) => out.exit_code,
                Err(_) => out.exit_code.max(1),
            }
        }
    }
}

/// Writes `out` and returns its exit status; when even that cannot be written, the status
/// is still non-zero for a failure.
fn deliver_failure(stdout: &mut impl Write, out: Output) -> i32 {
    match write_output(stdout, &out) {
        Ok(()) => out.exit_code,
        Err(_) => out.exit_code.max(1),
    }
}

fn write_output(stdout: &mut impl Write, out: &Output) -> std::io::Result<()> {
    stdout.write_all(out.stdout.as_bytes())?;
    stdout.flush()
}

/// What a call is about, for the log line of its failure: read from the raw environment
/// and stdin rather than from what was validated, so that a call refused for one of them
/// still names the others.
pub struct Subject {
    /// `CNI_COMMAND`, quoted when it is not one, `-` when missing.
    command: String,
    /// `ID/IFNAME` for the commands that act on one attachment (`-` for a missing part).
    owner: Option<String>,
    /// The network's `name`, quoted, or `-`.
    network: String,
}

impl Subject {
    fn of(var: &impl Fn(&str) -> Option<String>, conf: Option<&serde_json::Value>) -> Subject {
        let get = |k: &str| var(k).filter(|v| !v.is_empty());
        let raw = get("CNI_COMMAND");
        let parsed = raw.as_deref().and_then(Command::parse);
        let command = match (parsed, raw) {
            (Some(c), _) => c.to_string(),
            (None, Some(raw)) => format!("{raw:?}"),
            (None, None) => "-".to_owned(),
        };
        let owner = parsed.filter(|c| c.needs_owner()).map(|_| {
            format!(
                "{}/{}",
                loggable(get("CNI_CONTAINERID")),
                loggable(get("CNI_IFNAME"))
            )
        });
        let network = conf
            .and_then(|c| c.get("name"))
            .and_then(serde_json::Value::as_str)
            .filter(|n| !n.is_empty())
            .map_or_else(|| "-".to_owned(), |n| format!("{n:?}"));
        Subject {
            command,
            owner,
            network,
        }
    }

    /// `CMD ID/IFNAME on "NET" failed with code N: MSG; details: DETAILS`, at warn.
    fn log_failure(&self, e: &CniError) {
        let owner = self
            .owner
            .as_ref()
            .map(|o| format!(" {o}"))
            .unwrap_or_default();
        let details = match e.details() {
            "" => String::new(),
            d => format!("; details: {d}"),
        };
        ::log::warn!(
            "{}{owner} on {} failed with code {}: {}{details}",
            self.command,
            self.network,
            e.code(),
            e.msg()
        );
    }
}

/// A raw environment value as it goes into a log line: as is when it cannot be mistaken
/// for the line's structure, quoted and escaped otherwise (a newline in a container ID must
/// not forge a second line).
fn loggable(value: Option<String>) -> String {
    match value {
        None => "-".to_owned(),
        Some(v)
            if v.chars()
                .all(|c| !c.is_whitespace() && !c.is_control() && !"\"/\\".contains(c)) =>
        {
            v
        }
        Some(v) => format!("{v:?}"),
    }
}

fn execute_and_deliver(
    inv: &Invocation,
    session: &Session,
    deliver: &mut dyn FnMut(&Output) -> std::io::Result<()>,
) -> Result<i32, CniError> {
    let mut inv = inv.clone();
    if let (Invocation::Add(add), Some(pods)) = (&mut inv, &session.pods) {
        add.use_the_pods_choice(&**pods)?;
    }
    let inv = &inv;
    let ipam = &session.ipam;
    let done = match (inv, &session.pods) {
        (Invocation::Del(del), Some(pods)) => {
            pollster::block_on(del.execute_keeping(ipam, &**pods))?;
            Executed::default()
        }
        _ => pollster::block_on(inv.execute(ipam))?,
    };
    let out = Output::success(done.result.as_ref());
    let written = deliver(&out);
    if written.is_ok() && out.exit_code == 0 {
        return Ok(0);
    }
    let (Invocation::Add(add), false) = (inv, done.taken.is_empty()) else {
        return Ok(match written {
            Ok(()) => out.exit_code,
            Err(_) => out.exit_code.max(1),
        });
    };
    let why = match &written {
        Err(e) => format!("cannot write the result on stdout: {e}"),
        Ok(()) => "cannot render the result".to_owned(),
    };
    Err(pollster::block_on(add.give_back(ipam, &done.taken, &why)))
}
