//! A log's storage on whichever engine its configuration names, so that one
//! server runs logs on redb and on PostgreSQL side by side.

use quire_core::node::TileId;
use quire_core::{Hash, HashReader, NodeId};

use super::postgres::{PgReader, PgStore};
use super::redb::{RedbReader, RedbStore};
use super::{Commit, Head, Payload, Storage, StorageReader, StoreError, StoredCheckpoint};

/// One log's storage, on one of the engines.
#[derive(Clone)]
pub enum AnyStore {
    /// The embedded default.
    Redb(std::sync::Arc<RedbStore>),
    /// PostgreSQL.
    Postgres(PgStore),
}

impl AnyStore {
    /// The redb store, when the log is on redb.
    pub fn as_redb(&self) -> Option<&RedbStore> {
        match self {
            AnyStore::Redb(s) => Some(s),
            AnyStore::Postgres(_) => None,
        }
    }

    /// The engine's name, for messages.
    pub fn engine(&self) -> &'static str {
        match self {
            AnyStore::Redb(_) => "redb",
            AnyStore::Postgres(_) => "postgres",
        }
    }
}

impl From<RedbStore> for AnyStore {
    fn from(s: RedbStore) -> Self {
        AnyStore::Redb(std::sync::Arc::new(s))
    }
}

impl From<PgStore> for AnyStore {
    fn from(s: PgStore) -> Self {
        AnyStore::Postgres(s)
    }
}

/// A read view of an [`AnyStore`].
pub enum AnyReader {
    /// Of redb.
    Redb(RedbReader),
    /// Of PostgreSQL.
    Postgres(PgReader),
}

impl Storage for AnyStore {
    type Reader = AnyReader;

    fn reader(&self) -> Result<AnyReader, StoreError> {
        Ok(match self {
            AnyStore::Redb(s) => AnyReader::Redb(s.reader()?),
            AnyStore::Postgres(s) => AnyReader::Postgres(s.reader()?),
        })
    }

    fn durable_reader(&self) -> Result<AnyReader, StoreError> {
        Ok(match self {
            AnyStore::Redb(s) => AnyReader::Redb(s.durable_reader()?),
            AnyStore::Postgres(s) => AnyReader::Postgres(s.durable_reader()?),
        })
    }

    fn shown_durable(&self, view: &AnyReader) {
        if let (AnyStore::Postgres(s), AnyReader::Postgres(v)) = (self, view) {
            s.shown_durable(v);
        }
    }

    fn reads_wait_on_network(&self) -> bool {
        match self {
            AnyStore::Redb(s) => s.reads_wait_on_network(),
            AnyStore::Postgres(s) => s.reads_wait_on_network(),
        }
    }

    fn checks_new_leaves(&self) -> bool {
        match self {
            AnyStore::Redb(s) => s.checks_new_leaves(),
            AnyStore::Postgres(s) => s.checks_new_leaves(),
        }
    }

    fn resume_after_stop(&self) -> &'static str {
        match self {
            AnyStore::Redb(s) => s.resume_after_stop(),
            AnyStore::Postgres(s) => s.resume_after_stop(),
        }
    }

    fn writable(&self) -> Result<(), StoreError> {
        match self {
            AnyStore::Redb(s) => s.writable(),
            AnyStore::Postgres(s) => s.writable(),
        }
    }

    fn reader_at(&self, head: Head, latest: &StoredCheckpoint) -> Result<AnyReader, StoreError> {
        Ok(match self {
            AnyStore::Redb(s) => AnyReader::Redb(s.reader_at(head, latest)?),
            AnyStore::Postgres(s) => AnyReader::Postgres(s.reader_at(head, latest)?),
        })
    }

    fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        match self {
            AnyStore::Redb(s) => s.commit(commit),
            AnyStore::Postgres(s) => s.commit(commit),
        }
    }

    fn commit_unsettled(&self, commit: &Commit) -> Result<(), StoreError> {
        match self {
            AnyStore::Redb(s) => s.commit_unsettled(commit),
            AnyStore::Postgres(s) => s.commit_unsettled(commit),
        }
    }

    fn settle(&self, size: u64) -> Result<(), StoreError> {
        match self {
            AnyStore::Redb(s) => s.settle(size),
            AnyStore::Postgres(s) => s.settle(size),
        }
    }

    fn keep_cosignatures(&self, size: u64, lines: &[u8]) -> Result<(), StoreError> {
        match self {
            AnyStore::Redb(s) => s.keep_cosignatures(size, lines),
            AnyStore::Postgres(s) => s.keep_cosignatures(size, lines),
        }
    }

    fn replace_event_index(
        &self,
        keys: &[(Hash, u64)],
        times: &[(u64, u64)],
    ) -> Result<(), StoreError> {
        match self {
            AnyStore::Redb(s) => s.replace_event_index(keys, times),
            AnyStore::Postgres(s) => s.replace_event_index(keys, times),
        }
    }

    fn drop_entries(&self, dropped: crate::lifecycle::Dropped) -> Result<(), StoreError> {
        match self {
            AnyStore::Redb(s) => s.drop_entries(dropped),
            AnyStore::Postgres(s) => s.drop_entries(dropped),
        }
    }
}

/// Calls the same method on whichever reader it is.
macro_rules! each {
    ($self:ident, $r:ident => $e:expr) => {
        match $self {
            AnyReader::Redb($r) => $e,
            AnyReader::Postgres($r) => $e,
        }
    };
}

impl HashReader for AnyReader {
    type Error = StoreError;

    fn read_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, StoreError> {
        each!(self, r => r.read_hashes(nodes))
    }
}

impl StorageReader for AnyReader {
    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        each!(self, r => r.latest_checkpoint())
    }

    fn checkpoint_at(&self, size: u64) -> Result<Option<StoredCheckpoint>, StoreError> {
        each!(self, r => r.checkpoint_at(size))
    }

    fn checkpoints(&self, from: u64, limit: usize) -> Result<Vec<StoredCheckpoint>, StoreError> {
        each!(self, r => r.checkpoints(from, limit))
    }

    fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        each!(self, r => r.entries(start, end))
    }

    fn checked_entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        each!(self, r => r.checked_entries(start, end))
    }

    fn tile_hashes(&self, tile: TileId, width: u16) -> Result<Vec<Hash>, StoreError> {
        each!(self, r => r.tile_hashes(tile, width))
    }

    fn bundle_entries(&self, index: u64, width: u16) -> Result<Vec<Vec<u8>>, StoreError> {
        each!(self, r => r.bundle_entries(index, width))
    }

    fn find_leaves(&self, leaves: &[Hash]) -> Result<Vec<Option<u64>>, StoreError> {
        each!(self, r => r.find_leaves(leaves))
    }

    fn find_leaf(&self, leaf: &Hash) -> Result<Option<u64>, StoreError> {
        each!(self, r => r.find_leaf(leaf))
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        each!(self, r => r.meta(key))
    }

    fn latest_cosignatures(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        each!(self, r => r.latest_cosignatures())
    }

    fn head(&self) -> Result<Option<Head>, StoreError> {
        each!(self, r => r.head())
    }

    fn payloads(&self, from: u64, to: u64) -> Result<Vec<(u64, Payload)>, StoreError> {
        each!(self, r => r.payloads(from, to))
    }

    fn payload(&self, index: u64) -> Result<Option<Payload>, StoreError> {
        each!(self, r => r.payload(index))
    }

    fn newest_events(&self, keys: &[Hash]) -> Result<Vec<Option<u64>>, StoreError> {
        each!(self, r => r.newest_events(keys))
    }

    fn first_logged_at(&self, time_ms: u64) -> Result<Option<u64>, StoreError> {
        each!(self, r => r.first_logged_at(time_ms))
    }

    fn event_index(&self) -> Result<(Vec<(Hash, u64)>, Vec<(u64, u64)>), StoreError> {
        each!(self, r => r.event_index())
    }

    fn stored_payloads(&self, from: u64, to: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
        each!(self, r => r.stored_payloads(from, to, limit))
    }
}
