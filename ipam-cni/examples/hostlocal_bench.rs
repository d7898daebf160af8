//! Side-by-side timing of `ipam-cni` and Debian's `host-local`, each process spawned directly
//! as a runtime spawns plugins (no shell in between, whose own fork/exec would dominate).
//!
//! ```sh
//! cargo build --release -p ipam-cni --example hostlocal_bench
//! target/release/examples/hostlocal_bench [OURS] [HOSTLOCAL]
//! ```
//!
//! Environment: `RUNS` (paired runs, default 9), `CYCLES` (ADD+DEL cycles per run, default
//! 20), `HELD` (addresses held in the second scenario, default 4096), `AGENT` (an
//! `ipam-agent` binary: adds a column for ipam-cni answered by a node agent, which keeps the
//! store open). Prints Markdown.
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
        Plugin::with_agent(label, bin, kind, dir, None)
    }

    /// A plugin whose configuration names the agent's socket (`ipam.agent`); `None`: no agent
    /// at all (`""`), so that the direct column never looks for the DaemonSet's socket.
    fn with_agent(
        label: &'static str,
        bin: PathBuf,
        kind: &str,
        dir: &Path,
        agent: Option<&Path>,
    ) -> Plugin {
        let agent = match (kind, agent) {
            ("ipam-cni", Some(socket)) => format!(r#","agent":"{}""#, socket.display()),
            ("ipam-cni", None) => r#","agent":"""#.to_owned(),
            _ => String::new(),
        };
        let conf = format!(
            r#"{{"cniVersion":"1.0.0","name":"benchnet","type":"bridge","ipam":{{"type":"{kind}","dataDir":"{}"{agent},"ranges":[[{{"subnet":"{SUBNET}"}}]]}}}}"#,
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
        // A call meant for the agent that the plugin made itself would time the wrong path.
        assert!(
            out.status.success() && out.stderr.is_empty(),
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

/// Times `plugins` (host-local last) on `held` held addresses: each run times each plugin
/// once, in an order rotated from run to run so that none always goes first; prints each
/// plugin's time and its ratio to host-local's.
fn scenario(name: &str, plugins: &[Plugin], held: usize, runs: usize, cycles: usize) {
    for i in 0..held {
        let id = format!("fill-{i}");
        for p in plugins {
            p.call("ADD", &id);
        }
    }
    let (theirs, ours) = plugins.split_last().expect("host-local and ours");
    println!("## {name}: {held} addresses held, {cycles} ADD+DEL cycles per run\n");
    let head: Vec<String> = ours.iter().map(|p| format!("{} ms", p.label)).collect();
    let ratio_head: Vec<String> = ours
        .iter()
        .map(|p| format!("{} / {}", p.label, theirs.label))
        .collect();
    println!(
        "| run | {} | {} ms | {} |",
        head.join(" | "),
        theirs.label,
        ratio_head.join(" | ")
    );
    println!("|---|{}", "---|".repeat(2 * ours.len() + 1));
    let mut ratios = vec![Vec::new(); ours.len()];
    for r in 0..runs {
        let mut times = vec![Duration::ZERO; plugins.len()];
        for k in 0..plugins.len() {
            let i = (k + r) % plugins.len();
            times[i] = plugins[i].cycles(cycles);
        }
        let base = times[plugins.len() - 1].as_secs_f64();
        let ms: Vec<String> = times
            .iter()
            .map(|t| format!("{:.1}", t.as_secs_f64() * 1e3))
            .collect();
        let rs: Vec<String> = (0..ours.len())
            .map(|i| {
                let ratio = times[i].as_secs_f64() / base;
                ratios[i].push(ratio);
                format!("{ratio:.3}")
            })
            .collect();
        println!("| {} | {} | {} |", r + 1, ms.join(" | "), rs.join(" | "));
    }
    println!();
    for (p, r) in ours.iter().zip(ratios) {
        println!(
            "median ratio {} / {}: **{:.3}**\n",
            p.label,
            theirs.label,
            median(r)
        );
    }
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
    let agent_bin = std::env::var_os("AGENT").map(PathBuf::from);
    for (name, n) in [("empty", 0), ("held", held)] {
        let mut plugins = vec![Plugin::with_agent(
            "ipam-cni",
            ours_bin.clone(),
            "ipam-cni",
            &work.path().join(format!("{name}-ours")),
            None,
        )];
        // Killed when the scenario ends.
        let mut agent = None;
        if let Some(bin) = &agent_bin {
            let dir = work.path().join(format!("{name}-agent"));
            let socket = work.path().join(format!("{name}-socket/agent.sock"));
            agent = Some(Agent::start(bin, &dir, &socket));
            plugins.push(Plugin::with_agent(
                "ipam-cni + agent",
                ours_bin.clone(),
                "ipam-cni",
                &dir,
                Some(&socket),
            ));
        }
        plugins.push(Plugin::new(
            "host-local",
            theirs_bin.clone(),
            "host-local",
            &work.path().join(format!("{name}-hl")),
        ));
        scenario(name, &plugins, n, runs, cycles);
        drop(agent);
    }
}

/// An `ipam-agent` process for one scenario, killed when dropped.
struct Agent(std::process::Child);

impl Agent {
    fn start(bin: &Path, dir: &Path, socket: &Path) -> Agent {
        let child = Command::new(bin)
            .arg("--data-dir")
            .arg(dir)
            .arg("--socket")
            .arg(socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "{} did not listen",
                bin.display()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        Agent(child)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
