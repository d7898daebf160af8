//! The version header: every stored value is the record's version, 8 bytes big-endian,
//! followed by the record's bytes.
//!
//! ```
//! use ipam_embedded::header;
//! let value = header::join(7, b"rec");
//! assert_eq!(value, b"\0\0\0\0\0\0\0\x07rec");
//! assert_eq!(header::split(&value), Some((7, &b"rec"[..])));
//! assert_eq!(header::split(b"short"), None);
//! ```

/// The length of the header.
pub const LEN: usize = 8;

/// A stored value: `version`'s header, then `record`.
pub fn join(version: u64, record: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(LEN + record.len());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(record);
    out
}

/// The version and the record bytes of a stored value; `None` when it is shorter than
/// its header.
pub fn split(value: &[u8]) -> Option<(u64, &[u8])> {
    let (version, record) = value.split_at_checked(LEN)?;
    Some((u64::from_be_bytes(version.try_into().ok()?), record))
}
