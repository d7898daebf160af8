//! Side-by-side timing of `ipam-cni` and Debian's `host-local`, each process spawned directly
//! as a runtime spawns plugins (no shell in between, whose own fork/exec would dominate).
//!
//! ```sh
//! cargo build --release -p ipam-cni --example hostlocal_bench
//! target/release/examples/hostlocal_bench [OURS] [HOSTLOCAL]
//! ```
//!
//! Environment: `RUNS` (paired runs, default 9), `CYCLES` (ADD+DEL cycles per run, default
//! 20), `HELD` (addresses held in the second scenario, default 4096). Prints Markdown.
//!
//! Both plugins are given the same /16 (RFC 2544's benchmarking range) in temporary data
//! directories; an IPAM plugin only records addresses, so no network is touched.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SUBNET: &str = "198.18.0.0/16";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Plugin {
    label: &'static str,
    bin: PathBuf,
    conf: String,
}

impl Plugin {
    fn new(label: &'static str, bin: PathBuf, kind: &str, dir: &Path) -> Plugin {
        let conf = format!(
            r#"{{"cniVersion":"1.0.0","name":"benchnet","type":"bridge","ipam":{{"type":"{kind}","dataDir":"{}","ranges":[[{{"subnet":"{SUBNET}"}}]]}}}}"#,
            dir.display()
        );
        Plugin { label, bin, conf }
    }

    /// One invocation, checked: a failed call would make the timing meaningless.
    fn call(&self, command: &str, id: &str) {
        let mut child = Command::new(&self.bin)
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_NETNS", "/var/run/netns/bench")
            .env("CNI_PATH", "/usr/lib/cni")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.display()));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(self.conf.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{} {command} {id}: {}{}",
            self.label,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn cycles(&self, n: usize) -> Duration {
        let start = Instant::now();
        for i in 0..n {
            let id = format!("bench-{i}");
            self.call("ADD", &id);
            self.call("DEL", &id);
        }
        start.elapsed()
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn scenario(name: &str, ours: &Plugin, theirs: &Plugin, held: usize, runs: usize, cycles: usize) {
    for i in 0..held {
        let id = format!("fill-{i}");
        ours.call("ADD", &id);
        theirs.call("ADD", &id);
    }
    println!("## {name}: {held} addresses held, {cycles} ADD+DEL cycles per run\n");
    println!("| run | ipam-cni ms | host-local ms | ratio |");
    println!("|---|---|---|---|");
    let mut ratios = Vec::new();
    for r in 1..=runs {
        // Alternate the order so that neither plugin always runs second.
        let (a, b) = if r % 2 == 1 {
            let a = ours.cycles(cycles);
            (a, theirs.cycles(cycles))
        } else {
            let b = theirs.cycles(cycles);
            (ours.cycles(cycles), b)
        };
        let ratio = a.as_secs_f64() / b.as_secs_f64();
        ratios.push(ratio);
        println!(
            "| {r} | {:.1} | {:.1} | {ratio:.3} |",
            a.as_secs_f64() * 1e3,
            b.as_secs_f64() * 1e3
        );
    }
    println!(
        "\nmedian ratio ipam-cni / host-local: **{:.3}**\n",
        median(ratios)
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let ours_bin = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/ipam-cni")
    });
    let theirs_bin = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/cni/host-local"));
    let (runs, cycles, held) = (
        env_or("RUNS", 9),
        env_or("CYCLES", 20),
        env_or("HELD", 4096),
    );
    let work = tempfile::tempdir().unwrap();
    println!("# ipam-cni vs host-local (processes spawned directly)\n");
    println!(
        "ipam-cni: `{}`; host-local: `{}`\n",
        ours_bin.display(),
        theirs_bin.display()
    );
    for (name, n) in [("empty", 0), ("held", held)] {
        let ours = Plugin::new(
            "ipam-cni",
            ours_bin.clone(),
            "ipam-cni",
            &work.path().join(format!("{name}-ours")),
        );
        let theirs = Plugin::new(
            "host-local",
            theirs_bin.clone(),
            "host-local",
            &work.path().join(format!("{name}-hl")),
        );
        scenario(name, &ours, &theirs, n, runs, cycles);
    }
}
