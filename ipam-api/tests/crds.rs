//! The YAML, the CRDs and the Rust types are one: the checked-in CRDs (`deploy/crds/`,
//! `deploy/spiderpool-compat/`) are what the types generate (CI fails while they are stale,
//! naming the command that regenerates them), every field of a spec is in its CRD's schema,
//! and the seed's manifests read as the documents and write back as they were.

#[path = "../examples/crds/render.rs"]
mod render;

use std::path::{Path, PathBuf};

use ipam_api::spiderpool::{SpiderIPPool, SpiderIPPoolSpec, SpiderReservedIP};
use ipam_api::{fields, Api, IPPool, ReservedIP};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("ipam-api lies in the workspace")
        .to_owned()
}

#[test]
fn the_checked_in_crds_are_what_the_types_generate() {
    for api in Api::ALL {
        let path = workspace().join(render::path(api));
        let generated = render::render(api);
        let checked_in = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read {}: {e}\nGenerate it, at the workspace root, with:\n    {}",
                path.display(),
                render::command(api)
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
                "{} is stale: it differs from what ipam-api's types generate, first at line \
                 {line}:\n  checked in: {ours}\n  generated:  {theirs}\n\
                 Regenerate it, at the workspace root, with:\n    {}\nand commit the result.",
                render::path(api),
                render::command(api)
            );
        }
    }
}

fn read_crds(text: &str) -> Vec<CustomResourceDefinition> {
    // The header is a comment: a YAML reader may see an empty document before the first `---`.
    serde_yaml_ng::Deserializer::from_str(text)
        .filter_map(|doc| {
            <Option<CustomResourceDefinition> as serde::Deserialize>::deserialize(doc)
                .expect("a CRD")
        })
        .collect()
}

#[test]
fn the_yaml_reads_back_as_the_same_crds() {
    let names = |api: Api| -> Vec<String> {
        let read = read_crds(&render::render(api));
        // The serializer loses nothing: what kubectl sends is exactly `api.crds()`.
        assert_eq!(read, api.crds());
        read.iter()
            .map(|c| c.metadata.name.clone().unwrap_or_default())
            .collect()
    };
    let internal = [
        "ipamblocks.ipam.rs",
        "ipamowners.ipam.rs",
        "ipamcursors.ipam.rs",
        "ipamguards.ipam.rs",
    ];
    assert_eq!(
        names(Api::IpamRs),
        [&["ippools.ipam.rs", "reservedips.ipam.rs"][..], &internal].concat()
    );
    assert_eq!(
        names(Api::Spiderpool),
        [
            &[
                "spiderippools.spiderpool.spidernet.io",
                "spiderreservedips.spiderpool.spidernet.io"
            ][..],
            &internal
        ]
        .concat()
    );
    // The allocation kinds are the same objects in both installations, so that both can be
    // applied to one cluster.
    assert_eq!(
        &Api::IpamRs.crds()[2..],
        &Api::Spiderpool.crds()[2..],
        "the allocation kinds differ between the installations"
    );
}

/// The properties of `spec` in a CRD's schema.
fn spec_properties(crd: &CustomResourceDefinition) -> Value {
    let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
    schema["openAPIV3Schema"]["properties"]["spec"]["properties"].clone()
}

#[test]
fn every_field_of_a_spec_is_in_its_crds() {
    let (ours, spider) = (Api::IpamRs.crds(), Api::Spiderpool.crds());
    let (pools, reserved) = (&ours[0], &ours[1]);
    let (spider_pools, spider_reserved) = (&spider[0], &spider[1]);
    for field in fields::of::<ipam_core::IpPoolSpec>() {
        for crd in [pools, spider_pools] {
            assert!(
                spec_properties(crd).get(field).is_some(),
                "{field} of IpPoolSpec is not in {:?}",
                crd.metadata.name
            );
        }
    }
    for field in fields::of::<ipam_core::ReservedIpSpec>() {
        for crd in [reserved, spider_reserved] {
            assert!(spec_properties(crd).get(field).is_some(), "{field}");
        }
    }
    // Spiderpool's fields we do not implement are declared (so never pruned), each with a
    // constraint only an empty value meets.
    let spider = spec_properties(spider_pools);
    let ours = spec_properties(pools);
    assert_eq!(
        spider.as_object().unwrap().len(),
        ours.as_object().unwrap().len() + ipam_api::spiderpool::UNIMPLEMENTED.len()
    );
    for (field, _) in ipam_api::spiderpool::UNIMPLEMENTED {
        let p = &spider[field];
        let refuses = p["maxItems"] == 0
            || p["maxProperties"] == 0
            || p["maximum"] == 0.0
            || p["enum"] == serde_json::json!([false]);
        assert!(refuses, "{field}: {p}");
    }
    // The same columns for both kinds of pool.
    assert_eq!(
        pools.spec.versions[0].additional_printer_columns,
        spider_pools.spec.versions[0].additional_printer_columns
    );
    let names = &spider_pools.spec.names;
    assert_eq!(
        (names.short_names.clone(), names.singular.as_deref()),
        (Some(vec!["sp".to_owned()]), Some("spiderippool"))
    );
    let names = &spider_reserved.spec.names;
    assert_eq!(
        (names.short_names.clone(), names.singular.as_deref()),
        (Some(vec!["sr".to_owned()]), Some("spiderreservedip"))
    );
    assert_eq!(spider_pools.spec.scope, "Cluster");
    assert_eq!(spider_reserved.spec.scope, "Cluster");
}

fn seed(file: &str) -> Value {
    let text = std::fs::read_to_string(workspace().join("examples/seed").join(file)).unwrap();
    serde_yaml_ng::from_str(&text).expect("the seed is YAML")
}

#[test]
fn the_seed_manifests_round_trip_through_the_documents() {
    let pool = seed("ippool.yaml");
    let doc: SpiderIPPool = serde_json::from_value(pool.clone()).unwrap();
    assert_eq!(serde_json::to_value(&doc).unwrap(), pool);
    assert_eq!(
        SpiderIPPoolSpec::to_pool_spec(&pool["spec"]).unwrap(),
        doc.spec.pool
    );
    let reserved = seed("reservedip.yaml");
    let doc: SpiderReservedIP = serde_json::from_value(reserved.clone()).unwrap();
    assert_eq!(serde_json::to_value(&doc).unwrap(), reserved);

    // Ported to our kinds by changing apiVersion and kind only.
    let mut ours = pool.clone();
    ours["apiVersion"] = ipam_api::API_VERSION.into();
    ours["kind"] = ipam_api::KIND_POOL.into();
    let doc: IPPool = serde_json::from_value(ours.clone()).unwrap();
    assert_eq!(serde_json::to_value(&doc).unwrap(), ours);
    let core = ipam_core::IpPool::new("test-ippool", doc.spec.0.clone()).unwrap();
    assert_eq!(core.total(), 3);
    let mut ours = reserved;
    ours["apiVersion"] = ipam_api::API_VERSION.into();
    ours["kind"] = ipam_api::KIND_RESERVED.into();
    let doc: ReservedIP = serde_json::from_value(ours.clone()).unwrap();
    assert_eq!(serde_json::to_value(&doc).unwrap(), ours);
}
