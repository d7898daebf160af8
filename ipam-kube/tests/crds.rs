//! The checked-in CRDs (`deploy/crds/ipam.rs.yaml`) are what `ipam_kube::crd::all()`
//! generates: CI fails while they are stale, naming the command that regenerates them.

#[path = "../examples/crds/render.rs"]
mod render;

use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("ipam-kube lies in the workspace")
        .to_owned()
}

#[test]
fn the_checked_in_crds_are_what_the_types_generate() {
    let path = workspace().join("deploy/crds/ipam.rs.yaml");
    let generated = render::render();
    let checked_in = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}\nGenerate it, at the workspace root, with:\n    {}",
            path.display(),
            render::COMMAND
        )
    });
    if checked_in != generated {
        let (line, ours, theirs) = checked_in
            .lines()
            .map(Some)
            .chain(std::iter::repeat(None))
            .zip(generated.lines().map(Some).chain(std::iter::repeat(None)))
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| (i + 1, a.unwrap_or("<end of file>"), b.unwrap_or("<end>")))
            .unwrap_or((0, "<line endings>", "<line endings>"));
        panic!(
            "deploy/crds/ipam.rs.yaml is stale: it differs from what ipam-kube/src/crd.rs \
             generates, first at line {line}:\n  checked in: {ours}\n  generated:  {theirs}\n\
             Regenerate it, at the workspace root, with:\n    {}\nand commit the result.",
            render::COMMAND
        );
    }
}

#[test]
fn the_yaml_reads_back_as_the_same_crds() {
    // The serializer loses nothing: what kubectl sends is exactly `crd::all()`.
    let text = render::render();
    // The header is a comment: a YAML reader may see an empty document before the first `---`.
    let read: Vec<CustomResourceDefinition> = serde_yaml_ng::Deserializer::from_str(&text)
        .filter_map(|doc| {
            <Option<CustomResourceDefinition> as serde::Deserialize>::deserialize(doc)
                .expect("a CRD")
        })
        .collect();
    assert_eq!(read, ipam_kube::crd::all());
    let names: Vec<String> = read
        .iter()
        .map(|c| c.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "ippools.ipam.rs",
            "reservedips.ipam.rs",
            "ipamblocks.ipam.rs",
            "ipamowners.ipam.rs",
            "ipamcursors.ipam.rs",
            "ipamguards.ipam.rs"
        ]
    );
}
