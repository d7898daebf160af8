//! The field names of a spec, as serde reads them, from its one definition: so that a
//! reader can refuse an unknown field naming the fields there are, and a list of fields
//! never has to be written again beside a type.
//!
//! ```
//! assert_eq!(
//!     ipam_api::fields::of::<ipam_core::ReservedIpSpec>(),
//!     ["ips", "ipVersion"]
//! );
//! ```

use serde::de::{Deserialize, Deserializer, Visitor};

/// The wire names of `T`'s fields, in declaration order (renames applied). Empty for a
/// type serde does not read as a struct (a map, a flattened struct).
pub fn of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Grab(&mut fields));
    fields
}

/// A deserializer that records the field names serde asks for, and reads nothing.
struct Grab<'a>(&'a mut &'static [&'static str]);

/// How [`Grab`] stops: it never yields a value.
#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field names only")
    }
}

impl std::error::Error for Stop {}

impl serde::de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Stop {
        Stop
    }
}

impl<'de> Deserializer<'de> for Grab<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        *self.0 = fields;
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_pools_fields_in_declaration_order() {
        assert_eq!(
            super::of::<ipam_core::IpPoolSpec>(),
            [
                "subnet",
                "ips",
                "excludeIPs",
                "gateway",
                "routes",
                "ipVersion",
                "default",
                "keepStatefulSetAddresses"
            ]
        );
        assert_eq!(super::of::<ipam_core::RouteSpec>(), ["dst", "gw"]);
    }
}
