//! Reading the manifests of `ipamctl apply`: files, directories, standard input; YAML with
//! any number of documents, or JSON; our own kinds and the seed's Spiderpool kinds.
//!
//! Everything is read and validated before anything is applied: [`load`] returns either
//! every object of the input, validated, or the first refusal, naming the document, the
//! field and the value.
//!
//! ```
//! use ipamctl::manifest::{parse_text, Format};
//! let yaml = "apiVersion: spiderpool.spidernet.io/v2beta1\n\
//!             kind: SpiderReservedIP\n\
//!             metadata:\n  name: test-reservedip\n\
//!             spec:\n  ips:\n  - 10.6.168.131-10.6.168.132\n";
//! let objects = parse_text("reserved.yaml", yaml, Format::Yaml).unwrap();
//! assert_eq!(objects.len(), 1);
//! assert_eq!(objects[0].object.to_string(), "reservedip/test-reservedip");
//! ```

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use ipam_api::decode::Decoded;
use ipam_core::{IpPool, ObjectName, ReservedIp, ValidationError};
use serde_json::Value;

use crate::error::{ManifestError, Origin};
use crate::strict::{self, DuplicateKey};

/// The API version of the seed's Spiderpool kinds, accepted verbatim.
pub use ipam_api::spiderpool::API_VERSION as SPIDERPOOL_API_VERSION;
pub use ipam_api::{API_VERSION, KIND_POOL, KIND_RESERVED};

/// How a file is parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// YAML, any number of `---`-separated documents (JSON is YAML too).
    Yaml,
    /// One JSON value.
    Json,
}

impl Format {
    /// The format of a file, by its extension: `.json` is JSON, anything else YAML.
    pub fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// One `-f` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A file, or a directory whose `*.yaml`, `*.yml` and `*.json` files are read in name
    /// order (not recursively, as `kubectl apply -f DIR`).
    Path(PathBuf),
    /// Standard input (`-`).
    Stdin,
}

impl Input {
    /// `-` is standard input; anything else a path.
    pub fn from_arg(arg: &str) -> Input {
        if arg == "-" {
            Input::Stdin
        } else {
            Input::Path(PathBuf::from(arg))
        }
    }
}

/// A validated object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Object {
    /// An IPPool (from `IPPool` or `SpiderIPPool`).
    Pool(IpPool),
    /// A ReservedIP (from `ReservedIP` or `SpiderReservedIP`).
    Reserved(ReservedIp),
}

impl Object {
    /// The resource name as `ipamctl` prints it: `ippool` or `reservedip`.
    pub fn resource(&self) -> &'static str {
        match self {
            Object::Pool(_) => "ippool",
            Object::Reserved(_) => "reservedip",
        }
    }

    /// The object's name.
    pub fn name(&self) -> &ObjectName {
        match self {
            Object::Pool(p) => p.name(),
            Object::Reserved(r) => r.name(),
        }
    }
}

impl fmt::Display for Object {
    /// `ippool/NAME`, as `kubectl` names objects.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.resource(), self.name())
    }
}

/// One validated object of the input, with where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Where it was defined.
    pub origin: Origin,
    /// The kind as written (`SpiderIPPool`, `IPPool`, ...).
    pub kind: String,
    /// The object.
    pub object: Object,
}

/// Reads and validates every input. Either every object is valid and returned, in input
/// order, or the first refusal is returned; the input is then applied not at all.
///
/// Two definitions of one object in one input are refused, as are inputs with no object.
pub fn load(inputs: &[Input], stdin: &mut dyn Read) -> Result<Vec<Manifest>, ManifestError> {
    let mut manifests = Vec::new();
    for input in inputs {
        match input {
            Input::Stdin => {
                let mut text = String::new();
                stdin
                    .read_to_string(&mut text)
                    .map_err(|source| ManifestError::Read {
                        path: PathBuf::from("<stdin>"),
                        source,
                    })?;
                manifests.extend(parse_text("<stdin>", &text, Format::Yaml)?);
            }
            Input::Path(path) => {
                for file in files_of(path)? {
                    let text =
                        std::fs::read_to_string(&file).map_err(|source| ManifestError::Read {
                            path: file.clone(),
                            source,
                        })?;
                    let name = file.display().to_string();
                    manifests.extend(parse_text(&name, &text, Format::of(&file))?);
                }
            }
        }
    }
    check_unique(&manifests)?;
    if manifests.is_empty() {
        return Err(ManifestError::Empty);
    }
    Ok(manifests)
}

/// The files a path stands for: itself, or a directory's manifest files in name order.
fn files_of(path: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    let read_err = |source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let p = entry.path();
        let manifest_ext = p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| ["yaml", "yml", "json"].contains(&e.to_ascii_lowercase().as_str()));
        // Follows symlinks, so a linked manifest is read like a file.
        if manifest_ext && p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// Refuses a second definition of one object: applying both in turn would make the result
/// depend on their order, which the person who wrote them probably did not intend.
fn check_unique(manifests: &[Manifest]) -> Result<(), ManifestError> {
    let mut seen: HashMap<(&'static str, &ObjectName), &Origin> = HashMap::new();
    for m in manifests {
        let key = (m.object.resource(), m.object.name());
        if let Some(first) = seen.get(&key) {
            return Err(ManifestError::Duplicate {
                origin: m.origin.clone(),
                object: m.object.to_string(),
                first: (*first).clone(),
            });
        }
        seen.insert(key, &m.origin);
    }
    Ok(())
}

/// Parses and validates the text of one file (`source` names it in messages).
///
/// Empty YAML documents (a trailing `---`, comments only) are skipped; they still count in
/// the document numbers of messages, so that the numbers match what the person sees.
pub fn parse_text(
    source: &str,
    text: &str,
    format: Format,
) -> Result<Vec<Manifest>, ManifestError> {
    let mut out = Vec::new();
    match format {
        Format::Json => {
            let mut de = serde_json::Deserializer::from_str(text);
            let value = strict::decode(&mut de)
                .and_then(|v| de.end().map(|()| v).map_err(|e| (e, None)))
                .map_err(|(e, duplicate)| {
                    let at = Some((e.line(), e.column()));
                    syntax_error(source, 1, "JSON", e.to_string(), duplicate, at)
                })?;
            decode_document(origin(source, 1, None), &value, &mut out)?;
        }
        Format::Yaml => {
            for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
                let number = i + 1;
                let value = strict::decode(doc).map_err(|(e, duplicate)| {
                    let at = e.location().map(|l| (l.line(), l.column()));
                    syntax_error(source, number, "YAML", e.to_string(), duplicate, at)
                })?;
                if value.is_null() {
                    continue;
                }
                decode_document(origin(source, number, None), &value, &mut out)?;
            }
        }
    }
    Ok(out)
}

/// A document the parser refused: a duplicated key is reported as such, naming it, and
/// anything else with the parser's own message.
fn syntax_error(
    source: &str,
    document: usize,
    format: &'static str,
    message: String,
    duplicate: Option<DuplicateKey>,
    at: Option<(usize, usize)>,
) -> ManifestError {
    match duplicate {
        Some(DuplicateKey { field, key }) => ManifestError::DuplicateKey {
            source_name: source.to_owned(),
            document,
            field,
            key,
            at,
        },
        None => ManifestError::Syntax {
            source_name: source.to_owned(),
            document,
            format,
            message,
        },
    }
}

fn origin(source: &str, document: usize, item: Option<usize>) -> Origin {
    Origin {
        source: source.to_owned(),
        document,
        item,
    }
}

/// Decodes one document: an object, or a `List` of objects (what `ipamctl get -o yaml`
/// prints, so that its output applies back).
fn decode_document(
    origin: Origin,
    value: &Value,
    out: &mut Vec<Manifest>,
) -> Result<(), ManifestError> {
    if let Some(map) = value.as_object() {
        if map.get("kind").and_then(Value::as_str) == Some("List") {
            let items = match map.get("items") {
                Some(Value::Array(items)) => items,
                other => {
                    return Err(invalid(
                        &origin,
                        None,
                        "items",
                        other.unwrap_or(&Value::Null),
                        "a List needs an items array",
                    ))
                }
            };
            for (i, item) in items.iter().enumerate() {
                let item_origin = Origin {
                    item: Some(i),
                    ..origin.clone()
                };
                out.push(decode_object(item_origin, item)?);
            }
            return Ok(());
        }
    }
    out.push(decode_object(origin, value)?);
    Ok(())
}

/// Validates one object document: the reading `ipamctl apply` and the controller's
/// admission webhook share ([`ipam_api::decode::decode_object`]), with where it came from.
fn decode_object(origin: Origin, value: &Value) -> Result<Manifest, ManifestError> {
    let object = ipam_api::decode::decode_object(value).map_err(|r| ManifestError::Invalid {
        origin: origin.clone(),
        object: r.object,
        error: Box::new(r.error),
    })?;
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let object = match object {
        Decoded::Pool(p) => Object::Pool(p),
        Decoded::Reserved(r) => Object::Reserved(r),
    };
    Ok(Manifest {
        origin,
        kind,
        object,
    })
}

/// A refusal of `value` in `field`: strings are quoted as written, other values as JSON.
fn invalid(
    origin: &Origin,
    object: Option<&str>,
    field: &str,
    value: &Value,
    reason: impl fmt::Display,
) -> ManifestError {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    wrap(origin, object, ValidationError::new(field, &text, reason))
}

fn wrap(origin: &Origin, object: Option<&str>, error: ValidationError) -> ManifestError {
    ManifestError::Invalid {
        origin: origin.clone(),
        object: object.map(str::to_owned),
        error: Box::new(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `yaml` and renders the outcome: one line per object, or the refusal.
    fn check(yaml: &str, expect: &str) {
        let got = match parse_text("m.yaml", yaml, Format::Yaml) {
            Ok(ms) => ms
                .iter()
                .map(|m| format!("{} <- {} ({})", m.object, m.kind, m.origin))
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expect, "input:\n{yaml}");
    }

    // The seed document's manifests, verbatim, from the files users apply.
    const SEED_RESERVED: &str = include_str!("../../examples/seed/reservedip.yaml");
    const SEED_POOL: &str = include_str!("../../examples/seed/ippool.yaml");

    #[test]
    fn seed_manifests_parse_verbatim() {
        check(
            SEED_RESERVED,
            "reservedip/test-reservedip <- SpiderReservedIP (m.yaml: document 1)",
        );
        check(
            SEED_POOL,
            "ippool/test-ippool <- SpiderIPPool (m.yaml: document 1)",
        );
        let parsed = parse_text("m.yaml", SEED_POOL, Format::Yaml).unwrap();
        let Object::Pool(pool) = &parsed[0].object else {
            panic!("not a pool")
        };
        assert_eq!(pool.total(), 3);
    }

    #[test]
    fn documents_and_lists_are_numbered() {
        let multi = format!("---\n{SEED_RESERVED}---\n# only a comment\n---\n{SEED_POOL}---\n");
        check(
            &multi,
            "reservedip/test-reservedip <- SpiderReservedIP (m.yaml: document 1)\n\
             ippool/test-ippool <- SpiderIPPool (m.yaml: document 3)",
        );
        check(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: ipam.rs/v1alpha1\n  kind: ReservedIP\n  \
             metadata: {name: r}\n  spec: {ips: [fd00::1]}\n  status: {reservedIPCount: 1}\n",
            "reservedip/r <- ReservedIP (m.yaml: document 1, items[0])",
        );
    }

    #[test]
    fn spiderpool_only_fields_are_taken_when_empty_and_refused_when_used() {
        check(
            "apiVersion: spiderpool.spidernet.io/v2beta1\nkind: SpiderIPPool\nmetadata: {name: p}\n\
             spec:\n  subnet: 10.6.0.0/16\n  ips: [10.6.0.2]\n  vlan: 0\n  disable: false\n  \
             nodeName: []\n  podAffinity: {}\n",
            "ippool/p <- SpiderIPPool (m.yaml: document 1)",
        );
        check(
            "apiVersion: spiderpool.spidernet.io/v2beta1\nkind: SpiderIPPool\nmetadata: {name: p}\n\
             spec:\n  subnet: 10.6.0.0/16\n  ips: [10.6.0.2]\n  nodeName: [worker1]\n",
            r#"error: m.yaml: document 1 (SpiderIPPool "p"): spec.nodeName: "[\"worker1\"]": not implemented by ipam-rs: pool selection filters are not implemented: the pool serves every network that names it"#,
        );
        check(
            "apiVersion: spiderpool.spidernet.io/v2beta1\nkind: SpiderIPPool\nmetadata: {name: p}\n\
             spec:\n  subnet: 10.6.0.0/16\n  ips: [10.6.0.2]\n  vlan: 7\n",
            r#"error: m.yaml: document 1 (SpiderIPPool "p"): spec.vlan: "7": not implemented by ipam-rs: deprecated in Spiderpool and not used for allocation"#,
        );
    }

    #[test]
    fn refusals_name_document_field_and_value() {
        let cases: &[(&str, &str)] = &[
            (
                "apiVersion: ipam.rs/v1alpha1\nkind: IPPool\nmetadata: {name: p}\nspec: {subnet: 10.6.0.0/16, ips: [10.6.0.1, 010.6.0.2]}\n",
                r#"m.yaml: document 1 (IPPool "p"): spec.ips[1]: "010.6.0.2": IPv4 octets must not have leading zeros"#,
            ),
            (
                "apiVersion: ipam.rs/v1alpha1\nkind: IPPool\nmetadata: {name: p}\nspec: {subnet: 10.6.0.5/24, ips: [10.6.0.9]}\n",
                r#"m.yaml: document 1 (IPPool "p"): spec.subnet: "10.6.0.5/24": host bits are set; the network is 10.6.0.0/24"#,
            ),
            (
                "apiVersion: ipam.rs/v1alpha1\nkind: IPPool\nmetadata: {name: p}\nspec: {subnet: 10.6.0.0/16, ips: [10.6.0.1], vlan: 3}\n",
                r#"m.yaml: document 1 (IPPool "p"): spec.vlan: "3": unknown field; the spec of IPPool has subnet, ips, excludeIPs, gateway, routes, ipVersion, default, keepStatefulSetAddresses"#,
            ),
            (
                "apiVersion: ipam.rs/v1alpha1\nkind: IPPool\nmetadata: {name: p}\nspec: {subnet: 10.6.0.0/16, ips: [10.6.0.1, 7]}\n",
                r#"m.yaml: document 1 (IPPool "p"): spec.ips[1]: "7": invalid type: integer `7`, expected a string"#,
            ),
            (
                "apiVersion: ipam.rs/v1alpha1\nkind: IPPool\nmetadata: {name: p}\nspec: {subnet: 10.6.0.0/16, ips: [10.6.0.1], routes: [{dst: 10.9.0.0/16, via: x}]}\n",
                r#"m.yaml: document 1 (IPPool "p"): spec.routes[0].via: "x": unknown field `via`, expected `dst` or `gw`"#,
            ),
            (
                "apiVersion: spiderpool.spidernet.io/v2beta1\nkind: SpiderIPPool\nmetadata: {name: p}\nspec: {subnet: 10.6.0.0/16, ips: [10.6.0.1], disable: true}\n",
                r#"m.yaml: document 1 (SpiderIPPool "p"): spec.disable: "true": not implemented by ipam-rs: disabled pools are not supported: ipam-cni would hand out its addresses; delete the pool instead, or reserve its addresses with a ReservedIP"#,
            ),
            (
                "apiVersion: spiderpool.spidernet.io/v2beta1\nkind: SpiderReservedIP\nmetadata: {name: r}\nspec: {ips: [10.6.0.1, fd00::1]}\n",
                r#"m.yaml: document 1 (SpiderReservedIP "r"): spec.ips[1]: "fd00::1": is IPv6 while earlier entries are IPv4; use one ReservedIP per family"#,
            ),
            (
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {}\n",
                r#"m.yaml: document 1: kind: "Deployment": unknown kind; ipam-rs knows IPPool and ReservedIP (ipam.rs/v1alpha1), SpiderIPPool and SpiderReservedIP (spiderpool.spidernet.io/v2beta1)"#,
            ),
            (
                "apiVersion: ipam.rs/v1\nkind: IPPool\nmetadata: {name: d}\nspec: {}\n",
                r#"m.yaml: document 1: apiVersion: "ipam.rs/v1": kind IPPool is of apiVersion ipam.rs/v1alpha1"#,
            ),
            (
                "kind: IPPool\nmetadata: {name: d}\nspec: {}\n",
                r#"m.yaml: document 1: apiVersion: "": is required"#,
            ),
            (
                "apiVersion: ipam.rs/v1alpha1\nkind: ReservedIP\nmetadata: {labels: {a: b}}\nspec: {ips: []}\n",
                r#"m.yaml: document 1: metadata.name: "": is required"#,
            ),
            (
                "apiVersion: ipam.rs/v1alpha1\nkind: ReservedIP\nmetadata: {name: a/b}\nspec: {ips: []}\n",
                r#"m.yaml: document 1 (ReservedIP "a/b"): metadata.name: "a/b": must be 1-253 characters of letters, digits, '-', '.' or '_', starting with a letter or digit"#,
            ),
            (
                "apiVersion: ipam.rs/v1alpha1\nkind: ReservedIP\nmetadata: {name: r}\n",
                r#"m.yaml: document 1 (ReservedIP "r"): spec: "null": is required: an object"#,
            ),
            (
                "apiVersion: ipam.rs/v1alpha1\nkind: ReservedIP\nmetadata: {name: r}\nspec: {ips: []}\nextra: 1\n",
                r#"m.yaml: document 1 (ReservedIP "r"): extra: "1": unknown field; an object has apiVersion, kind, metadata, spec (and status, ignored)"#,
            ),
            ("- a\n- b\n", r#"m.yaml: document 1: (document): "[\"a\",\"b\"]": expected an object with apiVersion, kind, metadata and spec"#),
        ];
        for (yaml, expect) in cases {
            check(yaml, &format!("error: {expect}"));
        }
    }

    #[test]
    fn a_later_bad_document_refuses_the_whole_file() {
        let text = format!(
            "{SEED_RESERVED}---\n{}",
            SEED_POOL.replace("10.6.0.0/16", "10.6.0.0/33")
        );
        check(
            &text,
            r#"error: m.yaml: document 2 (SpiderIPPool "test-ippool"): spec.subnet: "10.6.0.0/33": prefix length must be 0-32 for IPv4 or 0-128 for IPv6"#,
        );
    }

    #[test]
    fn syntax_errors_name_the_document() {
        let got = parse_text(
            "m.yaml",
            &format!("{SEED_RESERVED}---\nspec: [\n"),
            Format::Yaml,
        )
        .unwrap_err()
        .to_string();
        assert!(
            got.starts_with("m.yaml: document 2: not valid YAML: "),
            "{got}"
        );
        let got = parse_text("m.json", "{\"kind\": ", Format::Json)
            .unwrap_err()
            .to_string();
        assert!(
            got.starts_with("m.json: document 1: not valid JSON: "),
            "{got}"
        );
    }

    #[test]
    fn a_key_given_twice_is_refused_naming_it() {
        check(
            &format!("{SEED_RESERVED}---\napiVersion: ipam.rs/v1alpha1\nkind: IPPool\nmetadata: {{name: p}}\nspec:\n  ips: [10.6.0.1]\n  subnet: 10.6.0.0/16\n  ips:\n  - 10.6.0.2\n"),
            r#"error: m.yaml: document 2: spec.ips: mapping key "ips" is given twice (the second value at line 16, column 3); remove one of them"#,
        );
        check(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: ipam.rs/v1alpha1\n  kind: ReservedIP\n  metadata: {name: r, name: s}\n  spec: {ips: []}\n",
            r#"error: m.yaml: document 1: items[0].metadata.name: mapping key "name" is given twice (the second value at line 6, column 29); remove one of them"#,
        );
        let json = r#"{"apiVersion": "ipam.rs/v1alpha1", "kind": "ReservedIP",
  "metadata": {"name": "r"}, "spec": {"ips": ["10.0.0.1"]}, "spec": {"ips": []}}"#;
        assert_eq!(
            parse_text("m.json", json, Format::Json)
                .unwrap_err()
                .to_string(),
            r#"m.json: document 1: spec: mapping key "spec" is given twice (the second value at line 2, column 69); remove one of them"#
        );
    }

    #[test]
    fn duplicates_and_empty_inputs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), SEED_POOL).unwrap();
        std::fs::write(dir.path().join("b.yml"), SEED_POOL).unwrap();
        let err = load(&[Input::Path(dir.path().into())], &mut std::io::empty()).unwrap_err();
        let a = dir.path().join("a.yaml").display().to_string();
        let b = dir.path().join("b.yml").display().to_string();
        assert_eq!(
            err.to_string(),
            format!("{b}: document 1 (ippool/test-ippool): defined again; it was first defined at {a}: document 1")
        );
        let err = load(&[Input::Stdin], &mut "# nothing\n".as_bytes()).unwrap_err();
        assert_eq!(err.to_string(), "no objects passed to apply");
    }

    #[test]
    fn directories_read_manifest_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("2-pool.yaml"), SEED_POOL).unwrap();
        std::fs::write(dir.path().join("1-reserved.yml"), SEED_RESERVED).unwrap();
        std::fs::write(dir.path().join("README.md"), "not a manifest").unwrap();
        std::fs::write(
            dir.path().join("3-more.json"),
            r#"{"apiVersion":"ipam.rs/v1alpha1","kind":"ReservedIP","metadata":{"name":"r6"},"spec":{"ips":["fd00::/64"]}}"#,
        )
        .unwrap();
        let got: Vec<String> = load(&[Input::Path(dir.path().into())], &mut std::io::empty())
            .unwrap()
            .iter()
            .map(|m| m.object.to_string())
            .collect();
        assert_eq!(
            got,
            [
                "reservedip/test-reservedip",
                "ippool/test-ippool",
                "reservedip/r6"
            ]
        );
    }
}
