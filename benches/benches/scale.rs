//! A cluster at Kubernetes' documented limits on the data model (`ipam_benches::scale`):
//! prints, for a roomy and a tight pool, the plugin alone and through node agents, what each
//! ADD and DEL costs the API server and what each agent keeps and receives.
//!
//! Run: `cargo bench -p ipam-benches --bench scale` (about 10 minutes for the four runs);
//! `-- --nodes N --pods P --churn C` for another size. Figures are in
//! `benches/RESULTS.md`.

use std::time::Instant;

use ipam_benches::scale::{run, Calls, Params, Report};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut size = Params::kubernetes_limits("", false);
    while let Some(arg) = args.next() {
        let mut value = |what: &str| -> usize {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{what} takes a number"))
        };
        match arg.as_str() {
            "--nodes" => size.nodes = value("--nodes"),
            "--pods" => size.pods = value("--pods"),
            "--churn" => size.churn = value("--churn"),
            // `cargo bench` passes `--bench`; a filter argument is ignored too.
            _ => {}
        }
    }
    // Roomy: at least three blocks of 64 per node (16,384 for 5,000 nodes); tight: fewer
    // blocks than nodes, as many as the Pods need with a tenth spare (4,096 for 5,000 nodes
    // and 150,000 Pods: 57 % of the addresses in use).
    let roomy = (3 * size.nodes).next_power_of_two();
    let mut tight = (size.nodes / 2 + 1).next_power_of_two();
    while tight * 64 * 9 < size.pods * 10 {
        tight *= 2;
    }
    let subnet = |blocks: usize| format!("10.0.0.0/{}", 32 - 6 - blocks.trailing_zeros());
    let pools = [("roomy", subnet(roomy)), ("tight", subnet(tight))];
    println!(
        "{} nodes, {} Pods, then {} replaced; one IPv4 pool; {} ReservedIPs\n",
        size.nodes, size.pods, size.churn, size.reserved_ips
    );
    let mut reports = Vec::new();
    for (label, subnet) in pools {
        for agents in [false, true] {
            let params = Params {
                subnet: subnet.clone(),
                agents,
                ..size.clone()
            };
            let took = Instant::now();
            let report = run(&params).expect("the simulation runs");
            eprintln!(
                "{label} {subnet}, {}: {:.1} s",
                path(agents),
                took.elapsed().as_secs_f64()
            );
            reports.push((label, report));
        }
    }
    print_calls(&reports, "ADD while the Pods start (the first ones)", |r| {
        &r.fill
    });
    print_calls(&reports, "ADD in steady state (a Pod replaced)", |r| {
        &r.adds
    });
    print_calls(&reports, "DEL in steady state", |r| &r.dels);
    print_spread(&reports);
}

fn path(agents: bool) -> &'static str {
    if agents {
        "through agents"
    } else {
        "plugin alone"
    }
}

fn print_calls(reports: &[(&str, Report)], title: &str, calls: impl Fn(&Report) -> &Calls) {
    println!("### {title}\n");
    println!(
        "| pool | path | read round trips: mean / p99 / max | KiB read: mean / p99 | listed every block | writes (cursor) | KiB written | conflicts | KiB to agents, node-scoped watches | KiB to agents, namespace-wide | KiB to other nodes' agents | in another node's block |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (label, r) in reports {
        let c = calls(r);
        let kib = |b: f64| b / 1024.0;
        println!(
            "| {label} {} | {} | {:.2} / {} / {} | {:.1} / {:.1} | {} | {:.2} ({:.3}) | {:.2} | {:.4} | {:.2} | {:.0} | {:.2} | {:.2} % |",
            r.params.subnet,
            path(r.params.agents),
            c.mean(|c| c.round_trips),
            c.round_trips_at(0.99),
            c.round_trips_at(1.0),
            kib(c.mean(|c| c.bytes_read)),
            kib(c.bytes_read_at(0.99) as f64),
            c.scanning,
            c.mean(|c| c.writes),
            c.mean(|c| c.cursor_writes),
            kib(c.mean(|c| c.bytes_written)),
            c.mean(|c| c.conflicts),
            kib(c.mean(|c| c.watched_node_scoped)),
            kib(c.mean(|c| c.watched_namespace_wide)),
            kib(c.mean(|c| c.to_other_nodes)),
            100.0 * c.in_other_nodes_blocks as f64 / c.count.max(1) as f64,
        );
    }
    println!();
}

fn print_spread(reports: &[(&str, Report)]) {
    println!("### Objects, at the end (after the churn)\n");
    println!(
        "| pool | path | blocks (with affinity) | nodes without a block | most blocks on a node | most Pods on a node | KiB an agent keeps: mean / most | MiB of blocks, owners, cursors | KiB of pools, ReservedIPs | KiB to all agents per ReservedIP change |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (label, r) in reports {
        let s = &r.spread_end;
        println!(
            "| {label} {} | {} | {} ({}) | {} | {} | {} | {:.1} / {:.1} | {:.1} | {:.1} | {:.0} |",
            r.params.subnet,
            path(r.params.agents),
            s.blocks,
            s.blocks_with_affinity,
            s.nodes_without_block,
            s.most_blocks_per_node,
            s.most_owners_per_node,
            s.agent_bytes_mean / 1024.0,
            s.agent_bytes_most as f64 / 1024.0,
            s.namespace_bytes as f64 / (1024.0 * 1024.0),
            s.cluster_scoped_bytes as f64 / 1024.0,
            r.reserved_ip_change_watched as f64 / 1024.0,
        );
    }
    println!();
}
