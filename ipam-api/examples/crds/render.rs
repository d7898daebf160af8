//! The text of the checked-in CRD files: every CustomResourceDefinition an installation of
//! one API needs ([`ipam_api::Api::crds`]) as one multi-document YAML file. Shared by the
//! `crds` example, which writes them, and `tests/crds.rs`, which checks that the checked-in
//! files equal it.

use ipam_api::Api;

/// Where an installation of `api` finds its CRDs, from the workspace root.
pub fn path(api: Api) -> &'static str {
    match api {
        Api::IpamRs => "deploy/crds/ipam.rs.yaml",
        Api::Spiderpool => "deploy/spiderpool-compat/crds.yaml",
    }
}

/// The command, run at the workspace root, that rewrites `path(api)`.
pub fn command(api: Api) -> String {
    match api {
        Api::IpamRs => format!("cargo run -p ipam-api --example crds -- {}", path(api)),
        Api::Spiderpool => format!(
            "cargo run -p ipam-api --example crds -- --api spiderpool {}",
            path(api)
        ),
    }
}

/// Every CRD of `api` as YAML, one document each, in the order of `api.crds()`, after a
/// header that says where the file comes from.
pub fn render(api: Api) -> String {
    let mut out = format!(
        "# Generated from the types of ipam-api by `{}`.\n\
         # Do not edit: change the Rust types and run the command again\n\
         # (ipam-api's test `tests/crds.rs` fails while this file is stale).\n",
        command(api)
    );
    for crd in api.crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&crd).expect("a CRD serializes to YAML"));
    }
    out
}
