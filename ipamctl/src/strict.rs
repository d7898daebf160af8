//! Decoding a manifest document into a JSON value the way `serde_json::Value` does, except
//! that a mapping which gives one key twice is refused.
//!
//! Both YAML and JSON parsers, fed to `serde_json::Value`, keep the last of two equal keys
//! without a word, so `ips` written twice would silently apply only the second list.
//! kubectl refuses such a document, and so does `ipamctl`: which value was meant is
//! ambiguous.

use std::cell::RefCell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// A key found twice in one mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DuplicateKey {
    /// The field's path in the document (`spec.ips`, `items[0].metadata.name`).
    pub field: String,
    /// The key as written.
    pub key: String,
}

/// Deserializes one document with `deserializer`. A duplicated key fails the parser with
/// its own error (which carries the position) and is also returned, so that the caller can
/// report it as what it is rather than as a syntax error.
pub(crate) fn decode<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Value, (D::Error, Option<DuplicateKey>)> {
    let found = RefCell::new(None);
    let seed = Node {
        path: String::new(),
        found: &found,
    };
    seed.deserialize(deserializer)
        .map_err(|e| (e, found.into_inner()))
}

/// One node of the document: where it is (for the message) and where to record a
/// duplicate.
struct Node<'a> {
    path: String,
    found: &'a RefCell<Option<DuplicateKey>>,
}

impl Node<'_> {
    fn child(&self, segment: fmt::Arguments<'_>) -> Node<'_> {
        Node {
            path: format!("{}{segment}", self.path),
            found: self.found,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

// Scalars are converted exactly as `serde_json::Value`'s own visitor converts them, so that
// every document without a duplicate decodes as it did before this check existed.
impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    // An integer beyond 64 bits (YAML readers hand them over as 128-bit) becomes a float,
    // as serde_json makes one of such a number in JSON text: `serde_json::Value` cannot
    // hold it otherwise, and failing here would refuse a whole document for a value that
    // may be ignored (a `status` count of an IPv6 /64 printed by an older ipamctl). A spec
    // field that needs an integer still refuses the float, naming the field.
    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Value, E> {
        match i64::try_from(v) {
            Ok(v) => Ok(Value::Number(v.into())),
            Err(_) => self.visit_f64(v as f64),
        }
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Value, E> {
        match u64::try_from(v) {
            Ok(v) => Ok(Value::Number(v.into())),
            Err(_) => self.visit_f64(v as f64),
        }
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) =
            seq.next_element_seed(self.child(format_args!("[{}]", items.len())))?
        {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let child = if self.path.is_empty() {
                self.child(format_args!("{key}"))
            } else {
                self.child(format_args!(".{key}"))
            };
            if out.contains_key(&key) {
                let field = child.path.clone();
                *self.found.borrow_mut() = Some(DuplicateKey {
                    field,
                    key: key.clone(),
                });
                // Failing inside the second value makes the parser's error carry that
                // value's position (failing here would give the mapping's).
                return map.next_value_seed(Refuse(key)).map(|never| match never {});
            }
            let value = map.next_value_seed(child)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// The second value of a duplicated key: fails as soon as the parser has found it.
struct Refuse(String);

/// A value that cannot exist, so that [`Refuse`] provably never succeeds.
enum Never {}

impl<'de> DeserializeSeed<'de> for Refuse {
    type Value = Never;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Never, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Refuse {
    type Value = Never;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no second value for key {:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Result<Value, (String, Option<DuplicateKey>)> {
        decode(serde_yaml_ng::Deserializer::from_str(text)).map_err(|(e, d)| (e.to_string(), d))
    }

    #[test]
    fn documents_decode_as_serde_json_values_do() {
        for text in [
            "a: 1\nb: [x, 2.5, -3, true, null, ~]\nc: {d: 18446744073709551615}\n",
            "1: one\n'2': two\n",
            "small: -9223372036854775808\n",
            "inf: .inf\nnan: .nan\n",
            "",
        ] {
            let ours = yaml(text).map_err(|(e, _)| e);
            let theirs: Result<Value, String> =
                serde::Deserialize::deserialize(serde_yaml_ng::Deserializer::from_str(text))
                    .map_err(|e: serde_yaml_ng::Error| e.to_string());
            assert_eq!(ours, theirs, "{text:?}");
        }
    }

    /// serde_json's own visitor refuses integers beyond 64 bits ("number out of range");
    /// here they become floats, as JSON text parsed by serde_json gives them.
    #[test]
    fn integers_beyond_64_bits_become_floats() {
        let v = yaml("c: {d: 18446744073709551616}\nbig: 340282366920938463463374607431768211455\nneg: -18446744073709551616\n")
            .unwrap();
        assert_eq!(v["c"]["d"].as_f64(), Some(18446744073709551616.0));
        assert_eq!(v["big"].as_f64(), Some(3.402823669209385e38));
        assert_eq!(v["neg"].as_f64(), Some(-18446744073709551616.0));
        let json: Value = serde_json::from_str(r#"{"d": 18446744073709551616}"#).unwrap();
        assert_eq!(yaml("d: 18446744073709551616\n").unwrap(), json);
    }

    #[test]
    fn a_duplicated_key_is_found_with_its_path() {
        let (_, dup) = yaml("spec:\n  ips: [a]\n  subnet: s\n  ips: [b]\n").unwrap_err();
        assert_eq!(
            dup,
            Some(DuplicateKey {
                field: "spec.ips".into(),
                key: "ips".into()
            })
        );
        let (_, dup) = yaml("items:\n- metadata: {name: a, name: b}\n").unwrap_err();
        assert_eq!(dup.unwrap().field, "items[0].metadata.name");
        let (_, dup) = yaml("kind: A\nkind: B\n").unwrap_err();
        assert_eq!(dup.unwrap().field, "kind");
        let json = decode(&mut serde_json::Deserializer::from_str(
            r#"{"a": {"b": 1, "b": 2}}"#,
        ));
        assert_eq!(json.unwrap_err().1.unwrap().field, "a.b");
    }
}
