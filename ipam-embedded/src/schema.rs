//! The schema mark, its check, and the upgrade hook.
//!
//! Every database carries the schema it was written with (meta `schema`). Opening checks it:
//! this build's schema opens; a newer one is refused untouched; an older one is upgraded one
//! step at a time, each step a pure function over the raw records (key bytes, record bytes
//! without the version header) whose output replaces the whole record set in one write
//! transaction together with the new mark — so a process killed during an upgrade leaves
//! the store at one schema or the next, never between.

use ipam_core::StoreError;

use crate::error::Refusal;
use crate::header;
use crate::kv::{Backend, Entry};

/// The schema this build writes and reads: ipam-core's.
pub const SCHEMA: u64 = ipam_core::backend::migrate::SCHEMA;

/// The meta name of the schema mark.
pub const META_SCHEMA: &str = "schema";

/// The meta name of the version counter: the version the next commit gives what it writes.
pub const META_NEXT_VERSION: &str = "next_version";

/// One step of a data migration: every record of schema N, as (key bytes, record bytes
/// without the version header), to every record of schema N + 1.
pub type Migration = fn(Vec<Entry>) -> Result<Vec<Entry>, StoreError>;

/// The migration from schema `from` to `from + 1`.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    /// The schema it reads.
    pub from: u64,
    /// The function.
    pub migrate: Migration,
}

/// The schema a build writes, and how it upgrades older ones.
///
/// ```
/// assert_eq!(ipam_embedded::Schema::IPAM.current, ipam_embedded::SCHEMA);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Schema {
    /// The schema written.
    pub current: u64,
    /// Upgrades from older schemas, one step each.
    pub steps: &'static [Step],
}

impl Schema {
    /// This build's schema. Where a schema change goes: bump [`SCHEMA`] and add the step from
    /// the previous one.
    pub const IPAM: Schema = Schema {
        current: SCHEMA,
        steps: &[Step {
            from: 1,
            migrate: ipam_core::backend::migrate::from_v1,
        }],
    };

    fn step_from(&self, from: u64) -> Option<&Step> {
        self.steps.iter().find(|s| s.from == from)
    }
}

/// Marks a new, empty database with `schema`.
pub(crate) fn mark_new<B: Backend>(db: &B, schema: &Schema) -> Result<(), StoreError> {
    db.write(|tx| {
        tx.put_meta(META_SCHEMA, schema.current)?;
        tx.put_meta(META_NEXT_VERSION, 1)
    })
}

/// Checks the schema mark of an opened database, upgrading an older one; the refusals leave
/// the database as it was. `path` names it in messages.
pub(crate) fn check<B: Backend>(
    db: &B,
    schema: &Schema,
    path: &std::path::Path,
) -> Result<(), StoreError> {
    let refuse = |r: Refusal| r.into_store_error(path);
    loop {
        match db.meta(META_SCHEMA)? {
            Some(found) if found == schema.current => return Ok(()),
            Some(found) if found > schema.current => {
                return Err(refuse(Refusal::NewerSchema {
                    found,
                    current: schema.current,
                }))
            }
            Some(found) => {
                if (found..schema.current).any(|n| schema.step_from(n).is_none()) {
                    return Err(refuse(Refusal::NoMigration {
                        found,
                        current: schema.current,
                    }));
                }
                let step = schema.step_from(found).expect("checked above");
                upgrade(db, step, path)?;
            }
            None if !db.records()?.is_empty() => return Err(refuse(Refusal::Foreign)),
            None if !db.was_empty_before_open() => return Err(refuse(Refusal::Unmarked)),
            // An empty database left by a build that created stores in place and was
            // interrupted before marking it: nothing was ever acknowledged from it.
            None => return mark_new(db, schema),
        }
    }
}

/// Runs one migration step: reads every record, migrates, and replaces the record set and
/// the schema mark in one write transaction.
fn upgrade<B: Backend>(db: &B, step: &Step, path: &std::path::Path) -> Result<(), StoreError> {
    let old = db.records()?;
    let old_keys: Vec<Vec<u8>> = old.iter().map(|(k, _)| k.clone()).collect();
    let mut bodies = Vec::with_capacity(old.len());
    for (key, value) in old {
        let Some((_, record)) = header::split(&value) else {
            return Err(StoreError::Corrupt {
                key: String::from_utf8_lossy(&key).into_owned(),
                reason: "record shorter than its version".into(),
            });
        };
        let record = record.to_vec();
        bodies.push((key, record));
    }
    let new = (step.migrate)(bodies).map_err(|e| StoreError::Io {
        context: format!(
            "upgrade {} from schema {} to {}",
            path.display(),
            step.from,
            step.from + 1
        ),
        source: Box::new(e),
    })?;
    db.write(|tx| {
        let version = tx.meta(META_NEXT_VERSION)?.unwrap_or(1);
        tx.put_meta(META_NEXT_VERSION, version + 1)?;
        for key in &old_keys {
            tx.delete(key)?;
        }
        for (key, record) in &new {
            tx.put(key, &header::join(version, record))?;
        }
        tx.put_meta(META_SCHEMA, step.from + 1)
    })
}
