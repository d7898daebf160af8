//! The text of `deploy/crds/ipam.rs.yaml`: every CustomResourceDefinition of
//! [`ipam_kube::crd::all`] as one multi-document YAML file. Shared by the `crds` example,
//! which writes it, and `tests/crds.rs`, which checks that the checked-in file equals it.

/// The command, run at the workspace root, that rewrites `deploy/crds/ipam.rs.yaml`.
pub const COMMAND: &str = "cargo run -p ipam-kube --example crds -- deploy/crds/ipam.rs.yaml";

/// Every CRD as YAML, one document each, in the order of `crd::all()`, after a header that
/// says where the file comes from.
pub fn render() -> String {
    let mut out = format!(
        "# Generated from ipam-kube/src/crd.rs by `{COMMAND}`.\n\
         # Do not edit: change the Rust types and run the command again\n\
         # (ipam-kube's test `tests/crds.rs` fails while this file is stale).\n"
    );
    for crd in ipam_kube::crd::all() {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&crd).expect("a CRD serializes to YAML"));
    }
    out
}
