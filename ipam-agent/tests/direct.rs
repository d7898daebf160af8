//! The agent's side of the conversation, spoken to directly: what a plugin of another
//! release, or a request for another store, gets back (the plugin then makes the call
//! itself), and what the agent's metrics and health say of the calls it answered.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};

use ipam_cni::cni::agent::{Reply, Request, PROTOCOL, VERSION};

/// An agent of the redb store in `data_dir`, killed when dropped.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(data_dir: &std::path::Path, socket: &std::path::Path) -> Agent {
    start_with(data_dir, socket, &[]).0
}

/// An agent as [`start`] makes, with `args` besides; when they ask for metrics, also the
/// address they are served on, as its log line says.
fn start_with(
    data_dir: &std::path::Path,
    socket: &std::path::Path,
    args: &[&str],
) -> (Agent, Option<String>) {
    let metrics = args.contains(&"--metrics");
    let child = Command::new(env!("CARGO_BIN_EXE_ipam-agent"))
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(if metrics {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .spawn()
        .expect("spawn ipam-agent");
    let mut agent = Agent(child);
    let mut address = None;
    if metrics {
        let mut lines = BufReader::new(agent.0.stderr.take().unwrap()).lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
            eprintln!("{line}");
            if let Some((_, rest)) = line.split_once("metrics on http://") {
                address = rest.split_once('/').map(|(a, _)| a.to_owned());
                break;
            }
        }
        assert!(address.is_some(), "the agent named no metrics address");
        std::thread::spawn(move || lines.for_each(|l| eprintln!("{}", l.unwrap_or_default())));
    }
    ipam_test_support::wait_until_listening(&mut agent.0, socket);
    (agent, address)
}

/// GET `path` of the agent's HTTP server at `address`: the status code and the body.
fn get(address: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Sends `request` and returns the one reply.
fn ask(socket: &std::path::Path, request: &Request) -> Reply {
    let mut stream = UnixStream::connect(socket).unwrap();
    let mut line = serde_json::to_vec(request).unwrap();
    line.push(b'\n');
    stream.write_all(&line).unwrap();
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply).unwrap();
    serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{e}: {reply:?}"))
}

fn add_request(data_dir: &std::path::Path, version: &str) -> Request {
    request("ADD", data_dir, version)
}

fn request(command: &str, data_dir: &std::path::Path, version: &str) -> Request {
    let conf = serde_json::json!({"cniVersion": "1.1.0", "name": "net1", "type": "bridge",
        "ipam": {"type": "ipam-cni", "dataDir": data_dir, "ranges": [[{"subnet": "198.51.100.0/24"}]]}});
    Request {
        protocol: PROTOCOL,
        version: version.to_owned(),
        env: [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        stdin: conf.to_string(),
    }
}

#[test]
fn a_plugin_of_another_release_or_store_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("served");
    let socket = dir.path().join("run/agent.sock");
    let _agent = start(&served, &socket);

    let refused = ask(&socket, &add_request(&served, "0.0.1"));
    assert_eq!(
        refused,
        Reply::Refused {
            version: VERSION.to_owned(),
            why: format!(
                "ipam-agent {VERSION} (protocol {PROTOCOL}) does not serve ipam-cni 0.0.1 \
                 (protocol {PROTOCOL}): install the plugin and the agent of one release"
            ),
        }
    );
    let other = dir.path().join("other");
    let Reply::Refused { why, .. } = ask(&socket, &add_request(&other, VERSION)) else {
        panic!("a request for another store was answered");
    };
    assert_eq!(
        why,
        format!(
            "this agent serves the redb store at {}, and network \"net1\" uses the redb store at {}",
            served.display(),
            other.display()
        )
    );
    assert!(
        !served.exists() && !other.exists(),
        "a refused call opened a store"
    );

    // The same request of this release is answered: the refusals were about what they say.
    let Reply::Answer {
        stdout, exit_code, ..
    } = ask(&socket, &add_request(&served, VERSION))
    else {
        panic!("this release's request was refused");
    };
    assert_eq!(exit_code, 0, "{stdout}");
    assert!(stdout.contains("198.51.100."), "{stdout}");
}

#[test]
fn metrics_count_the_calls_answered_and_health_follows_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("served");
    let socket = dir.path().join("run/agent.sock");
    let (_agent, address) = start_with(&served, &socket, &["--metrics", "127.0.0.1:0"]);
    let address = address.unwrap();
    assert_eq!(get(&address, "/healthz"), (200, "ok\n".to_owned()));

    let answered = |reply: Reply| match reply {
        Reply::Answer { exit_code, .. } => exit_code,
        other => panic!("refused: {other:?}"),
    };
    assert_eq!(answered(ask(&socket, &request("ADD", &served, VERSION))), 0);
    assert_eq!(
        answered(ask(&socket, &request("ADD", &served, VERSION))),
        0,
        "again: the same holder"
    );
    assert_eq!(answered(ask(&socket, &request("DEL", &served, VERSION))), 0);
    // Refused by the plugin's own checks (an unknown command): answered with code 4.
    assert_eq!(
        answered(ask(&socket, &request("PING", &served, VERSION))),
        1
    );
    // Another store: refused, not answered.
    let other = dir.path().join("other");
    assert!(matches!(
        ask(&socket, &request("ADD", &other, VERSION)),
        Reply::Refused { .. }
    ));

    let (status, text) = get(&address, "/metrics");
    assert_eq!(status, 200);
    for line in [
        "ipam_rs_agent_calls_total{command=\"ADD\",code=\"0\"} 2",
        "ipam_rs_agent_calls_total{command=\"DEL\",code=\"0\"} 1",
        "ipam_rs_agent_calls_total{command=\"invalid\",code=\"4\"} 1",
        "ipam_rs_agent_call_duration_seconds_count{command=\"ADD\"} 2",
        "ipam_rs_agent_refusals_total 1",
        "ipam_rs_agent_undelivered_total 0",
        "ipam_rs_agent_queued_calls 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("ipam_rs_agent_store_opens_total{result=\"opened\"} ")),
        "{text}"
    );
    assert_eq!(get(&address, "/nothing").0, 404);

    // A socket removed from under the agent reaches no plugin: unhealthy, so that the
    // DaemonSet's probe restarts it.
    std::fs::remove_file(&socket).unwrap();
    let (status, why) = get(&address, "/healthz");
    assert_eq!(status, 503);
    assert!(
        why.starts_with(&format!("the socket {}: ", socket.display())),
        "{why}"
    );
}
