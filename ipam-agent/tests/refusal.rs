//! The agent's side of the conversation, spoken to directly: what a plugin of another
//! release, or a request for another store, gets back (the plugin then makes the call itself).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    let child = Command::new(env!("CARGO_BIN_EXE_ipam-agent"))
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--socket")
        .arg(socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn ipam-agent");
    let agent = Agent(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while UnixStream::connect(socket).is_err() {
        assert!(Instant::now() < deadline, "ipam-agent did not listen");
        std::thread::sleep(Duration::from_millis(5));
    }
    agent
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
    let conf = serde_json::json!({"cniVersion": "1.1.0", "name": "net1", "type": "bridge",
        "ipam": {"type": "ipam-cni", "dataDir": data_dir, "ranges": [[{"subnet": "198.51.100.0/24"}]]}});
    Request {
        protocol: PROTOCOL,
        version: version.to_owned(),
        env: [
            ("CNI_COMMAND", "ADD"),
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
