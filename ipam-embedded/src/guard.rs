//! The panic guard: database libraries may panic on damaged files, and a damaged file must
//! give an error, not a crash.

use ipam_core::StoreError;

/// Runs `f`, turning a panic inside it (a database library failing on a file's contents)
/// into [`StoreError::Io`] with `context`. The panic message still reaches stderr through
/// the panic hook.
///
/// ```
/// use ipam_core::StoreError;
/// let err = ipam_embedded::no_panic("read /x", || -> Result<(), StoreError> { panic!("boom") })
///     .unwrap_err();
/// assert!(err.to_string().contains("read /x"));
/// ```
pub fn no_panic<T>(
    context: impl std::fmt::Display,
    f: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(_) => Err(StoreError::Io {
            context: context.to_string(),
            source: "the database library failed on the file's contents (damaged or foreign)"
                .into(),
        }),
    }
}
