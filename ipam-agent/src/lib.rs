//! `ipam-agent`, the node agent: serves the `ipam-cni` plugin on a unix socket from a store
//! it keeps open, so that a call costs neither a process's store opening (an embedded
//! store's lock and file, the Kubernetes store's kubeconfig, TCP and TLS handshakes) nor
//! anything the plugin would not do.
//!
//! The agent runs the plugin's own code ([`ipam_cni::cni::execute_and_answer`]) on the
//! invocation the plugin sends ([`ipam_cni::cni::agent`]), so its answers are those of the
//! direct path. It serves one store, the one its command line names; a call for another
//! store is refused, and the plugin makes it itself.
//!
//! Calls run one at a time on one thread, which owns the store: an embedded store's
//! processes queue on its lock anyway, and the engine's compare-and-swap writes make a call
//! of the agent and one of a plugin that went direct safe beside each other. An embedded
//! store is closed when no call came for [`Agent::idle_close`], which lets `ipamctl` and
//! plugins that go direct take its lock between bursts.
//!
//! ```no_run
//! use ipam_agent::Agent;
//! use ipam_store::StoreChoice;
//! let agent = Agent::new(StoreChoice::Redb, "/var/lib/cni/ipam-cni".into());
//! let socket = std::path::Path::new("/run/ipam-rs/agent.sock");
//! let listener = ipam_agent::bind(socket).unwrap();
//! let metrics = std::sync::Arc::new(ipam_agent::metrics::Metrics::default());
//! ipam_agent::metrics::serve("127.0.0.1:9474", metrics.clone(), socket.into()).unwrap();
//! agent.serve(listener, metrics); // never returns
//! ```

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use ipam_cni::cni::agent::{Deliverer, Request};
use ipam_cni::cni::command::Invocation;
use ipam_cni::cni::config::NetConf;
use ipam_cni::cni::{self, log as cni_log, Session};
use ipam_store::{StoreChoice, DEFAULT_LOCK_WAIT};

pub mod metrics;
use metrics::Metrics;

/// How long the agent waits for a plugin's request once it has connected.
pub const REQUEST_WAIT: Duration = Duration::from_secs(2);

/// How long an embedded store stays open without calls, unless told otherwise.
pub const DEFAULT_IDLE_CLOSE: Duration = Duration::from_millis(100);

/// The agent's configuration: the store it serves and how it holds it.
#[derive(Clone, Debug)]
pub struct Agent {
    /// The store.
    pub store: StoreChoice,
    /// Its data directory (embedded stores).
    pub data_dir: PathBuf,
    /// How long to wait for other processes holding an embedded store's lock when opening
    /// it.
    pub lock_wait: Duration,
    /// How long an embedded store stays open after the last call (`None`: until the agent
    /// exits). The Kubernetes store stays open.
    pub idle_close: Option<Duration>,
}

impl Agent {
    /// An agent of `store` in `data_dir`, with the default waits.
    pub fn new(store: StoreChoice, data_dir: PathBuf) -> Agent {
        Agent {
            store,
            data_dir,
            lock_wait: DEFAULT_LOCK_WAIT,
            idle_close: Some(DEFAULT_IDLE_CLOSE),
        }
    }

    /// The store, as the agent's messages name it.
    pub fn describe(&self) -> String {
        describe(&self.store, &self.data_dir)
    }

    /// Whether this agent serves the network `net`: `Err` says why not.
    ///
    /// An embedded store is the same when its kind and data directory are. A Kubernetes
    /// store is the same when its namespace, API and node are: the kubeconfig is only how
    /// one reaches the cluster, and the agent reaches it with its own (in a Pod, its service
    /// account).
    pub fn serves(&self, net: &NetConf) -> Result<(), String> {
        let same = match (&self.store, &net.store) {
            #[cfg(feature = "kube")]
            (StoreChoice::Kubernetes(mine), StoreChoice::Kubernetes(theirs)) => {
                let namespace = |k: &ipam_store::KubeChoice| {
                    k.namespace.clone().unwrap_or_else(|| "ipam-rs".to_owned())
                };
                let node =
                    |k: &ipam_store::KubeChoice| k.node.clone().or_else(ipam_store::hostname);
                namespace(mine) == namespace(theirs)
                    && mine.api == theirs.api
                    && node(mine) == node(theirs)
            }
            (mine, theirs) => mine == theirs && self.data_dir == net.data_dir,
        };
        if same {
            Ok(())
        } else {
            Err(format!(
                "this agent serves {}, and network {:?} uses {}",
                self.describe(),
                net.name,
                describe(&net.store, &net.data_dir)
            ))
        }
    }

    /// Serves the plugin on `listener` until the process ends, counting what it does in
    /// `metrics`.
    pub fn serve(self, listener: UnixListener, metrics: Arc<Metrics>) {
        let (calls, queue) = mpsc::channel::<Call>();
        let worker_metrics = metrics.clone();
        let worker = std::thread::Builder::new()
            .name("calls".to_owned())
            .spawn(move || {
                // Marks the thread stopped however it ends, a panic included.
                struct Stopped(Arc<Metrics>);
                impl Drop for Stopped {
                    fn drop(&mut self) {
                        self.0.health.stopped();
                    }
                }
                let stopped = Stopped(worker_metrics);
                self.work(queue, &stopped.0)
            })
            .expect("start the agent's call thread");
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => {
                    let calls = calls.clone();
                    let metrics = metrics.clone();
                    // The request is read apart from the call thread, so that a plugin slow to
                    // send it holds up nobody.
                    let spawned = std::thread::Builder::new()
                        .name("connection".to_owned())
                        .spawn(move || {
                            if let Some(call) = Call::read(stream) {
                                metrics.queued();
                                let _ = calls.send(call);
                            }
                        });
                    if let Err(e) = spawned {
                        note(&format!("cannot start a connection's thread: {e}"));
                    }
                }
                Err(e) => note(&format!("accept: {e}")),
            }
            if worker.is_finished() {
                note("the call thread stopped; exiting");
                std::process::exit(1);
            }
        }
    }

    /// The call thread: owns the store, opens it for a call, closes it when idle.
    fn work(self, queue: mpsc::Receiver<Call>, metrics: &Metrics) {
        let mut session: Option<(Session, Instant)> = None;
        loop {
            let call = match (
                &session,
                self.idle_close.filter(|_| self.store.is_embedded()),
            ) {
                (Some((_, last)), Some(idle)) => {
                    match queue.recv_timeout(idle.saturating_sub(last.elapsed())) {
                        Ok(call) => call,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            session = None;
                            metrics.store_closed();
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
                _ => match queue.recv() {
                    Ok(call) => call,
                    Err(_) => return,
                },
            };
            metrics.dequeued();
            metrics.health.call_begins();
            self.answer(call, &mut session, metrics);
            metrics.health.call_ends();
        }
    }

    /// Runs one call, opening the store first if it is closed.
    fn answer(&self, call: Call, session: &mut Option<(Session, Instant)>, metrics: &Metrics) {
        let Call {
            stream,
            request,
            read_at,
        } = call;
        let command = metrics::command_label(request.var("CNI_COMMAND").as_deref());
        let mut answered = None;
        let served = ipam_cni::cni::agent::serve_request(&stream, request, |request, deliverer| {
            let run = self.run(&request, deliverer, session, metrics);
            answered = deliverer
                .last_answer()
                .map(|(exit_code, stdout)| metrics::answer_code(exit_code, stdout));
            for _ in 0..deliverer.undelivered() {
                metrics.undelivered();
            }
            if run.is_err() {
                metrics.refused();
            }
            run
        });
        if let Some(code) = answered {
            metrics.call(command, code, read_at.elapsed());
        }
        if let Err(e) = served {
            metrics.undelivered();
            note(&format!("a plugin's connection: {e}"));
        }
    }

    fn run(
        &self,
        request: &Request,
        deliverer: &mut Deliverer<'_>,
        session: &mut Option<(Session, Instant)>,
        metrics: &Metrics,
    ) -> Result<(), String> {
        let var = |k: &str| request.var(k);
        let prepared = cni_log::capturing(|| cni::prepare(&var, request.stdin.as_bytes()));
        let (inv, subject) = match prepared {
            (Ok(ready), _) => ready,
            (Err(out), lines) => {
                deliverer.stderr = lines;
                // Nothing was taken: an answer that does not arrive costs nothing.
                let _ = deliverer.deliver(&out);
                return Ok(());
            }
        };
        self.serves(inv.net())?;
        if session.is_none() {
            *session =
                match ipam_store::open_for_service(&self.store, &self.data_dir, self.lock_wait) {
                    Ok(opened) => {
                        metrics.store_opened(true);
                        Some((Session::new(opened), Instant::now()))
                    }
                    Err(e) => {
                        metrics.store_opened(false);
                        let e = Session::open_failure(inv.command(), &e);
                        self.execute(&inv, &subject, Err(&e), deliverer);
                        return Ok(());
                    }
                };
        }
        if let Some((open, last)) = session.as_mut() {
            let before = open.requests();
            self.execute(&inv, &subject, Ok(open), deliverer);
            *last = Instant::now();
            if let (Some(before), Some(after)) = (before, open.requests()) {
                let command = metrics::command_label(request.var("CNI_COMMAND").as_deref());
                metrics.api_requests(command, &after.since(&before));
            }
        }
        Ok(())
    }

    fn execute(
        &self,
        inv: &Invocation,
        subject: &cni::Subject,
        session: Result<&Session, &ipam_cni::cni::error::CniError>,
        deliverer: &mut Deliverer<'_>,
    ) {
        cni_log::capturing(|| {
            cni::execute_and_answer(inv, subject, session, &mut |out| {
                deliverer.stderr = cni_log::take_captured();
                deliverer.deliver(out)
            })
        });
    }
}

/// One plugin's call: its connection, what it asks, and when that was read.
struct Call {
    stream: UnixStream,
    request: Request,
    read_at: Instant,
}

impl Call {
    /// Reads the request of a new connection, within [`REQUEST_WAIT`].
    fn read(stream: UnixStream) -> Option<Call> {
        let read = stream
            .set_read_timeout(Some(REQUEST_WAIT))
            .and_then(|()| ipam_cni::cni::agent::read_request(&stream));
        match read {
            Ok(Some(request)) => Some(Call {
                stream,
                request,
                read_at: Instant::now(),
            }),
            Ok(None) => None,
            Err(e) => {
                note(&format!("a plugin's request: {e}"));
                None
            }
        }
    }
}

fn describe(store: &StoreChoice, data_dir: &Path) -> String {
    match store {
        StoreChoice::Redb => format!("the redb store at {}", data_dir.display()),
        #[cfg(feature = "sled")]
        StoreChoice::Sled => format!("the sled store at {}", data_dir.display()),
        #[cfg(feature = "kube")]
        StoreChoice::Kubernetes(k) => format!(
            "the Kubernetes store (namespace {}, API {}, node {})",
            k.namespace.as_deref().unwrap_or("ipam-rs"),
            k.api,
            k.node
                .clone()
                .or_else(ipam_store::hostname)
                .unwrap_or_else(|| "-".to_owned())
        ),
    }
}

/// Makes the socket at `path`: its directory (created if needed) is made 0700 and the
/// socket 0600, so that only root reaches the agent. A socket left by an agent that died is
/// replaced; one an agent still answers on is not (`AddrInUse`).
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "the socket needs a directory")
        })?;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("an agent already serves on {}", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ))
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// A line on the agent's stderr about the agent itself (the calls' lines go where their
/// configuration says, as the plugin's).
pub fn note(message: &str) {
    eprintln!(
        "{} ipam-agent[{}] {message}",
        cni_log::timestamp(SystemTime::now()),
        std::process::id()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipam_cni::cni::version::CniVersion;
    use serde_json::json;

    fn net(ipam: serde_json::Value) -> NetConf {
        NetConf::parse(&json!({"name": "net1", "ipam": ipam}), CniVersion::V1_1_0).unwrap()
    }

    #[cfg(feature = "sled")]
    #[test]
    fn an_embedded_store_is_served_by_kind_and_data_directory() {
        let agent = Agent::new(StoreChoice::Redb, "/var/lib/a".into());
        assert_eq!(agent.serves(&net(json!({"dataDir": "/var/lib/a"}))), Ok(()));
        assert_eq!(
            agent.serves(&net(json!({"dataDir": "/var/lib/b"}))),
            Err(
                "this agent serves the redb store at /var/lib/a, and network \"net1\" \
                 uses the redb store at /var/lib/b"
                    .to_owned()
            )
        );
        assert_eq!(
            agent.serves(&net(json!({"dataDir": "/var/lib/a", "store": "sled"}))),
            Err(
                "this agent serves the redb store at /var/lib/a, and network \"net1\" \
                 uses the sled store at /var/lib/a"
                    .to_owned()
            )
        );
    }

    #[cfg(feature = "kube")]
    #[test]
    fn a_kubernetes_store_is_served_by_namespace_api_and_node_not_kubeconfig() {
        let agent = Agent::new(
            StoreChoice::Kubernetes(ipam_store::KubeChoice {
                kubeconfig: None,
                node: Some("node1".to_owned()),
                namespace: None,
                api: ipam_api::Api::IpamRs,
            }),
            "/var/lib/cni/ipam-cni".into(),
        );
        let kube = |k: serde_json::Value| net(json!({"store": {"kubernetes": k}}));
        assert_eq!(
            agent.serves(&kube(json!({"kubeconfig": "/etc/k", "nodeName": "node1"}))),
            Ok(())
        );
        assert_eq!(
            agent.serves(&kube(json!({"nodeName": "node1", "namespace": "ipam-rs"}))),
            Ok(())
        );
        for other in [
            json!({"nodeName": "node2"}),
            json!({"nodeName": "node1", "namespace": "other"}),
            json!({"nodeName": "node1", "api": "spiderpool"}),
        ] {
            let refused = agent.serves(&kube(other.clone()));
            assert!(
                refused.as_ref().is_err_and(|why| why.starts_with(
                    "this agent serves the Kubernetes store (namespace ipam-rs, API ipam.rs, node node1)"
                )),
                "{other}: {refused:?}"
            );
        }
        assert!(
            agent.serves(&net(json!({}))).is_err(),
            "redb is not this store"
        );
    }

    #[test]
    fn the_socket_is_private_and_a_live_one_is_not_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/agent.sock");
        let listener = bind(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&path), 0o600);
        let busy = bind(&path).unwrap_err();
        assert_eq!(busy.kind(), io::ErrorKind::AddrInUse, "{busy}");
        drop(listener);
        // A socket whose agent is gone is replaced.
        bind(&path).unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert_eq!(
            bind(&file).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
    }
}
