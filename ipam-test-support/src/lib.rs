//! What the integration tests of several packages share, written once: the test API server
//! ([`test_cluster`]), its kubectl ([`kubectl_with`]), names no other test uses
//! ([`unique`]) and a namespace of one's own ([`namespace`]), a process run with a standard
//! input ([`run_with_stdin`]), a server waited for until it listens
//! ([`wait_until_listening`]), and the binaries of other packages of the workspace
//! ([`binary`]).
//!
//! A dev-dependency only: nothing here is part of a program.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// The test API server's admin kubeconfig (`IPAM_TEST_KUBECONFIG`), or `None` after saying
/// the tests are skipped; under `CI=true` a missing one is a failure.
pub fn test_cluster() -> Option<PathBuf> {
    match std::env::var_os("IPAM_TEST_KUBECONFIG") {
        Some(k) => Some(PathBuf::from(k)),
        None => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "IPAM_TEST_KUBECONFIG is not set: CI must start a test API server (testenv/start.sh)"
            );
            eprintln!("skipped: IPAM_TEST_KUBECONFIG is not set (start one with testenv/start.sh)");
            None
        }
    }
}

/// A name no other test or run uses.
pub fn unique(what: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Runs `cmd` to completion with `stdin` on its standard input: its exit code (-1 when a
/// signal ended it), stdout and stderr.
pub fn run_with_stdin(cmd: &mut Command, stdin: &str) -> (i32, String, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the test cluster's kubectl (`IPAM_TEST_KUBECTL`, else `testenv/kubectl.sh`) with
/// `kubeconfig`, `args` and `stdin`: `(exit code, stdout, stderr)`.
pub fn kubectl_with(kubeconfig: &Path, args: &[&str], stdin: &str) -> (i32, String, String) {
    let kubectl = std::env::var("IPAM_TEST_KUBECTL")
        .unwrap_or_else(|_| workspace().join("testenv/kubectl.sh").display().to_string());
    run_with_stdin(
        Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args),
        stdin,
    )
}

/// [`kubectl_with`] that must succeed: its stdout.
pub fn kubectl_ok(kubeconfig: &Path, args: &[&str], stdin: &str) -> String {
    let (code, stdout, stderr) = kubectl_with(kubeconfig, args, stdin);
    assert_eq!(code, 0, "kubectl {args:?}: {stderr}");
    stdout
}

/// A new namespace `{what}-PID-N` on the cluster of `kubeconfig`, for the allocation objects
/// of one test (as `deploy/` creates `ipam-rs`).
pub fn namespace(kubeconfig: &Path, what: &str) -> String {
    let ns = unique(what);
    kubectl_ok(kubeconfig, &["create", "namespace", &ns], "");
    ns
}

/// `ipamctl` (the binary at `bin`) on the Kubernetes store: `--kubeconfig`, `--namespace`
/// (where the allocation objects live), then `args`; `(exit code, stdout, stderr)`.
pub fn ipamctl_on_cluster(
    bin: &Path,
    kubeconfig: &Path,
    namespace: &str,
    args: &[&str],
    stdin: &str,
) -> (i32, String, String) {
    run_with_stdin(
        Command::new(bin)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--namespace", namespace])
            .args(args),
        stdin,
    )
}

/// The workspace's root directory.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("this crate lies in the workspace's root")
        .to_owned()
}

/// The binary `name` of the workspace's package `package`, up to date, in the target
/// directory and profile of the running test.
///
/// Cargo gives a test the binaries of its own package (`env!("CARGO_BIN_EXE_NAME")`), and
/// those only: `cargo test -p ipam-cni` neither builds nor locates `ipamctl`. A test that
/// runs another package's binary calls this, which runs `cargo build -p PACKAGE --bin NAME`
/// (with the profile, and the `--target`, the test itself was built with) once per test
/// process: a no-op when the binary is up to date, so the test never runs a stale one. Cargo
/// holds its build lock only while it builds, not while tests run, so the nested build does
/// not wait on the outer one.
pub fn binary(package: &str, name: &str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(name) {
        return path.clone();
    }
    // A test runs as TARGET[/TRIPLE]/PROFILE/deps/TEST-HASH.
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test binary lies in PROFILE/deps");
    let profile = profile_dir
        .file_name()
        .and_then(|p| p.to_str())
        .expect("a profile directory named in UTF-8");
    let mut target_dir = profile_dir.parent().expect("a target directory").to_owned();
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace())
        .args([
            "build",
            "--quiet",
            "-p",
            package,
            "--bin",
            name,
            "--profile",
        ])
        // Cargo's directory for the dev profile is `debug`; every other is named after its
        // profile.
        .arg(if profile == "debug" { "dev" } else { profile });
    // Cargo keeps its caches at the root of a target directory; a test built with
    // `--target` lies one level below it, in the triple's directory.
    let is_root = |d: &Path| d.join(".rustc_info.json").exists() || d.join("CACHEDIR.TAG").exists();
    if !is_root(&target_dir) && target_dir.parent().is_some_and(is_root) {
        let triple = target_dir.file_name().expect("a target triple").to_owned();
        cmd.arg("--target").arg(triple);
        target_dir = target_dir.parent().expect("a target directory").to_owned();
    }
    let status = cmd
        .env("CARGO_TARGET_DIR", &target_dir)
        .status()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed: {status}");
    let path = profile_dir.join(name);
    built.insert(name.to_owned(), path.clone());
    path
}

/// Waits until `child`, a server of this workspace, accepts connections on the unix socket
/// `socket`: panics if it exits first, or after a minute (a generous bound on a busy machine).
pub fn wait_until_listening(child: &mut std::process::Child, socket: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{child:?} exited before listening on {}: {status}",
                socket.display()
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing listens on {} after a minute",
            socket.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
