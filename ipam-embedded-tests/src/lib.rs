//! Shared pieces of the multi-process tests: which backend, how a child process opens it and
//! what it does, and the test-made file systems some tests need.
//!
//! Every test file in `tests/` re-runs its own test binary as child processes (each file has
//! an ignored test `child` that calls [`child_main`]), so that each child is a real, separate
//! process that opens the store, does one operation and exits, as a CNI call does. A child
//! reports on stdout, one line per event, which [`lines`] reads back:
//!
//! | line | meaning |
//! |---|---|
//! | `ACK who addr` | `who` was allocated `addr` (acknowledged: committed and durable) |
//! | `USEDUP who` | the pool was used up |
//! | `DEL who` / `REL who` | a release of `who` started / was acknowledged |
//! | `HOLDS who addr...` | what `who` holds (no address: nothing) |
//! | `ERR who class message` | an operation failed; `class` is [`error_class`]'s |
//! | `START who` | (mode `first`) the store is about to be opened |

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ipam_core::testkit::{owner, pool, request};
use ipam_core::{Error, Ipam, Store, StoreError};
use ipam_embedded::{OpenOptions, Schema};

/// The environment variable that carries a child's instructions.
pub const CHILD_ENV: &str = "IPAM_TEST_CHILD";

/// How long a child waits for the store's lock: generous, because on a loaded machine the
/// processes queued before it may take long; only a hang should ever reach it.
pub const WAIT: Duration = Duration::from_secs(600);

/// An embedded backend under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// ipam-redb.
    Redb,
    /// ipam-sled.
    Sled,
}

impl Backend {
    /// Both backends.
    pub const ALL: [Backend; 2] = [Backend::Redb, Backend::Sled];

    /// Its name, as the CNI configuration spells it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Redb => "redb",
            Backend::Sled => "sled",
        }
    }

    /// The backend of a name.
    pub fn from_name(name: &str) -> Option<Backend> {
        Backend::ALL.into_iter().find(|b| b.name() == name)
    }

    /// Opens the store in `dir`, waiting up to `wait` for other processes.
    pub fn open(self, dir: &Path, wait: Duration) -> Result<Box<dyn Store>, StoreError> {
        self.open_with(dir, wait, &Schema::IPAM)
    }

    /// Opens the store in `dir` as a build of `schema` would.
    pub fn open_with(
        self,
        dir: &Path,
        wait: Duration,
        schema: &Schema,
    ) -> Result<Box<dyn Store>, StoreError> {
        let options = OpenOptions { lock_wait: wait };
        Ok(match self {
            Backend::Redb => Box::new(ipam_redb::RedbStore::open_with(dir, &options, schema)?),
            Backend::Sled => Box::new(ipam_sled::SledStore::open_with(dir, &options, schema)?),
        })
    }

    /// The file that holds the database's records (redb's file, sled's log).
    pub fn db_file(self, dir: &Path) -> PathBuf {
        match self {
            Backend::Redb => dir.join(ipam_redb::DB_FILE),
            Backend::Sled => dir.join(ipam_sled::DB_DIR).join("db"),
        }
    }
}

/// The class of a store error as a child prints it: `io`, `busy`, `corrupt`, `conflict`, or
/// `engine` for any other engine error.
pub fn error_class(e: &Error) -> &'static str {
    match e {
        Error::Store(s) => store_error_class(s),
        _ => "engine",
    }
}

/// [`error_class`] of a store error.
pub fn store_error_class(e: &StoreError) -> &'static str {
    match e {
        StoreError::Io { .. } => "io",
        StoreError::Busy { .. } => "busy",
        StoreError::Corrupt { .. } => "corrupt",
        StoreError::Conflict { .. } => "conflict",
        _ => "other",
    }
}

/// The pool every child allocates from.
pub const POOL: &str = "shared";

/// The body of a child process, as `CHILD_ENV` describes it: `mode,backend,dir,id,count`.
///
/// Modes: `alloc` (`count` allocations `id-0`, `id-1`, ...), `storm` (allocations, releasing
/// every third one's predecessor), `get` (what `id` holds), `first` (the very first call on a
/// data directory: one allocation whose request defines the pool, as a CNI network's
/// `ranges` does). Each operation opens the store on its own, as one CNI call does.
pub fn child_main(spec: &str) {
    let parts: Vec<&str> = spec.split(',').collect();
    let [mode, backend, dir, id, count] = parts[..] else {
        panic!("bad child spec {spec:?}");
    };
    let backend = Backend::from_name(backend).expect("backend");
    let dir = Path::new(dir);
    let count: usize = count.parse().expect("count");
    let open = |who: &str| match backend.open(dir, WAIT) {
        Ok(store) => Some(Ipam::new(store)),
        Err(e) => {
            println!("ERR {who} {} open: {e}", store_error_class(&e));
            None
        }
    };
    let op_allocate = |who: &str, define: bool| {
        let Some(ipam) = open(who) else { return };
        let mut req = request(who, &[POOL]);
        if define {
            req = req.defining([pool(POOL, "10.20.0.0/16", &["10.20.0.0/16"])]);
        }
        match pollster::block_on(ipam.allocate(&req)) {
            Ok(a) => println!("ACK {who} {}", a[0].allocation.address),
            Err(Error::Exhausted { .. }) => println!("USEDUP {who}"),
            Err(e) => println!("ERR {who} {} {e}", error_class(&e)),
        }
    };
    let op_release = |who: &str| {
        println!("DEL {who}");
        let Some(ipam) = open(who) else { return };
        match pollster::block_on(ipam.release(&owner(who), Some("net1"))) {
            Ok(_) => println!("REL {who}"),
            Err(e) => println!("ERR {who} {} {e}", error_class(&e)),
        }
    };
    match mode {
        "alloc" => {
            for i in 0..count {
                op_allocate(&format!("{id}-{i}"), false);
            }
        }
        "storm" => {
            for i in 0..count {
                op_allocate(&format!("{id}-{i}"), false);
                if i % 3 == 2 {
                    op_release(&format!("{id}-{}", i - 1));
                }
            }
        }
        "first" => {
            // Tells the parent that the store is about to be opened (for the first time).
            println!("START {id}");
            std::io::Write::flush(&mut std::io::stdout()).expect("stdout");
            op_allocate(id, true);
        }
        "get" => {
            let Some(ipam) = open(id) else { return };
            match pollster::block_on(ipam.owner_allocations(&owner(id))) {
                Ok(held) => {
                    let addrs: Vec<String> =
                        held.iter().map(|a| format!(" {}", a.address)).collect();
                    println!("HOLDS {id}{}", addrs.concat());
                }
                Err(e) => println!("ERR {id} {} {e}", error_class(&e)),
            }
        }
        _ => panic!("unknown mode {mode}"),
    }
}

/// Starts a child (this test binary's ignored test `child`) with the given instructions.
pub fn spawn(mode: &str, backend: Backend, dir: &Path, id: &str, count: usize) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(
            CHILD_ENV,
            format!("{mode},{},{},{id},{count}", backend.name(), dir.display()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child")
}

/// Runs a child to its end: its stdout, and whether it exited successfully (a panic in the
/// child is a failure).
pub fn run(mode: &str, backend: Backend, dir: &Path, id: &str, count: usize) -> (String, bool) {
    let child = spawn(mode, backend, dir, id, count);
    let out = child.wait_with_output().expect("wait for child");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.success(),
    )
}

/// Waits for a child to end, appending what it prints until then to `out`: its exit status.
pub fn finish(mut child: Child, out: &mut String) -> ExitStatus {
    child
        .stdout
        .take()
        .expect("the child's stdout")
        .read_to_string(out)
        .expect("read the child's stdout");
    child.wait().expect("wait for child")
}

/// The median of five timings, `time(0)` to `time(4)`: the time scale of a test on this
/// machine now, robust to one slow or fast outlier.
pub fn median_of_five(time: impl FnMut(usize) -> Duration) -> Duration {
    let mut times: Vec<Duration> = (0..5).map(time).collect();
    times.sort();
    times[2]
}

/// The complete lines a child printed with a given verb, as (owner, rest).
pub fn lines(out: &str, verb: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| l.strip_prefix(verb)?.strip_prefix(' '))
        .map(|rest| match rest.split_once(' ') {
            Some((who, more)) => (who.to_owned(), more.to_owned()),
            None => (rest.to_owned(), String::new()),
        })
        .collect()
}

/// Work that adapts to the machine's speed: rounds go on until `enough` units of work are
/// done (at least `min_rounds` rounds), or until `deadline` has passed, whichever comes
/// first; a test then checks that enough was done, and a machine too loaded to do it within
/// a generous deadline fails the test with the figures rather than passing on too little.
#[derive(Debug)]
pub struct Budget {
    started: Instant,
    deadline: Duration,
    min_rounds: usize,
    enough: usize,
    /// Rounds done so far.
    pub rounds: usize,
    /// Units of work done so far.
    pub done: usize,
}

impl Budget {
    /// A budget of at least `min_rounds` rounds and `enough` units, within `deadline`.
    pub fn new(min_rounds: usize, enough: usize, deadline: Duration) -> Budget {
        Budget {
            started: Instant::now(),
            deadline,
            min_rounds,
            enough,
            rounds: 0,
            done: 0,
        }
    }

    /// Whether another round should run.
    pub fn another_round(&self) -> bool {
        if self.started.elapsed() > self.deadline {
            return false;
        }
        self.rounds < self.min_rounds || self.done < self.enough
    }

    /// Records a finished round that did `done` units.
    pub fn finish_round(&mut self, done: usize) {
        self.rounds += 1;
        self.done += done;
    }

    /// Panics, naming `what`, unless the rounds and units asked for were done.
    pub fn assert_enough(&self, what: &str) {
        assert!(
            self.rounds >= self.min_rounds && self.done >= self.enough,
            "{what}: only {} rounds and {} units of work in {:?} (wanted {} and {}): the \
             machine was too slow to test anything meaningful",
            self.rounds,
            self.done,
            self.started.elapsed(),
            self.min_rounds,
            self.enough
        );
    }

    /// Time since the budget started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// Whether a test that cannot run here must fail (`CI=true`) rather than skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Skips a test (returning `None` after printing why), or fails it under `CI=true`.
pub fn skip_or_fail<T>(reason: &str) -> Option<T> {
    assert!(!in_ci(), "CI=true and a prerequisite is missing: {reason}");
    eprintln!("SKIPPED: {reason}");
    None
}

/// A tmpfs of a fixed size mounted on a test-made directory, unmounted on drop.
#[derive(Debug)]
pub struct TmpFs {
    root: tempfile::TempDir,
    mount: PathBuf,
}

impl TmpFs {
    /// Mounts a tmpfs of `bytes` (rounded to pages by the kernel); `None` with a printed
    /// reason when that is impossible here (not root, no `mount`), a panic under `CI=true`.
    pub fn mount(bytes: u64) -> Option<TmpFs> {
        let root = tempfile::tempdir().expect("temporary directory");
        let mount = root.path().join("fs");
        std::fs::create_dir(&mount).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(&mount)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(TmpFs { root, mount }),
            Ok(o) => skip_or_fail(&format!(
                "cannot mount a tmpfs (needs root): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => skip_or_fail(&format!("cannot run mount: {e}")),
        }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.mount
    }
}

impl Drop for TmpFs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.mount)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // A child still has a file open: detach now, the kernel frees it later.
            let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        }
        let _ = self.root.path();
    }
}
