//! The plugin with a node agent: the agent killed at any instant loses no holder and
//! doubles none, and the plugin makes the calls itself while no agent answers.
//! (`protocol.rs` runs the whole protocol through an agent too.)

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::{call, finish, holders, netconf, start_agent};
use serde_json::json;

/// Waves of concurrent ADDs and DELs while the agent is killed with SIGKILL at random
/// instants and started again: every call succeeds (through the agent, or made by the
/// plugin itself once the agent is gone), and in the end the store holds exactly the
/// addresses the acknowledged ADDs printed, each once, for the owners not released since.
#[test]
fn an_agent_killed_at_any_instant_loses_no_holder_and_doubles_none() {
    let dir = tempfile::tempdir().unwrap();
    let sockets = tempfile::tempdir().unwrap();
    let socket = sockets.path().join("run/agent.sock");
    let mut conf = netconf(
        "1.1.0",
        "kills",
        dir.path(),
        json!({"ranges": [[{"subnet": "198.51.100.0/24",
                            "rangeStart": "198.51.100.10", "rangeEnd": "198.51.100.250"}]]}),
    );
    conf["ipam"]["agent"] = json!(socket.to_str().unwrap());
    let args: Vec<String> = ["--data-dir", dir.path().to_str().unwrap()]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let mut rng = fastrand::Rng::with_seed(17);
    let mut agent = start_agent(&args, &socket);
    // What the runtime was told: owner → address, for owners not released since.
    let mut acknowledged: BTreeMap<String, String> = BTreeMap::new();
    let (mut kills, mut fallbacks, mut answered, mut waves) = (0, 0, 0, 0);
    // Enough waves that kills land in every phase of a call, within a generous bound.
    let deadline = Instant::now() + Duration::from_secs(120);
    while waves < 40 || (kills < 20 && Instant::now() < deadline) {
        waves += 1;
        let wave: Vec<(String, &str)> = (0..6)
            .map(|i| {
                let release = !acknowledged.is_empty() && rng.bool();
                match release {
                    true => {
                        let k = rng.usize(..acknowledged.len());
                        let owner = acknowledged.keys().nth(k).unwrap().clone();
                        (owner, "DEL")
                    }
                    false => (format!("w{waves}-{i}"), "ADD"),
                }
            })
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .collect();
        let children: Vec<_> = wave
            .iter()
            .map(|(owner, command)| call(command, owner, &conf).spawn())
            .collect();
        // A kill in the middle of the wave, at an instant that varies from wave to wave.
        std::thread::sleep(Duration::from_micros(rng.u64(0..6000)));
        let killed = rng.u8(..3) > 0;
        if killed {
            agent.kill();
            kills += 1;
        }
        for ((owner, command), child) in wave.iter().zip(children) {
            let r = finish(child);
            assert_eq!(r.status, Some(0), "{command} {owner}: {r:#?}");
            if r.stderr.contains("doing the call here") {
                fallbacks += 1;
            } else {
                answered += 1;
            }
            match *command {
                "ADD" => {
                    let got = r.addresses();
                    assert_eq!(got.len(), 1, "{r:#?}");
                    acknowledged.insert(owner.clone(), got[0].clone());
                }
                _ => {
                    acknowledged.remove(owner);
                }
            }
        }
        if killed {
            agent = start_agent(&args, &socket);
        }
    }
    drop(agent);
    assert!(UnixStream::connect(&socket).is_err(), "the agent is gone");
    let held = holders(dir.path());
    let addresses: BTreeSet<&String> = held.iter().map(|(a, _)| a).collect();
    assert_eq!(
        addresses.len(),
        held.len(),
        "an address held twice: {held:?}"
    );
    let expected: BTreeSet<(String, String)> = acknowledged
        .iter()
        .map(|(owner, address)| (address.split('/').next().unwrap().to_owned(), owner.clone()))
        .collect();
    let held: BTreeSet<(String, String)> = held.into_iter().collect();
    assert_eq!(held, expected, "the store is not what the runtime was told");
    // Both paths were taken: the storm tested the hand-over, not one side of it.
    assert!(
        fallbacks > 0 && answered > 0,
        "{kills} kills, {answered} calls answered by the agent, {fallbacks} made by the plugin"
    );
    eprintln!(
        "{waves} waves, {kills} kills: {answered} calls answered by the agent, {fallbacks} made by the plugin itself"
    );
}

/// A socket with no agent behind it (one that died and left it) costs the plugin nothing
/// but a log line: it makes the call itself. An agent of another store refuses the call and
/// the plugin makes it itself, on the store its configuration names.
#[test]
fn without_an_answer_the_plugin_makes_the_call_itself() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let sockets = tempfile::tempdir().unwrap();
    let socket = sockets.path().join("agent.sock");
    let mut conf = netconf(
        "1.1.0",
        "alone",
        dir.path(),
        json!({"ranges": [[{"subnet": "198.51.100.0/24"}]]}),
    );
    conf["ipam"]["agent"] = json!(socket.to_str().unwrap());

    let absent = call("ADD", "c1", &conf).run().ok();
    assert!(
        absent.stderr.contains(&format!(
            "the agent at {} does not exist; doing the call here",
            socket.display()
        )),
        "{}",
        absent.stderr
    );

    let args = |d: &std::path::Path| vec!["--data-dir".to_owned(), d.display().to_string()];
    let mut agent = start_agent(&args(dir.path()), &socket);
    agent.kill();
    let stale = call("ADD", "c2", &conf).run().ok();
    assert!(
        stale.stderr.contains("cannot be reached") && stale.stderr.contains("doing the call here"),
        "{}",
        stale.stderr
    );

    let _agent = start_agent(&args(other.path()), &socket);
    let refused = call("ADD", "c3", &conf).run().ok();
    assert!(
        refused.stderr.contains(&format!(
            "refused the call: this agent serves the redb store at {}, and network \"alone\" uses the redb store at {}; doing the call here",
            other.path().display(),
            dir.path().display()
        )),
        "{}",
        refused.stderr
    );
    let held: BTreeSet<String> = holders(dir.path()).into_iter().map(|(_, o)| o).collect();
    assert_eq!(held, BTreeSet::from(["c1", "c2", "c3"].map(String::from)));
    assert!(
        holders(other.path()).is_empty(),
        "the other store was written"
    );
}

/// Without `ipam.agent` the plugin looks for the DaemonSet's socket and, when there is
/// none, says nothing about it; `"agent": ""` never looks.
#[test]
fn the_default_socket_is_used_only_when_it_exists() {
    let dir = tempfile::tempdir().unwrap();
    let conf = netconf(
        "1.1.0",
        "quiet",
        dir.path(),
        json!({"ranges": [[{"subnet": "198.51.100.0/24"}]]}),
    );
    if std::path::Path::new(ipam_cni::cni::config::DEFAULT_AGENT_SOCKET).exists() {
        eprintln!("an agent serves this host: the default socket's absence cannot be tested");
        return;
    }
    let r = call("ADD", "c1", &conf).run().ok();
    assert_eq!(r.stderr, "", "a missing default socket is not news");
    let mut never = conf.clone();
    never["ipam"]["agent"] = json!("");
    assert_eq!(call("ADD", "c2", &never).run().ok().stderr, "");
}

/// A bad `ipam.agent` is refused where it is a mistake to fix (ADD, code 7 naming the
/// field), and ignored, with a warning, where refusing would keep an address held (DEL).
#[test]
fn a_bad_agent_setting_is_refused_but_never_keeps_an_address_held() {
    let dir = tempfile::tempdir().unwrap();
    let conf = netconf(
        "1.1.0",
        "bad-agent",
        dir.path(),
        json!({"ranges": [[{"subnet": "198.51.100.0/24"}]]}),
    );
    call("ADD", "c1", &conf).run().ok();
    let mut bad = conf.clone();
    bad["ipam"]["agent"] = json!("run/agent.sock");
    let refused = call("ADD", "c2", &bad).run();
    assert_eq!(refused.code(), Some(7), "{refused:#?}");
    assert_eq!(
        refused.msg(),
        r#"ipam.agent: "run/agent.sock": must be an absolute path (the node agent's socket), or "" for none"#
    );
    let del = call("DEL", "c1", &bad).run().ok();
    assert!(
        del.stderr
            .contains("; ignored: DEL is made without an agent"),
        "{}",
        del.stderr
    );
    assert!(holders(dir.path()).is_empty(), "DEL released nothing");
}
