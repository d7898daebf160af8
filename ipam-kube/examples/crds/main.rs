//! Writes the project's CustomResourceDefinitions, generated from `ipam-kube/src/crd.rs`.
//!
//! ```text
//! cargo run -p ipam-kube --example crds -- deploy/crds/ipam.rs.yaml   # rewrite the file
//! cargo run -p ipam-kube --example crds                               # print to stdout
//! ```
//!
//! `tests/crds.rs` fails when the checked-in `deploy/crds/ipam.rs.yaml` differs from this
//! output.

mod render;

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let text = render::render();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [] => std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| format!("write to stdout: {e}")),
        [path] => std::fs::write(path, &text).map_err(|e| format!("write {path}: {e}")),
        _ => Err("usage: crds [FILE]  (no FILE: stdout)".to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crds: {e}");
            ExitCode::FAILURE
        }
    }
}
