//! [`ipam_core::Store`] for every [`Backend`]: the one module that knows ipam-core's typed
//! keys, records, versions and transactions. Everything else in the layer is bytes.
//!
//! Keys are [`Key::encode`] bytes; a value is the version header ([`header`]) followed by
//! [`Record::encode`] bytes; a [`KeyRange`] is scanned as the byte range
//! [`KeyRange::bounds`] gives.
//! A commit is one write transaction: check every operation's [`Expect`] against the version
//! stored, take the next version from the counter, write, commit durably.

use async_trait::async_trait;
use ipam_core::backend::{Expect, Key, KeyRange, Op, Record, Transaction};
use ipam_core::{Store, StoreError};
use ipam_core::{Version, Versioned};

use crate::header;
use crate::kv::{Backend, TxnError};
use crate::schema::META_NEXT_VERSION;
use crate::{no_panic, EmbeddedStore};

fn decode(key: &Key, value: &[u8]) -> Result<Versioned<Record>, StoreError> {
    let Some((version, record)) = header::split(value) else {
        return Err(StoreError::Corrupt {
            key: key.to_string(),
            reason: "record shorter than its version".into(),
        });
    };
    Ok(Versioned {
        value: Record::decode(key, record)?,
        version: Version::from(version),
    })
}

/// One operation of a transaction, in bytes, with its expectation.
struct Planned {
    key: Vec<u8>,
    name: String,
    expect: Expect,
    /// `Some(record bytes)` to write, `None` to delete.
    change: Option<Vec<u8>>,
}

fn plan(txn: Transaction) -> Vec<Planned> {
    txn.into_ops()
        .into_iter()
        .map(|op| {
            let key = op.key().encode();
            let name = op.key().to_string();
            let expect = op.expect().clone();
            let change = match op {
                Op::Put { record, .. } => Some(record.encode()),
                Op::Delete { .. } => None,
            };
            Planned {
                key,
                name,
                expect,
                change,
            }
        })
        .collect()
}

impl<B: Backend> EmbeddedStore<B> {
    fn context(&self, what: &str) -> String {
        format!("{what} {}", self.path.display())
    }

    /// Reads several records together (one read transaction where the library has them).
    fn get_many_now(&self, keys: &[Key]) -> Result<Vec<Option<Versioned<Record>>>, StoreError> {
        no_panic(self.context("read"), || {
            let encoded: Vec<Vec<u8>> = keys.iter().map(Key::encode).collect();
            let refs: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
            let values = self.db.get_many(&refs)?;
            keys.iter()
                .zip(values)
                .map(|(key, v)| v.map(|v| decode(key, &v)).transpose())
                .collect()
        })
    }

    fn commit_now(&self, txn: Transaction) -> Result<(), StoreError> {
        let planned = plan(txn);
        self.db.write(|tx| {
            for op in &planned {
                let current = match tx.get(&op.key)? {
                    Some(value) => match header::split(&value) {
                        Some((version, _)) => Some(Version::from(version)),
                        None => {
                            return Err(TxnError::Abort(StoreError::Corrupt {
                                key: op.name.clone(),
                                reason: "record shorter than its version".into(),
                            }))
                        }
                    },
                    None => None,
                };
                if !op.expect.holds(current.as_ref()) {
                    return Err(TxnError::Abort(StoreError::Conflict {
                        key: op.name.clone(),
                    }));
                }
            }
            let version = tx.meta(META_NEXT_VERSION)?.unwrap_or(1);
            tx.put_meta(META_NEXT_VERSION, version + 1)?;
            for op in &planned {
                match &op.change {
                    Some(record) => tx.put(&op.key, &header::join(version, record))?,
                    None => tx.delete(&op.key)?,
                }
            }
            Ok(())
        })
    }
}

#[async_trait]
impl<B: Backend> Store for EmbeddedStore<B> {
    async fn get(&self, key: &Key) -> Result<Option<Versioned<Record>>, StoreError> {
        no_panic(self.context("read"), || {
            self.db
                .get(&key.encode())?
                .map(|v| decode(key, &v))
                .transpose()
        })
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Versioned<Record>>>, StoreError> {
        self.get_many_now(keys)
    }

    async fn scan(&self, range: &KeyRange) -> Result<Vec<(Key, Versioned<Record>)>, StoreError> {
        no_panic(self.context("read"), || {
            let (start, end) = range.bounds();
            self.db
                .range(&start, &end)?
                .into_iter()
                .map(|(k, v)| {
                    let key = Key::decode(&k)?;
                    let value = decode(&key, &v)?;
                    Ok((key, value))
                })
                .collect()
        })
    }

    async fn commit(&self, txn: Transaction) -> Result<(), StoreError> {
        no_panic(self.context("write"), || self.commit_now(txn))
    }
}
