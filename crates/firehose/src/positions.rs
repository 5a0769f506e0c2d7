//! How far each delivery stream has delivered: the position in its
//! internal stream after the last record of the last confirmed delivery,
//! kept in `firehose-positions.json` (written whole, fsynced, renamed, as
//! the catalog is). A delivery is confirmed (its object durable) before its
//! position is saved, so a crash in between delivers those records again:
//! at least once, duplicates only within the last unconfirmed delivery.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sluice_log::Storage;
use sluice_streams::store::{CatalogStore, FileCatalogStore};

/// The file the positions are kept in, beside the catalog.
pub const POSITIONS_FILE: &str = "firehose-positions.json";

/// One delivery stream's position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The creation time of the internal stream the position is in (a
    /// position in an older stream of the same name means nothing).
    pub stream_created_ms: u64,
    /// The cursor (`sluice_log::Cursor`) where the next delivery starts.
    #[serde(with = "decimal")]
    pub next: u128,
    /// A Kinesis stream source: per shard (by index) where the next
    /// delivery reads, or that the shard was read to its end. Shards not
    /// named start at their beginning once their parents are done.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub shards: BTreeMap<u32, ShardPosition>,
}

/// Where reading one shard of a Kinesis source goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPosition {
    #[serde(with = "decimal")]
    pub next: u128,
    /// Read to the end of the closed shard: its children may be read.
    #[serde(default)]
    pub done: bool,
}

mod decimal {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug)]
pub(crate) struct Positions {
    store: FileCatalogStore,
    /// Saved positions by `account/region/name`; the lock also keeps saves
    /// one at a time (they share a temporary file).
    map: Mutex<BTreeMap<String, Position>>,
}

impl Positions {
    pub(crate) fn open(storage: Arc<dyn Storage>, dir: PathBuf) -> std::io::Result<Self> {
        let store = FileCatalogStore::named(storage, dir, POSITIONS_FILE);
        let map = match store.load()? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other)?,
            None => BTreeMap::new(),
        };
        Ok(Self {
            store,
            map: Mutex::new(map),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Position>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self, key: &str) -> Option<Position> {
        self.lock().get(key).cloned()
    }

    /// Saves `position` for `key` durably (or `None`: forgets it).
    pub(crate) fn save(&self, key: &str, position: Option<Position>) -> std::io::Result<()> {
        let mut map = self.lock();
        let mut next = map.clone();
        match position {
            Some(p) => next.insert(key.to_owned(), p),
            None => next.remove(key),
        };
        let bytes = serde_json::to_vec(&next).expect("positions serialize");
        match self.store.save(&bytes) {
            Ok(()) => {
                *map = next;
                Ok(())
            }
            Err(e) => {
                if e.replaced {
                    *map = next;
                }
                Err(e.error)
            }
        }
    }

    /// Forgets every position but those `keep` names.
    pub(crate) fn retain(&self, keep: impl Fn(&str) -> bool) -> std::io::Result<()> {
        let mut map = self.lock();
        if map.keys().all(|k| keep(k)) {
            return Ok(());
        }
        let mut next = map.clone();
        next.retain(|k, _| keep(k));
        let bytes = serde_json::to_vec(&next).expect("positions serialize");
        self.store.save(&bytes).map_err(|e| e.error)?;
        *map = next;
        Ok(())
    }
}
