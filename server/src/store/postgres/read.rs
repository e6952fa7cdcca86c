//! A read view of a PostgreSQL log: the head and latest checkpoint read in
//! one statement when the view opens, and every later read bounded by them.
//! Stored rows only grow (a row's prefix never changes) and each read is one
//! statement, so a view reads the same whatever commits after it opened.

use std::collections::BTreeMap;
use std::sync::Arc;

use quire_core::{perfect_root, Hash, HashReader, NodeId};
use tokio_postgres::types::Type;

use super::bounded;
use super::conn::{int, uint, Column as _};
use super::Shared;
use crate::store::bundle::{self, BUNDLE_SIZE};
use crate::store::events::decode_payload;
use crate::store::rows::RowSpan;
use crate::store::{Head, Payload, StorageReader, StoreError, StoredCheckpoint};

/// A read view of a [`super::PgStore`].
pub struct PgReader {
    shared: Arc<Shared>,
    head: Option<Head>,
    latest: Option<StoredCheckpoint>,
}

/// A stored checkpoint from its row, its note read as [`bounded`] says.
fn checkpoint(size: i64, at: i64, note: Vec<u8>) -> Result<StoredCheckpoint, StoreError> {
    Ok(StoredCheckpoint {
        size: uint(size)?,
        signed_at_ms: uint(at)?,
        note: bounded::within(note, bounded::NOTE, || {
            format!("the stored note of the checkpoint of size {size}")
        })?,
    })
}

impl PgReader {
    /// A view of the last commit; `durable`: one whose head and checkpoint
    /// are flushed, and on the synchronous standbys a commit requires
    /// ([`super::settle::durable_view`], in the same session after the
    /// read: it covers every commit read, settled or not).
    pub(super) fn open(shared: &Arc<Shared>, durable: bool) -> Result<Self, StoreError> {
        let s = Arc::clone(shared);
        let what = if durable {
            "opening a durable read view"
        } else {
            "opening a read view"
        };
        let (head, latest) = shared.driver.run(what, async move {
            let c = s.reader().await?;
            let row = c
                .row_one(
                    "SELECT h.size, h.root, cp.size, cp.signed_at_ms, cp.note
                     FROM (SELECT 1) AS one
                     LEFT JOIN quire_heads h ON h.log = $1
                     LEFT JOIN LATERAL (
                         SELECT size, signed_at_ms, substring(note FROM 1 FOR $2) AS note
                         FROM quire_checkpoints
                         WHERE log = $1 ORDER BY size DESC LIMIT 1
                     ) cp ON true",
                    &[
                        (&s.log, Type::INT8),
                        (&bounded::param(bounded::NOTE), Type::INT4),
                    ],
                )
                .await?;
            let head = match (row.col::<Option<i64>>(0)?, row.col::<Option<Vec<u8>>>(1)?) {
                (Some(size), Some(root)) => Some(Head {
                    size: uint(size)?,
                    root: Hash::from_slice(&root)
                        .map_err(|_| StoreError::Corrupt("the stored head's root".into()))?,
                }),
                _ => None,
            };
            let latest = match (
                row.col::<Option<i64>>(2)?,
                row.col::<Option<i64>>(3)?,
                row.col::<Option<Vec<u8>>>(4)?,
            ) {
                (Some(size), Some(at), Some(note)) => Some(checkpoint(size, at, note)?),
                _ => None,
            };
            if durable {
                let ever = s.replicated.load(std::sync::atomic::Ordering::Relaxed);
                super::settle::durable_view(&c, s.replication, ever).await?;
                s.leaves.durable(head.map_or(0, |h| h.size));
            }
            Ok((head, latest))
        })?;
        Ok(PgReader {
            shared: Arc::clone(shared),
            head,
            latest,
        })
    }

    /// A view bounded by a head and checkpoint the store is known to hold,
    /// read from nothing.
    pub(super) fn at(shared: &Arc<Shared>, head: Head, latest: StoredCheckpoint) -> Self {
        PgReader {
            shared: Arc::clone(shared),
            head: Some(head),
            latest: Some(latest),
        }
    }

    fn size(&self) -> u64 {
        self.head.map_or(0, |h| h.size)
    }

    pub(super) fn latest_size(&self) -> Option<u64> {
        self.latest.as_ref().map(|c| c.size)
    }
}

impl HashReader for PgReader {
    type Error = StoreError;

    fn read_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, StoreError> {
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let size = self.size();
        let (mut n, mut mid, mut level, mut idx, mut off, mut len) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for (k, node) in nodes.iter().enumerate() {
            let end = (node.index + 1)
                .checked_shl(u32::from(node.level))
                .unwrap_or(u64::MAX);
            if end > size || node.level >= 64 {
                return Err(StoreError::Missing(format!("node {node:?}")));
            }
            let span = RowSpan::of(*node);
            n.push(i32::try_from(k).unwrap_or(i32::MAX));
            mid.push(span.mid);
            level.push(i16::from(span.tile.level));
            idx.push(int(span.tile.index)?);
            off.push(i32::try_from(span.offset * 32).unwrap_or(i32::MAX));
            len.push(i32::try_from(span.count * 32).unwrap_or(i32::MAX));
        }
        let s = Arc::clone(&self.shared);
        let runs = self.shared.driver.run("reading hashes", async move {
            let c = s.reader().await?;
            let rows = c
                .rows(
                    "SELECT k.n, substring(t.hashes FROM k.off + 1 FOR k.len)
                     FROM unnest($2::int4[], $3::bool[], $4::int2[], $5::int8[], $6::int4[], $7::int4[])
                          AS k(n, mid, level, idx, off, len)
                     JOIN quire_tiles t
                       ON t.log = $1 AND t.mid = k.mid AND t.level = k.level AND t.idx = k.idx",
                    &[
                        (&s.log, Type::INT8),
                        (&n, Type::INT4_ARRAY),
                        (&mid, Type::BOOL_ARRAY),
                        (&level, Type::INT2_ARRAY),
                        (&idx, Type::INT8_ARRAY),
                        (&off, Type::INT4_ARRAY),
                        (&len, Type::INT4_ARRAY),
                    ],
                )
                .await?;
            rows.iter()
                .map(|r| Ok((r.col::<i32>(0)?, r.col::<Vec<u8>>(1)?)))
                .collect::<Result<Vec<_>, StoreError>>()
        })?;
        let mut got: Vec<Option<Vec<u8>>> = vec![None; nodes.len()];
        for (k, bytes) in runs {
            if let Some(slot) = usize::try_from(k).ok().and_then(|k| got.get_mut(k)) {
                *slot = Some(bytes);
            }
        }
        nodes
            .iter()
            .zip(got)
            .map(|(node, bytes)| {
                let span = RowSpan::of(*node);
                let bytes = bytes.ok_or_else(|| {
                    StoreError::Missing(format!(
                        "{} {}/{} (for node {node:?})",
                        if span.mid { "mid row" } else { "tile" },
                        span.tile.level,
                        span.tile.index
                    ))
                })?;
                if bytes.len() as u64 != span.count * 32 {
                    return Err(StoreError::Missing(format!(
                        "node {node:?} beyond its stored row"
                    )));
                }
                let run: Vec<Hash> = bytes
                    .chunks_exact(32)
                    .map(|c| Hash::from_slice(c).unwrap_or_default())
                    .collect();
                perfect_root(&run)
                    .ok_or_else(|| StoreError::Corrupt(format!("stored row for {node:?}")))
            })
            .collect()
    }
}

impl StorageReader for PgReader {
    fn stored_payloads(&self, from: u64, to: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
        let s = Arc::clone(&self.shared);
        let (from, to) = (int(from)?, int(to)?);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.shared.driver.run("reading payloads", async move {
            let c = s.reader().await?;
            c.rows(
                "SELECT idx FROM quire_event_payloads
                 WHERE log = $1 AND idx >= $2 AND idx < $3 AND erased_by IS NULL
                 ORDER BY idx LIMIT $4",
                &[
                    (&s.log, Type::INT8),
                    (&from, Type::INT8),
                    (&to, Type::INT8),
                    (&limit, Type::INT8),
                ],
            )
            .await?
            .iter()
            .map(|r| uint(r.col(0)?))
            .collect()
        })
    }

    fn event_index(&self) -> Result<(Vec<(Hash, u64)>, Vec<(u64, u64)>), StoreError> {
        let s = Arc::clone(&self.shared);
        self.shared
            .driver
            .run("reading the event index", async move {
                let c = s.reader().await?;
                let keys = c
                    .rows(
                        "SELECT key, idx FROM quire_event_keys WHERE log = $1",
                        &[(&s.log, Type::INT8)],
                    )
                    .await?
                    .iter()
                    .map(|r| {
                        let k = Hash::from_slice(&r.col::<Vec<u8>>(0)?).map_err(|_| {
                            StoreError::Corrupt("an event key is not 32 bytes".into())
                        })?;
                        Ok((k, uint(r.col(1)?)?))
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                let times = c
                    .rows(
                        "SELECT time_ms, first_idx FROM quire_log_times WHERE log = $1",
                        &[(&s.log, Type::INT8)],
                    )
                    .await?
                    .iter()
                    .map(|r| Ok((uint(r.col(0)?)?, uint(r.col(1)?)?)))
                    .collect::<Result<Vec<_>, StoreError>>()?;
                Ok((keys, times))
            })
    }

    fn payload(&self, index: u64) -> Result<Option<Payload>, StoreError> {
        if self.head.is_none_or(|h| index >= h.size) {
            return Ok(None);
        }
        let s = Arc::clone(&self.shared);
        let idx = int(index)?;
        self.shared.driver.run("reading a payload", async move {
            let c = s.reader().await?;
            let row = c
                .row_opt(
                    "SELECT substring(salt || payload FROM 1 FOR $3), erased_by
                     FROM quire_event_payloads WHERE log = $1 AND idx = $2",
                    &[
                        (&s.log, Type::INT8),
                        (&idx, Type::INT8),
                        (&bounded::param(bounded::PAYLOAD), Type::INT4),
                    ],
                )
                .await?;
            row.map(|r| payload_of(index, &r, 0)).transpose()
        })
    }

    fn payloads(&self, from: u64, to: u64) -> Result<Vec<(u64, Payload)>, StoreError> {
        let to = to.min(self.head.map_or(0, |h| h.size));
        if from >= to {
            return Ok(Vec::new());
        }
        let s = Arc::clone(&self.shared);
        let (lo, hi) = (int(from)?, int(to)?);
        self.shared.driver.run("reading payloads", async move {
            let c = s.reader().await?;
            let rows = c
                .rows(
                    "SELECT idx, substring(salt || payload FROM 1 FOR $4), erased_by
                     FROM quire_event_payloads
                     WHERE log = $1 AND idx >= $2 AND idx < $3 ORDER BY idx",
                    &[
                        (&s.log, Type::INT8),
                        (&lo, Type::INT8),
                        (&hi, Type::INT8),
                        (&bounded::param(bounded::PAYLOAD), Type::INT4),
                    ],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    let i = uint(r.col(0)?)?;
                    Ok((i, payload_of(i, r, 1)?))
                })
                .collect()
        })
    }

    fn newest_events(&self, keys: &[Hash]) -> Result<Vec<Option<u64>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let s = Arc::clone(&self.shared);
        let wanted: Vec<Vec<u8>> = keys.iter().map(|k| k.0.to_vec()).collect();
        let found = self.shared.driver.run("reading event keys", async move {
            let c = s.reader().await?;
            let rows = c
                .rows(
                    "SELECT key, idx FROM quire_event_keys WHERE log = $1 AND key = ANY($2::bytea[])",
                    &[(&s.log, Type::INT8), (&wanted, Type::BYTEA_ARRAY)],
                )
                .await?;
            rows.iter()
                .map(|r| Ok((r.col::<Vec<u8>>(0)?, uint(r.col(1)?)?)))
                .collect::<Result<BTreeMap<Vec<u8>, u64>, StoreError>>()
        })?;
        Ok(keys
            .iter()
            .map(|k| found.get(k.0.as_slice()).copied())
            .collect())
    }

    fn first_logged_at(&self, time_ms: u64) -> Result<Option<u64>, StoreError> {
        let Some(size) = self.head.map(|h| h.size) else {
            return Ok(None);
        };
        let s = Arc::clone(&self.shared);
        let t = int(time_ms)?;
        let first = self.shared.driver.run("reading log times", async move {
            let c = s.reader().await?;
            let row = c
                .row_opt(
                    "SELECT first_idx FROM quire_log_times WHERE log = $1 AND time_ms >= $2
                     ORDER BY time_ms, first_idx LIMIT 1",
                    &[(&s.log, Type::INT8), (&t, Type::INT8)],
                )
                .await?;
            row.map(|r| uint(r.col(0)?)).transpose()
        })?;
        Ok(first.filter(|i| *i < size))
    }

    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        Ok(self.latest.clone())
    }

    fn checkpoint_at(&self, size: u64) -> Result<Option<StoredCheckpoint>, StoreError> {
        if self.latest_size().is_none_or(|max| size > max) {
            return Ok(None);
        }
        Ok(self
            .checkpoints(size, 1)?
            .into_iter()
            .find(|c| c.size == size))
    }

    fn checkpoints(&self, from: u64, limit: usize) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let Some(max) = self.latest_size() else {
            return Ok(Vec::new());
        };
        if from > max || limit == 0 {
            return Ok(Vec::new());
        }
        let (from, max, limit) = (
            int(from)?,
            int(max)?,
            i64::try_from(limit).unwrap_or(i64::MAX),
        );
        let s = Arc::clone(&self.shared);
        self.shared.driver.run("reading checkpoints", async move {
            let c = s.reader().await?;
            let rows = c
                .rows(
                    "SELECT size, signed_at_ms, substring(note FROM 1 FOR $5) FROM quire_checkpoints
                     WHERE log = $1 AND size >= $2 AND size <= $3 ORDER BY size LIMIT $4",
                    &[
                        (&s.log, Type::INT8),
                        (&from, Type::INT8),
                        (&max, Type::INT8),
                        (&limit, Type::INT8),
                        (&bounded::param(bounded::NOTE), Type::INT4),
                    ],
                )
                .await?;
            rows.into_iter()
                .map(|r| checkpoint(r.col(0)?, r.col(1)?, r.col(2)?))
                .collect()
        })
    }

    fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        if start > end || end > self.size() {
            return Err(StoreError::Missing(format!("entries {start}..{end}")));
        }
        if start == end {
            return Ok(Vec::new());
        }
        let (b0, b1) = (int(start / BUNDLE_SIZE)?, int(end.div_ceil(BUNDLE_SIZE))?);
        // Rows of the bundle still filling start within it, at most.
        let (e0, e1) = (int(start - start % BUNDLE_SIZE)?, int(end)?);
        let s = Arc::clone(&self.shared);
        let rows = self.shared.driver.run("reading entries", async move {
            let c = s.reader().await?;
            // One statement: a bundle completed meanwhile is seen either as
            // its single rows or as the bundle, never as neither.
            let rows = c
                .rows(
                    "SELECT false, idx, 0, substring(data FROM 1 FOR $6) FROM quire_bundles
                     WHERE log = $1 AND idx >= $2 AND idx < $3
                     UNION ALL
                     SELECT true, idx, n, substring(data FROM 1 FOR $6) FROM quire_entries
                     WHERE log = $1 AND idx >= $4 AND idx < $5",
                    &[
                        (&s.log, Type::INT8),
                        (&b0, Type::INT8),
                        (&b1, Type::INT8),
                        (&e0, Type::INT8),
                        (&e1, Type::INT8),
                        (&bounded::param(bounded::BUNDLE), Type::INT4),
                    ],
                )
                .await?;
            rows.into_iter()
                .map(|r| {
                    Ok((
                        r.col::<bool>(0)?,
                        r.col::<i64>(1)?,
                        r.col::<i32>(2)?,
                        r.col::<Vec<u8>>(3)?,
                    ))
                })
                .collect::<Result<Vec<_>, StoreError>>()
        })?;
        let mut found: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        for (filling, idx, n, data) in rows {
            let idx = uint(idx)?;
            if filling {
                // A row that ends before the range is not read.
                if idx.saturating_add(u64::try_from(n).unwrap_or(0)) <= start {
                    continue;
                }
                let within = (idx..).zip(super::filling::decode(idx, n, data)?);
                found.extend(within.filter(|(i, _)| (start..end).contains(i)));
                continue;
            }
            let data = bounded::within(data, bounded::BUNDLE, || {
                format!("stored entry bundle {idx}")
            })?;
            // Only the frames holding the range are decompressed.
            let first = idx * BUNDLE_SIZE;
            let from = usize::try_from(start.saturating_sub(first)).unwrap_or(usize::MAX);
            let to = usize::try_from((end - first).min(BUNDLE_SIZE)).unwrap_or(0);
            let at = first + from as u64;
            for (i, e) in (at..).zip(bundle::decode_range(&data, from, to)?) {
                found.insert(i, e);
            }
        }
        let count = found.len() as u64;
        let first = found.keys().next().copied();
        if count != end - start || first != Some(start) {
            return Err(StoreError::Missing(format!(
                "entries {start}..{end}: {count} stored"
            )));
        }
        Ok(found.into_values().collect())
    }

    fn find_leaves(&self, leaves: &[Hash]) -> Result<Vec<Option<u64>>, StoreError> {
        if leaves.is_empty() {
            return Ok(Vec::new());
        }
        self.shared
            .leaves
            .find(&self.shared, self.size(), leaves, |indexes| {
                let nodes: Vec<NodeId> = indexes.iter().map(|i| NodeId::leaf(*i)).collect();
                self.read_hashes(&nodes)
            })
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let (s, key) = (Arc::clone(&self.shared), key.to_owned());
        self.shared.driver.run("reading metadata", async move {
            let c = s.reader().await?;
            let row = c
                .row_opt(
                    "SELECT substring(value FROM 1 FOR $3) FROM quire_meta WHERE log = $1 AND key = $2",
                    &[
                        (&s.log, Type::INT8),
                        (&key, Type::TEXT),
                        (&bounded::param(bounded::META), Type::INT4),
                    ],
                )
                .await?;
            row.map(|r| {
                bounded::within(r.col::<Vec<u8>>(0)?, bounded::META, || {
                    format!("stored metadata {key:?}")
                })
            })
            .transpose()
        })
    }

    fn latest_cosignatures(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let s = Arc::clone(&self.shared);
        self.shared.driver.run("reading cosignatures", async move {
            let c = s.reader().await?;
            let row = c
                .row_opt(
                    "SELECT size, substring(lines FROM 1 FOR $2) FROM quire_cosignatures
                     WHERE log = $1 ORDER BY size DESC LIMIT 1",
                    &[
                        (&s.log, Type::INT8),
                        (&bounded::param(bounded::COSIGNATURES), Type::INT4),
                    ],
                )
                .await?;
            match row {
                Some(r) => {
                    let size = uint(r.col(0)?)?;
                    let lines =
                        bounded::within(r.col::<Vec<u8>>(1)?, bounded::COSIGNATURES, || {
                            format!("the kept cosignatures of size {size}")
                        })?;
                    Ok(Some((size, lines)))
                }
                None => Ok(None),
            }
        })
    }

    fn head(&self) -> Result<Option<Head>, StoreError> {
        Ok(self.head)
    }
}

/// The payload of event `index` in a row whose columns from `at` are
/// `salt || payload` and `erased_by`.
fn payload_of(index: u64, r: &tokio_postgres::Row, at: usize) -> Result<Payload, StoreError> {
    match r.col::<Option<i64>>(at + 1)? {
        Some(by) => Ok(Payload::Erased { by: uint(by)? }),
        None => decode_payload(
            index,
            &bounded::within(r.col::<Vec<u8>>(at)?, bounded::PAYLOAD, || {
                format!("the stored payload of event {index}")
            })?,
        ),
    }
}
