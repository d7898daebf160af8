//! Address syntax: single addresses, inclusive ranges and CIDRs, parsed strictly.
//!
//! Every address the project reads from a person goes through this module. Parsing is
//! stricter than `ipnet`'s: IPv4 octets with leading zeros, CIDRs with host bits set, ranges
//! whose ends are of different families or reversed, and any white space are errors that
//! quote the input.
//!
//! Addresses are also mapped to `u128` (IPv4 addresses occupy `0..2^32`), the number line on
//! which [`IntervalSet`](crate::IntervalSet) and the allocation bitmaps work. A value on that
//! line means nothing without its [`Family`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// An IP family. IPv4 and IPv6 are equal citizens everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Family {
    /// IPv4 (`ipVersion: 4`).
    V4,
    /// IPv6 (`ipVersion: 6`).
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The `ipVersion` number of the family: 4 or 6.
    pub fn version(self) -> u8 {
        match self {
            Family::V4 => 4,
            Family::V6 => 6,
        }
    }

    /// The family for an `ipVersion` number, if it is 4 or 6.
    pub fn from_version(version: u8) -> Option<Family> {
        match version {
            4 => Some(Family::V4),
            6 => Some(Family::V6),
            _ => None,
        }
    }

    /// How many bits an address of the family has (32 or 128).
    pub fn bits(self) -> u32 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// The highest address of the family on the `u128` number line.
    pub fn max_value(self) -> u128 {
        match self {
            Family::V4 => u128::from(u32::MAX),
            Family::V6 => u128::MAX,
        }
    }

    /// The address at `value` on this family's number line.
    ///
    /// # Panics
    /// If `value` is above [`Family::max_value`]; callers only pass values they derived from
    /// addresses of the same family.
    pub fn addr(self, value: u128) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::from(
                u32::try_from(value).expect("IPv4 value out of range"),
            )),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(value)),
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Family::V4 => f.write_str("IPv4"),
            Family::V6 => f.write_str("IPv6"),
        }
    }
}

/// The position of an address on the `u128` number line (IPv4 in `0..2^32`).
///
/// ```
/// use ipam_core::backend::to_u128;
/// assert_eq!(to_u128("10.0.0.1".parse().unwrap()), 0x0a00_0001);
/// ```
pub fn to_u128(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// Why a piece of address text was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddrErrorKind {
    /// The text is empty.
    Empty,
    /// The text contains white space.
    WhiteSpace,
    /// An IPv4 octet is written with a leading zero (`010.0.0.1`), which some parsers read
    /// as octal.
    LeadingZero,
    /// The text is not an IPv4 or IPv6 address.
    NotAnAddress,
    /// The prefix length is not a number within the family's bounds.
    BadPrefix,
    /// A CIDR has host bits set; `network` is what was probably meant.
    HostBits {
        /// The same prefix with the host bits cleared.
        network: IpNet,
    },
    /// The two ends of a range are of different families.
    MixedFamilies,
    /// The start of a range is after its end.
    Reversed,
    /// A CIDR was required but the text is a single address or a range.
    NotACidr,
    /// A single address was required but the text is a range or a CIDR.
    NotASingleAddress,
}

impl fmt::Display for AddrErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrErrorKind::Empty => f.write_str("empty address"),
            AddrErrorKind::WhiteSpace => f.write_str("white space is not allowed"),
            AddrErrorKind::LeadingZero => f.write_str("IPv4 octets must not have leading zeros"),
            AddrErrorKind::NotAnAddress => f.write_str("not an IPv4 or IPv6 address"),
            AddrErrorKind::BadPrefix => {
                f.write_str("prefix length must be 0-32 for IPv4 or 0-128 for IPv6")
            }
            AddrErrorKind::HostBits { network } => {
                write!(f, "host bits are set; the network is {network}")
            }
            AddrErrorKind::MixedFamilies => f.write_str("range ends are of different IP families"),
            AddrErrorKind::Reversed => f.write_str("range start is after its end"),
            AddrErrorKind::NotACidr => f.write_str("expected a CIDR such as 10.6.0.0/16"),
            AddrErrorKind::NotASingleAddress => {
                f.write_str("expected a single address such as 10.6.0.1")
            }
        }
    }
}

/// Address text that could not be parsed; the message quotes the input.
///
/// ```
/// let err = ipam_core::parse_cidr("10.6.0.5/24").unwrap_err();
/// assert_eq!(err.to_string(), r#""10.6.0.5/24": host bits are set; the network is 10.6.0.0/24"#);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{input:?}: {kind}")]
pub struct AddrError {
    input: String,
    kind: AddrErrorKind,
}

impl AddrError {
    fn new(input: &str, kind: AddrErrorKind) -> AddrError {
        AddrError {
            input: input.to_owned(),
            kind,
        }
    }

    /// The text that was refused.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// Why it was refused.
    pub fn kind(&self) -> &AddrErrorKind {
        &self.kind
    }
}

/// Parses one address strictly (`std` rules: no leading zeros, no zone, no spaces).
///
/// ```
/// use ipam_core::parse_addr;
/// assert!(parse_addr("fd00::1").is_ok());
/// assert!(parse_addr("010.0.0.1").is_err());
/// ```
pub fn parse_addr(text: &str) -> Result<IpAddr, AddrError> {
    check_text(text)?;
    if text.contains('/') || text.contains('-') {
        return Err(AddrError::new(text, AddrErrorKind::NotASingleAddress));
    }
    parse_plain(text, text)
}

/// Parses a CIDR strictly: the address part as [`parse_addr`], a decimal prefix length within
/// the family's bounds, and no host bits.
///
/// ```
/// use ipam_core::parse_cidr;
/// assert_eq!(parse_cidr("fd00::/64").unwrap().to_string(), "fd00::/64");
/// assert!(parse_cidr("10.6.0.0").is_err());
/// ```
pub fn parse_cidr(text: &str) -> Result<IpNet, AddrError> {
    check_text(text)?;
    let Some((addr, prefix)) = text.split_once('/') else {
        return Err(AddrError::new(text, AddrErrorKind::NotACidr));
    };
    let addr = parse_plain(addr, text)?;
    let digits_ok = !prefix.is_empty()
        && prefix.len() <= 3
        && prefix.bytes().all(|b| b.is_ascii_digit())
        && !(prefix.len() > 1 && prefix.starts_with('0'));
    let prefix: u8 = match prefix.parse() {
        Ok(p) if digits_ok => p,
        _ => return Err(AddrError::new(text, AddrErrorKind::BadPrefix)),
    };
    let net =
        IpNet::new(addr, prefix).map_err(|_| AddrError::new(text, AddrErrorKind::BadPrefix))?;
    if net.trunc() != net {
        return Err(AddrError::new(
            text,
            AddrErrorKind::HostBits {
                network: net.trunc(),
            },
        ));
    }
    Ok(net)
}

/// An inclusive range of addresses of one family; never empty.
///
/// Built from any of the three address forms by [`IpRange::parse`].
///
/// ```
/// use ipam_core::IpRange;
/// let r: IpRange = "10.6.168.131-10.6.168.133".parse().unwrap();
/// assert_eq!(r.len(), 3);
/// assert_eq!(r.to_string(), "10.6.168.131-10.6.168.133");
/// assert_eq!("10.6.0.0/24".parse::<IpRange>().unwrap().len(), 256);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpRange {
    family: Family,
    first: u128,
    last: u128,
}

impl IpRange {
    /// Parses a single address, an inclusive range `A-B` or a CIDR.
    pub fn parse(text: &str) -> Result<IpRange, AddrError> {
        check_text(text)?;
        if text.contains('/') {
            return Ok(IpRange::from(parse_cidr(text)?));
        }
        if let Some((start, end)) = text.split_once('-') {
            let start = parse_plain(start, text)?;
            let end = parse_plain(end, text)?;
            if Family::of(start) != Family::of(end) {
                return Err(AddrError::new(text, AddrErrorKind::MixedFamilies));
            }
            let (first, last) = (to_u128(start), to_u128(end));
            if first > last {
                return Err(AddrError::new(text, AddrErrorKind::Reversed));
            }
            return Ok(IpRange {
                family: Family::of(start),
                first,
                last,
            });
        }
        Ok(IpRange::single(parse_plain(text, text)?))
    }

    /// The range holding exactly one address.
    pub fn single(addr: IpAddr) -> IpRange {
        let v = to_u128(addr);
        IpRange {
            family: Family::of(addr),
            first: v,
            last: v,
        }
    }

    /// The family of both ends.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The first address.
    pub fn first(&self) -> IpAddr {
        self.family.addr(self.first)
    }

    /// The last address (inclusive).
    pub fn last(&self) -> IpAddr {
        self.family.addr(self.last)
    }

    /// The ends on the `u128` number line.
    pub fn bounds(&self) -> (u128, u128) {
        (self.first, self.last)
    }

    /// How many addresses the range holds (saturating at `u128::MAX` for all of IPv6).
    #[allow(clippy::len_without_is_empty)] // never empty
    pub fn len(&self) -> u128 {
        (self.last - self.first).saturating_add(1)
    }

    /// Whether the whole range lies within `net`.
    pub fn within(&self, net: &IpNet) -> bool {
        let n = IpRange::from(*net);
        n.family == self.family && n.first <= self.first && self.last <= n.last
    }

    /// Whether `addr` is in the range.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let v = to_u128(addr);
        Family::of(addr) == self.family && self.first <= v && v <= self.last
    }
}

impl From<IpNet> for IpRange {
    fn from(net: IpNet) -> IpRange {
        IpRange {
            family: Family::of(net.addr()),
            first: to_u128(net.network()),
            last: to_u128(net.broadcast()),
        }
    }
}

impl FromStr for IpRange {
    type Err = AddrError;
    fn from_str(s: &str) -> Result<IpRange, AddrError> {
        IpRange::parse(s)
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first())
        } else {
            write!(f, "{}-{}", self.first(), self.last())
        }
    }
}

fn check_text(text: &str) -> Result<(), AddrError> {
    if text.is_empty() {
        return Err(AddrError::new(text, AddrErrorKind::Empty));
    }
    if text.chars().any(char::is_whitespace) {
        return Err(AddrError::new(text, AddrErrorKind::WhiteSpace));
    }
    Ok(())
}

/// Parses a bare address that is part of `whole` (the text quoted in errors).
fn parse_plain(part: &str, whole: &str) -> Result<IpAddr, AddrError> {
    if part.is_empty() {
        return Err(AddrError::new(whole, AddrErrorKind::NotAnAddress));
    }
    match part.parse::<IpAddr>() {
        Ok(addr) => Ok(addr),
        Err(_) => {
            let dotted_decimal = part.split('.').count() == 4
                && part
                    .split('.')
                    .all(|o| !o.is_empty() && o.bytes().all(|b| b.is_ascii_digit()));
            let leading_zero = part.split('.').any(|o| o.len() > 1 && o.starts_with('0'));
            let kind = if dotted_decimal && leading_zero {
                AddrErrorKind::LeadingZero
            } else {
                AddrErrorKind::NotAnAddress
            };
            Err(AddrError::new(whole, kind))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row per input: the expected display of the parsed range, or of the error.
    fn check(input: &str, expect: &str) {
        let got = match IpRange::parse(input) {
            Ok(r) => r.to_string(),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expect, "input {input:?}");
    }

    #[test]
    fn address_forms() {
        check("10.6.168.131", "10.6.168.131");
        check("fd00::1", "fd00::1");
        check("10.6.168.131-10.6.168.133", "10.6.168.131-10.6.168.133");
        check("fd00::1-fd00::ff", "fd00::1-fd00::ff");
        check("10.6.0.0/24", "10.6.0.0-10.6.0.255");
        check("10.6.0.7/32", "10.6.0.7");
        check("fd00::/126", "fd00::-fd00::3");
        check("0.0.0.0/0", "0.0.0.0-255.255.255.255");
        check("::/0", "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
        check("10.0.0.1-10.0.0.1", "10.0.0.1");
    }

    #[test]
    fn refused_forms_quote_the_input() {
        check(
            "010.0.0.1",
            r#"error: "010.0.0.1": IPv4 octets must not have leading zeros"#,
        );
        check(
            "10.6.0.5/24",
            r#"error: "10.6.0.5/24": host bits are set; the network is 10.6.0.0/24"#,
        );
        check(
            "fd00::1/64",
            r#"error: "fd00::1/64": host bits are set; the network is fd00::/64"#,
        );
        check(
            "10.0.0.1-fd00::1",
            r#"error: "10.0.0.1-fd00::1": range ends are of different IP families"#,
        );
        check(
            "10.0.0.9-10.0.0.1",
            r#"error: "10.0.0.9-10.0.0.1": range start is after its end"#,
        );
        check(
            "10.0.0.1 - 10.0.0.9",
            r#"error: "10.0.0.1 - 10.0.0.9": white space is not allowed"#,
        );
        check(
            " 10.0.0.1",
            r#"error: " 10.0.0.1": white space is not allowed"#,
        );
        check("", r#"error: "": empty address"#);
        check("10.0.0", r#"error: "10.0.0": not an IPv4 or IPv6 address"#);
        check(
            "10.0.0.256",
            r#"error: "10.0.0.256": not an IPv4 or IPv6 address"#,
        );
        check(
            "fe80::1%eth0",
            r#"error: "fe80::1%eth0": not an IPv4 or IPv6 address"#,
        );
        check(
            "10.0.0.0/33",
            r#"error: "10.0.0.0/33": prefix length must be 0-32 for IPv4 or 0-128 for IPv6"#,
        );
        check(
            "10.0.0.0/08",
            r#"error: "10.0.0.0/08": prefix length must be 0-32 for IPv4 or 0-128 for IPv6"#,
        );
        check(
            "10.0.0.0/+8",
            r#"error: "10.0.0.0/+8": prefix length must be 0-32 for IPv4 or 0-128 for IPv6"#,
        );
        check(
            "10.0.0.0/",
            r#"error: "10.0.0.0/": prefix length must be 0-32 for IPv4 or 0-128 for IPv6"#,
        );
        check(
            "-10.0.0.1",
            r#"error: "-10.0.0.1": not an IPv4 or IPv6 address"#,
        );
        check(
            "10.0.0.1-",
            r#"error: "10.0.0.1-": not an IPv4 or IPv6 address"#,
        );
        check(
            "10.0.0.1-10.0.0.2-10.0.0.3",
            r#"error: "10.0.0.1-10.0.0.2-10.0.0.3": not an IPv4 or IPv6 address"#,
        );
    }

    #[test]
    fn single_and_cidr_parsers_refuse_the_other_forms() {
        assert_eq!(
            parse_addr("10.0.0.0/8").unwrap_err().kind(),
            &AddrErrorKind::NotASingleAddress
        );
        assert_eq!(
            parse_cidr("10.0.0.1").unwrap_err().kind(),
            &AddrErrorKind::NotACidr
        );
        assert_eq!(parse_cidr("fd00::/64").unwrap().prefix_len(), 64);
    }

    #[test]
    fn number_line_round_trips() {
        for text in [
            "0.0.0.0",
            "255.255.255.255",
            "::",
            "fd00::abcd",
            "::ffff:1.2.3.4",
        ] {
            let addr: IpAddr = text.parse().unwrap();
            assert_eq!(Family::of(addr).addr(to_u128(addr)), addr);
        }
    }
}
