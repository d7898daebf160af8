//! `ipam-cni`: the CNI IPAM plugin. Thin: the library reads the environment and stdin,
//! opens the store, runs the command and writes the output; this exits with its status.

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};

use ipam_cni::cni::error::{CniError, Code};

fn main() {
    let status = catch_unwind(AssertUnwindSafe(|| {
        ipam_cni::cni::run(
            |k| std::env::var(k).ok(),
            &mut std::io::stdin().lock(),
            &mut std::io::stdout().lock(),
        )
    }))
    // A bug must still answer in the protocol, or the runtime sees no reason at all; the
    // panic message itself is on stderr.
    .unwrap_or_else(|_| {
        let out = ipam_cni::cni::Output::failure(
            None,
            CniError::new(Code::Io, "internal error in ipam-cni (see its stderr)"),
        );
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.stdout.as_bytes());
        let _ = stdout.flush();
        out.exit_code
    });
    std::process::exit(status);
}
