//! A toy backend for the layer's own tests: a map kept in one file, which every write
//! transaction rewrites atomically. Small enough to be obviously right, so that the tests
//! below test the layer, not a database library.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use ipam_core::StoreError;

use crate::kv::{Backend, Entry, Txn, TxnError};
use crate::{io_error, Kind};

/// Everything the file holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct State {
    pub records: BTreeMap<Vec<u8>, Vec<u8>>,
    pub meta: BTreeMap<String, u64>,
}

impl State {
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut put = |tag: u8, k: &[u8], v: &[u8]| {
            out.push(tag);
            for part in [k, v] {
                out.extend_from_slice(&(part.len() as u32).to_be_bytes());
                out.extend_from_slice(part);
            }
        };
        for (k, v) in &self.records {
            put(b'r', k, v);
        }
        for (k, v) in &self.meta {
            put(b'm', k.as_bytes(), &v.to_be_bytes());
        }
        out
    }

    fn from_bytes(mut b: &[u8]) -> Option<State> {
        let mut state = State::default();
        let take = |b: &mut &[u8]| -> Option<Vec<u8>> {
            let (len, rest) = b.split_at_checked(4)?;
            let len = u32::from_be_bytes(len.try_into().ok()?) as usize;
            let (part, rest) = rest.split_at_checked(len)?;
            *b = rest;
            Some(part.to_vec())
        };
        while let Some((&tag, rest)) = b.split_first() {
            b = rest;
            let k = take(&mut b)?;
            let v = take(&mut b)?;
            match tag {
                b'r' => {
                    state.records.insert(k, v);
                }
                b'm' => {
                    state.meta.insert(
                        String::from_utf8(k).ok()?,
                        u64::from_be_bytes(v.try_into().ok()?),
                    );
                }
                _ => return None,
            }
        }
        Some(state)
    }

    /// Writes the state to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<(), StoreError> {
        let tmp = path.with_extension("saving");
        let write = || -> std::io::Result<()> {
            std::fs::write(&tmp, self.to_bytes())?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| io_error("write", path, e))
    }

    /// Reads the state at `path`.
    pub fn load(path: &Path) -> Result<State, StoreError> {
        let bytes = std::fs::read(path).map_err(|e| io_error("read", path, e))?;
        State::from_bytes(&bytes).ok_or_else(|| StoreError::Io {
            context: format!("read {}", path.display()),
            source: "not a toy database".into(),
        })
    }
}

/// Write transactions committed so far, per toy database.
pub(crate) static WRITES: Mutex<BTreeMap<PathBuf, usize>> = Mutex::new(BTreeMap::new());

/// Databases whose next write transactions fail, as if their disk were full.
pub(crate) static FAILING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The toy database.
pub(crate) struct Toy {
    path: PathBuf,
    state: Mutex<State>,
    was_empty: bool,
}

impl Backend for Toy {
    const KIND: Kind = Kind::new("toy", "toy.db");

    fn create(path: &Path) -> Result<Toy, StoreError> {
        assert!(!path.exists(), "create over {}", path.display());
        State::default().save(path)?;
        Toy::open(path, Duration::ZERO)
    }

    fn open(path: &Path, _wait: Duration) -> Result<Toy, StoreError> {
        let state = State::load(path)?;
        Ok(Toy {
            path: path.to_owned(),
            was_empty: state == State::default(),
            state: Mutex::new(state),
        })
    }

    fn was_empty_before_open(&self) -> bool {
        self.was_empty
    }

    fn close(self) -> Result<(), StoreError> {
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.state.lock().unwrap().records.get(key).cloned())
    }

    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let state = self.state.lock().unwrap();
        Ok(keys
            .iter()
            .map(|k| state.records.get(*k).cloned())
            .collect())
    }

    fn range(&self, start: &[u8], end: &[u8]) -> Result<Vec<Entry>, StoreError> {
        let state = self.state.lock().unwrap();
        Ok(state
            .records
            .range(start.to_vec()..end.to_vec())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn records(&self) -> Result<Vec<Entry>, StoreError> {
        let state = self.state.lock().unwrap();
        Ok(state.records.clone().into_iter().collect())
    }

    fn meta(&self, name: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.state.lock().unwrap().meta.get(name).copied())
    }

    fn write<T>(&self, f: impl Fn(&mut dyn Txn) -> Result<T, TxnError>) -> Result<T, StoreError> {
        let mut state = self.state.lock().unwrap();
        let mut draft = state.clone();
        let out = match f(&mut ToyTxn(&mut draft)) {
            Ok(out) => out,
            Err(TxnError::Abort(e)) => return Err(e),
            Err(TxnError::Retry) => panic!("the toy never asks for a retry"),
        };
        if FAILING.lock().unwrap().contains(&self.path) {
            return Err(io_error(
                "write",
                &self.path,
                std::io::Error::from_raw_os_error(28),
            ));
        }
        draft.save(&self.path)?;
        *state = draft;
        *WRITES.lock().unwrap().entry(self.path.clone()).or_default() += 1;
        Ok(out)
    }
}

struct ToyTxn<'a>(&'a mut State);

impl Txn for ToyTxn<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, TxnError> {
        Ok(self.0.records.get(key).cloned())
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), TxnError> {
        self.0.records.insert(key.to_vec(), value.to_vec());
        Ok(())
    }
    fn delete(&mut self, key: &[u8]) -> Result<(), TxnError> {
        self.0.records.remove(key);
        Ok(())
    }
    fn meta(&mut self, name: &str) -> Result<Option<u64>, TxnError> {
        Ok(self.0.meta.get(name).copied())
    }
    fn put_meta(&mut self, name: &str, value: u64) -> Result<(), TxnError> {
        self.0.meta.insert(name.to_owned(), value);
        Ok(())
    }
}
