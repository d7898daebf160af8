//! Writes the CustomResourceDefinitions of an installation, generated from ipam-api's types.
//!
//! ```text
//! cargo run -p ipam-api --example crds -- deploy/crds/ipam.rs.yaml      # rewrite the file
//! cargo run -p ipam-api --example crds -- --api spiderpool deploy/spiderpool-compat/crds.yaml
//! cargo run -p ipam-api --example crds                                  # print to stdout
//! ```
//!
//! `tests/crds.rs` fails when a checked-in file differs from this output.

mod render;

use std::io::Write;
use std::process::ExitCode;

const USAGE: &str = "usage: crds [--api ipam.rs|spiderpool] [FILE]  (no FILE: stdout)";

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut api = ipam_api::Api::IpamRs;
    if args.first().map(String::as_str) == Some("--api") {
        match args.get(1).map(|a| a.parse()) {
            Some(Ok(a)) => api = a,
            Some(Err(e)) => {
                eprintln!("crds: --api {e}");
                return ExitCode::FAILURE;
            }
            None => {
                eprintln!("crds: {USAGE}");
                return ExitCode::FAILURE;
            }
        }
        args.drain(..2);
    }
    let text = render::render(api);
    let result = match args.as_slice() {
        [] => std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| format!("write to stdout: {e}")),
        [path] => std::fs::write(path, &text).map_err(|e| format!("write {path}: {e}")),
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crds: {e}");
            ExitCode::FAILURE
        }
    }
}
