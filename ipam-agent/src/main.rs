//! `ipam-agent --socket PATH [store options]`: the node agent. The store options are
//! `ipamctl`'s (`--store`, `--data-dir`, `--kubeconfig`, `--namespace`, `--api`), plus
//! `--node` for the Kubernetes store, and `--metrics ADDRESS` for `/metrics` and `/healthz`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use ipam_agent::metrics::{self, Metrics};
use ipam_agent::{bind, note, Agent};
use ipam_cni::cni::config::DEFAULT_AGENT_SOCKET;
use ipam_store::{self as store, Quoting, StoreChoice, DEFAULT_DATA_DIR};

/// The node agent of ipam-rs: serves the ipam-cni plugin on a unix socket from a store it
/// keeps open.
#[derive(Debug, Parser)]
#[command(name = "ipam-agent", version)]
struct Cli {
    /// The socket to serve on (its directory is made 0700, the socket 0600).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_AGENT_SOCKET)]
    socket: PathBuf,
    /// Directory of the embedded store (as `dataDir` of the CNI configuration).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Which store to serve.
    #[arg(long, value_enum, default_value_t = StoreKind::Redb)]
    store: StoreKind,
    /// The kubeconfig of the Kubernetes store (default: the in-cluster service account, else
    /// the usual discovery); implies `--store kubernetes`.
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// The namespace of the Kubernetes store's allocation objects (default `ipam-rs`).
    #[arg(long, value_name = "NS")]
    namespace: Option<String>,
    /// The API pools and reservations are served with: ipam.rs (the default) or spiderpool.
    #[arg(long, value_name = "API", value_parser = parse_api)]
    api: Option<ipam_api::Api>,
    /// The node this agent allocates for (Kubernetes store; default: this host's name).
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// How long to wait for another process holding an embedded store's lock.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration,
          default_value = "30s")]
    lock_wait: Duration,
    /// How long an embedded store stays open after the last call, so that ipamctl and
    /// plugins going direct get its lock between bursts; 0 keeps it open.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration,
          default_value = "100ms")]
    idle_close: Duration,
    /// Where to serve `/metrics` (Prometheus text) and `/healthz` over HTTP, as HOST:PORT
    /// (the DaemonSet: port 9474 of the node's address); default: not served.
    #[arg(long, value_name = "ADDRESS")]
    metrics: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StoreKind {
    /// redb in the data directory (the default).
    Redb,
    /// sled in the data directory.
    Sled,
    /// Kubernetes custom resources.
    Kubernetes,
}

fn parse_api(text: &str) -> Result<ipam_api::Api, String> {
    text.parse()
        .map_err(|e: ipam_api::UnknownApi| format!("{:?}: must be ipam.rs or spiderpool", e.value))
}

impl Cli {
    fn store_choice(&self) -> Result<StoreChoice, String> {
        let kube = self.kubeconfig.is_some()
            || self.namespace.is_some()
            || self.api.is_some()
            || self.node.is_some();
        match (self.store, kube) {
            (StoreKind::Redb, false) => Ok(StoreChoice::Redb),
            (StoreKind::Sled, false) => {
                store::sled(Quoting::Bare).map_err(|e| format!("--store sled: {e}"))
            }
            (StoreKind::Sled, true) => Err(
                "--kubeconfig, --namespace, --api and --node are for the Kubernetes store, \
                 not --store sled"
                    .to_owned(),
            ),
            (StoreKind::Kubernetes, _) | (StoreKind::Redb, true) => store::kubernetes(
                store::KubeChoice {
                    kubeconfig: self.kubeconfig.clone(),
                    node: self.node.clone(),
                    namespace: self.namespace.clone(),
                    api: self.api.unwrap_or_default(),
                },
                Quoting::Bare,
            )
            .map_err(|e| format!("--store kubernetes: {e}")),
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let choice = match cli.store_choice() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let agent = Agent {
        store: choice,
        data_dir: cli.data_dir.clone(),
        lock_wait: cli.lock_wait,
        idle_close: (!cli.idle_close.is_zero()).then_some(cli.idle_close),
    };
    let listener = match bind(&cli.socket) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot serve on {}: {e}", cli.socket.display());
            std::process::exit(1);
        }
    };
    let metrics = Arc::new(Metrics::default());
    if let Some(address) = &cli.metrics {
        match metrics::serve(address, metrics.clone(), cli.socket.clone()) {
            Ok(bound) => note(&format!(
                "metrics on http://{bound}/metrics, health on http://{bound}/healthz"
            )),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
    }
    note(&format!(
        "ipam-agent {} serves {} on {}",
        env!("CARGO_PKG_VERSION"),
        agent.describe(),
        cli.socket.display()
    ));
    agent.serve(listener, metrics);
}
