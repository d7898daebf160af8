//! `ipam-controller`: the lifecycle controller of ipam-rs on Kubernetes (see the library's
//! `controller` module and docs/kubernetes.md).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use ipam_controller::controller::lease::{Elector, Role};
use ipam_controller::controller::metrics::{self, Metrics};
use ipam_controller::controller::watch::ClusterWatch;
use ipam_controller::controller::{leads, tls, webhook, Controller, Leadership, Settings};

/// The shortest grace period: longer than the node controller's default
/// `--node-monitor-grace-period` (40 s), so that a node that stopped reporting is seen as not
/// Ready before a leak of its Pods is released.
const MIN_LEAK_GRACE: Duration = Duration::from_secs(60);

/// Releases leaked addresses (their Pod is gone, re-created, finished or on a deleted node)
/// after a grace period and a fresh look, and keeps every IPPool's status current. Run two
/// replicas: one leads, by a Lease.
#[derive(Debug, Parser)]
#[command(name = "ipam-controller", version)]
struct Args {
    /// The kubeconfig (default: the in-cluster service account, else $KUBECONFIG or
    /// ~/.kube/config).
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// The namespace of the store's allocation objects, and of the Lease.
    #[arg(long, value_name = "NS", default_value = ipam_kube::DEFAULT_NAMESPACE)]
    namespace: String,
    /// The API pools and reservations are served with: ipam.rs or spiderpool.
    #[arg(long, value_name = "API", default_value = "ipam.rs", value_parser = parse_api)]
    api: ipam_api::Api,
    /// How long an allocation must be a leak, at every look, before it is released (at
    /// least 1m).
    #[arg(long, value_name = "DURATION", default_value = "3m", value_parser = parse_grace)]
    leak_grace: Duration,
    /// Time between syncs.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_interval)]
    interval: Duration,
    /// Releases per sync, at most.
    #[arg(long, value_name = "N", default_value_t = 100)]
    max_releases: usize,
    /// The Lease's name.
    #[arg(long, value_name = "NAME", default_value = "ipam-controller")]
    lease: String,
    /// This replica's name in the Lease (default: $POD_NAME, else the host name and process
    /// ID).
    #[arg(long, value_name = "NAME")]
    identity: Option<String>,
    /// Where /metrics (Prometheus text) and /healthz are served; default: port 9472 of
    /// $HOST_IP (the node's address, which the Deployment sets), else of every address.
    #[arg(long, value_name = "ADDRESS")]
    metrics_address: Option<std::net::SocketAddr>,
    /// Where the validating admission webhook is served (HTTPS, /validate and /healthz);
    /// default: port 9473 of $HOST_IP (the node's address, which the Deployment sets), else
    /// of every address.
    #[arg(long, value_name = "ADDRESS")]
    webhook_address: Option<std::net::SocketAddr>,
    /// The Service the API server reaches the webhook by (the certificate's names).
    #[arg(long, value_name = "NAME", default_value = "ipam-controller-webhook")]
    webhook_service: String,
    /// The Secret, in --namespace, that keeps the webhook's CA and certificate.
    #[arg(long, value_name = "NAME", default_value = "ipam-controller-webhook")]
    webhook_secret: String,
    /// The ValidatingWebhookConfiguration whose caBundle the controller writes.
    #[arg(long, value_name = "NAME", default_value = "ipam-controller")]
    webhook_configuration: String,
    /// Serve no webhook (a controller run outside the cluster, or beside another).
    #[arg(long)]
    no_webhook: bool,
}

fn parse_api(value: &str) -> Result<ipam_api::Api, String> {
    value
        .parse()
        .map_err(|_| format!("unknown API {value:?}; allowed: ipam.rs, spiderpool"))
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value)
        .map_err(|e| format!("{value:?} is not a duration ({e}); write it as 90s, 3m or 1h"))
}

fn parse_grace(value: &str) -> Result<Duration, String> {
    let d = parse_duration(value)?;
    if d < MIN_LEAK_GRACE {
        return Err(format!(
            "{value:?} is shorter than 1m: a node that stops reporting is seen as not Ready only \
             after the node controller's --node-monitor-grace-period (40s by default), and its \
             Pods' addresses must not be released before"
        ));
    }
    Ok(d)
}

fn parse_interval(value: &str) -> Result<Duration, String> {
    let d = parse_duration(value)?;
    if d < Duration::from_secs(1) {
        return Err(format!("{value:?} is shorter than 1s"));
    }
    Ok(d)
}

fn identity(args: &Args) -> String {
    args.identity
        .clone()
        .or_else(|| std::env::var("POD_NAME").ok().filter(|n| !n.is_empty()))
        .unwrap_or_else(|| {
            let host = host_name().unwrap_or_else(|| "unknown".to_owned());
            format!("{host}-{}", std::process::id())
        })
}

/// This host's name, as the kernel has it.
fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// Makes or reads the webhook's certificate, writes its CA into the webhook configuration,
/// and serves the webhook from a thread of its own; the CA is written again every 30 s where
/// it differs. Fails when the certificate cannot be had or the address cannot be bound: a
/// replica that does not serve must not run (its readiness is the webhook's).
fn start_webhook(
    args: &Args,
    store: &Arc<ipam_kube::KubeStore>,
    metrics: &Arc<Metrics>,
) -> Result<(), String> {
    let names = tls::service_names(&args.webhook_service, &args.namespace);
    let material = pollster::block_on(tls::ensure_secret(
        store,
        &args.namespace,
        &args.webhook_secret,
        &names,
    ))
    .map_err(|e| e.to_string())?;
    let config = material.server_config()?;
    {
        let (store, name, ca) = (
            store.clone(),
            args.webhook_configuration.clone(),
            material.ca_pem.clone(),
        );
        std::thread::spawn(move || {
            let mut said_absent = false;
            loop {
                match pollster::block_on(tls::publish_ca_bundle(&store, &name, &ca)) {
                    Ok(true) => said_absent = false,
                    Ok(false) if !said_absent => {
                        eprintln!("ipam-controller: ValidatingWebhookConfiguration {name} does not exist: nothing to write its caBundle into (the webhook is off)");
                        said_absent = true;
                    }
                    Ok(false) => {}
                    Err(e) => eprintln!("ipam-controller: caBundle of {name}: {e}"),
                }
                std::thread::sleep(tls::CA_BUNDLE_EVERY);
            }
        });
    }
    let judge = Arc::new(webhook::Judge {
        ipam: ipam_core::Ipam::new(store.clone()),
        api: args.api,
        namespace: args.namespace.clone(),
    });
    let address = webhook_address(args);
    webhook::serve(address, config, judge, metrics.clone())
        .map_err(|e| format!("cannot serve on {address}: {e}"))?;
    eprintln!(
        "ipam-controller: webhook on https://{}/validate for {} (certificate of Secret {}/{})",
        address, names[2], args.namespace, args.webhook_secret
    );
    Ok(())
}

/// The webhook's address: the flag's, else port 9473 of the node's address ($HOST_IP: on the
/// host network, two replicas whose nodes share a network namespace, as the test cluster's
/// do, each have their own), else of every address.
fn webhook_address(args: &Args) -> std::net::SocketAddr {
    args.webhook_address
        .unwrap_or_else(|| std::net::SocketAddr::new(host_ip(), 9473))
}

/// Where /metrics and /healthz are served: the flag's address, else port 9472 of the node's
/// address, for the same reason as [`webhook_address`]: each replica then shows its own.
fn metrics_address(args: &Args) -> std::net::SocketAddr {
    args.metrics_address
        .unwrap_or_else(|| std::net::SocketAddr::new(host_ip(), 9472))
}

/// $HOST_IP, else every address.
fn host_ip() -> std::net::IpAddr {
    std::env::var("HOST_IP")
        .ok()
        .and_then(|ip| ip.parse().ok())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = ipam_kube::KubeOptions {
        kubeconfig: args.kubeconfig.clone(),
        namespace: args.namespace.clone(),
        api: args.api,
        request_timeout: Duration::from_secs(10),
        // A long-running process: each request is bounded, the process is not.
        deadline: None,
        ..ipam_kube::KubeOptions::default()
    };
    let store = match ipam_kube::KubeStore::connect(&options) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("ipam-controller: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let me = identity(&args);
    eprintln!(
        "ipam-controller {}: {me} on {} (namespace {}, API {}), leak grace {}, interval {}",
        env!("CARGO_PKG_VERSION"),
        store.server(),
        args.namespace,
        args.api,
        humantime::format_duration(args.leak_grace),
        humantime::format_duration(args.interval),
    );

    let leadership: Leadership = Arc::new(Mutex::new(None));
    let metrics = Arc::new(Metrics::default());
    if !args.no_webhook {
        if let Err(e) = start_webhook(&args, &store, &metrics) {
            eprintln!("ipam-controller: error: webhook: {e}");
            return ExitCode::FAILURE;
        }
    }
    // Healthy while the Lease is read or written: a replica whose requests all fail, or
    // whose election thread died, is restarted by its liveness probe.
    let last_step = Arc::new(Mutex::new(Instant::now()));
    {
        let last_step = last_step.clone();
        metrics::serve(
            metrics_address(&args).to_string(),
            metrics.clone(),
            move || {
                let at = *last_step.lock().unwrap_or_else(|e| e.into_inner());
                at.elapsed() < Duration::from_secs(30)
            },
        );
    }
    // Renewed every 2 s; a leader stops acting 10 s after its last successful renewal,
    // before the 15 s after which the other replica may take over.
    let lease_duration = Duration::from_secs(15);
    let renew_every = Duration::from_secs(2);
    let act_for = Duration::from_secs(10);
    {
        let (store, leadership, last_step) = (store.clone(), leadership.clone(), last_step.clone());
        let mut elector = Elector::new(&args.namespace, &args.lease, &me, lease_duration);
        std::thread::spawn(move || loop {
            let started = Instant::now();
            let step = pollster::block_on(elector.step(&store));
            if step.is_ok() {
                *last_step.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            }
            match step {
                Ok(Role::Leader) => {
                    *leadership.lock().unwrap_or_else(|e| e.into_inner()) = Some(started + act_for);
                }
                Ok(Role::Follower(_)) => {
                    *leadership.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
                // The leadership lapses by itself when renewals keep failing.
                Err(e) => eprintln!("ipam-controller: lease {}: {e}", args.lease),
            }
            std::thread::sleep(renew_every.saturating_sub(started.elapsed()));
        });
    }

    // The cluster's Pods, Nodes and StatefulSets, kept by watches rather than listed at each
    // sync (every replica watches, so a new leader has its view at once). Their client waits
    // longer for a read than the store's 10 s: a watch is silent while nothing changes, and
    // the API server ends it after at most 290 s (kube's own default is 295 s); with the
    // store's client each idle watch broke and was sent again every 10 s or so.
    let watch_store = match ipam_kube::KubeStore::connect(&ipam_kube::KubeOptions {
        request_timeout: Duration::from_secs(295),
        ..options.clone()
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ipam-controller: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let watch = match ClusterWatch::start(watch_store.client()) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("ipam-controller: cannot start the watches: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut controller = Controller::new(
        store,
        Settings {
            leak_grace: args.leak_grace,
            interval: args.interval,
            max_releases: args.max_releases,
        },
        metrics.clone(),
    )
    .watching(watch);
    let mut was_leader = false;
    let mut last_leaks = None;
    loop {
        let leader = leads(&leadership);
        if leader != was_leader {
            metrics.leads(leader);
            if leader {
                eprintln!("ipam-controller: {me} leads: releases start after a whole grace period");
                controller.restart();
                last_leaks = None;
            } else {
                eprintln!("ipam-controller: {me} no longer leads");
            }
            was_leader = leader;
        }
        if !leader {
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        let started = Instant::now();
        match controller.sync(&leadership) {
            Ok(r) => {
                if last_leaks != Some(r.leaks) || r.released > 0 || r.kept_by_fresh_look > 0 {
                    eprintln!(
                        "ipam-controller: sync: {} allocations, {} leaked, {} released, {} kept by a fresh look, {} pool counts written ({} ms)",
                        r.allocations,
                        r.leaks,
                        r.released,
                        r.kept_by_fresh_look,
                        r.counts_published,
                        started.elapsed().as_millis()
                    );
                }
                last_leaks = Some(r.leaks);
            }
            // Nothing was judged on a failed read; the next sync tries again.
            Err(e) => eprintln!("ipam-controller: sync failed, nothing released: {e}"),
        }
        std::thread::sleep(
            controller
                .settings()
                .interval
                .saturating_sub(started.elapsed()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grace_is_a_duration_of_a_minute_or_more() {
        assert_eq!(parse_grace("3m"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_grace("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_grace("1h 30m"), Ok(Duration::from_secs(5400)));
        let short = parse_grace("20s").unwrap_err();
        assert!(short.starts_with("\"20s\" is shorter than 1m: "), "{short}");
        assert!(short.contains("--node-monitor-grace-period"), "{short}");
        let garbage = parse_grace("soon").unwrap_err();
        assert!(
            garbage.starts_with("\"soon\" is not a duration ("),
            "{garbage}"
        );
        assert!(parse_interval("500ms").is_err());
        assert_eq!(parse_interval("10s"), Ok(Duration::from_secs(10)));
    }

    #[test]
    fn the_defaults_are_the_documented_ones() {
        let args = Args::try_parse_from(["ipam-controller"]).unwrap();
        assert_eq!(args.leak_grace, Duration::from_secs(180));
        assert_eq!(args.interval, Duration::from_secs(10));
        assert_eq!(args.max_releases, 100);
        assert_eq!(args.namespace, "ipam-rs");
        assert_eq!(args.metrics_address, None);
        assert_eq!(args.webhook_address, None);
        assert_eq!(args.webhook_secret, "ipam-controller-webhook");
        assert_eq!(args.webhook_configuration, "ipam-controller");
        assert!(!args.no_webhook);
        let refused = Args::try_parse_from(["ipam-controller", "--leak-grace", "30s"]).unwrap_err();
        assert!(refused.to_string().contains("--leak-grace"), "{refused}");
    }
}
