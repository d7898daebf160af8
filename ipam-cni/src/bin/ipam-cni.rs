//! `ipam-cni`: the CNI IPAM plugin. Thin: the library reads the environment and stdin, opens
//! the store, runs the command and renders the output; this prints it and exits.

use std::io::Write;

fn main() {
    let out = ipam_cni::cni::run(|k| std::env::var(k).ok(), &mut std::io::stdin().lock());
    let mut stdout = std::io::stdout().lock();
    // If stdout is gone the runtime cannot read the answer anyway; the exit status still says
    // whether the command succeeded.
    let _ = stdout.write_all(out.stdout.as_bytes());
    let _ = stdout.flush();
    std::process::exit(out.exit_code);
}
