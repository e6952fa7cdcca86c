//! A commit's event rows (`crate::store::events`) as PostgreSQL
//! statements, pipelined with the rest of the commit.

use tokio_postgres::types::{ToSql, Type};

use super::conn::int;
use super::session::Session;
use super::statement::{checked, exec};
use crate::store::{EventRows, StoreError};

/// The event rows of one commit, as statement parameters.
#[derive(Default)]
pub(super) struct EventPlan {
    payload_idx: Vec<i64>,
    salts: Vec<Vec<u8>>,
    payloads: Vec<Vec<u8>>,
    keys: Vec<Vec<u8>>,
    key_idx: Vec<i64>,
    time: Option<(i64, i64)>,
    erased: Vec<i64>,
    erased_by: Vec<i64>,
    copied: Vec<i64>,
    copied_by: Vec<i64>,
}

impl EventPlan {
    pub(super) fn of(rows: &EventRows) -> Result<Self, StoreError> {
        let mut p = EventPlan::default();
        for r in &rows.payloads {
            p.payload_idx.push(int(r.index)?);
            p.salts.push(r.salt.to_vec());
            p.payloads.push(r.payload.clone());
        }
        for (k, i) in &rows.newest {
            p.keys.push(k.0.to_vec());
            p.key_idx.push(int(*i)?);
        }
        for (i, by) in &rows.erased {
            p.erased.push(int(*i)?);
            p.erased_by.push(int(*by)?);
        }
        for (i, by) in &rows.erased_copies {
            p.copied.push(int(*i)?);
            p.copied_by.push(int(*by)?);
        }
        p.time = rows
            .time
            .map(|(t, i)| Ok::<_, StoreError>((int(t)?, int(i)?)))
            .transpose()?;
        Ok(p)
    }

    /// The statements, each checked by the rows it wrote (`log` is
    /// borrowed: the statements' parameters refer to it).
    #[allow(clippy::trivially_copy_pass_by_ref)]
    pub(super) fn statements<'a>(
        &'a self,
        client: &'a Session,
        log: &'a i64,
        work: &mut Vec<super::write::Work<'a>>,
    ) {
        if !self.payload_idx.is_empty() {
            work.push(Box::pin(exec(
                client,
                checked!(
                    "INSERT INTO quire_event_payloads (log, idx, salt, payload) SELECT $1, * FROM unnest($2::int8[], $3::bytea[], $4::bytea[])",
                    5,
                    6
                ),
                vec![
                    (log as &(dyn ToSql + Sync), Type::INT8),
                    (&self.payload_idx, Type::INT8_ARRAY),
                    (&self.salts, Type::BYTEA_ARRAY),
                    (&self.payloads, Type::BYTEA_ARRAY),
                ],
                self.payload_idx.len() as u64,
                "event payloads".into(),
            )));
        }
        if !self.keys.is_empty() {
            work.push(Box::pin(exec(
                client,
                checked!(
                    "INSERT INTO quire_event_keys (log, key, idx) SELECT $1, * FROM unnest($2::bytea[], $3::int8[]) ON CONFLICT (log, key) DO UPDATE SET idx = EXCLUDED.idx",
                    4,
                    5
                ),
                vec![
                    (log as &(dyn ToSql + Sync), Type::INT8),
                    (&self.keys, Type::BYTEA_ARRAY),
                    (&self.key_idx, Type::INT8_ARRAY),
                ],
                self.keys.len() as u64,
                "event keys".into(),
            )));
        }
        if !self.erased.is_empty() {
            work.push(Box::pin(exec(
                client,
                checked!(
                    "UPDATE quire_event_payloads AS p SET salt = '', payload = '', erased_by = e.by FROM unnest($2::int8[], $3::int8[]) AS e(idx, by) WHERE p.log = $1 AND p.idx = e.idx AND p.erased_by IS NULL",
                    4,
                    5
                ),
                vec![
                    (log as &(dyn ToSql + Sync), Type::INT8),
                    (&self.erased, Type::INT8_ARRAY),
                    (&self.erased_by, Type::INT8_ARRAY),
                ],
                self.erased.len() as u64,
                "erased payloads".into(),
            )));
        }
        if !self.copied.is_empty() {
            work.push(Box::pin(exec(
                client,
                checked!(
                    "INSERT INTO quire_event_payloads (log, idx, salt, payload, erased_by) SELECT $1, idx, '', '', by FROM unnest($2::int8[], $3::int8[]) AS e(idx, by)",
                    4,
                    5
                ),
                vec![
                    (log as &(dyn ToSql + Sync), Type::INT8),
                    (&self.copied, Type::INT8_ARRAY),
                    (&self.copied_by, Type::INT8_ARRAY),
                ],
                self.copied.len() as u64,
                "erased payloads copied".into(),
            )));
        }
        if let Some((t, i)) = &self.time {
            work.push(Box::pin(exec(
                client,
                checked!(
                    "INSERT INTO quire_log_times (log, time_ms, first_idx) VALUES ($1, $2, $3)",
                    4,
                    5
                ),
                vec![
                    (log as &(dyn ToSql + Sync), Type::INT8),
                    (t, Type::INT8),
                    (i, Type::INT8),
                ],
                1,
                "the commit's log time".into(),
            )));
        }
    }
}

/// Replaces the log's event indexes by `keys` and `times`, each table in
/// one statement: rows not in the new set deleted, the others written.
pub(super) fn replace_index(
    shared: &std::sync::Arc<super::Shared>,
    keys: &[(quire_core::Hash, u64)],
    times: &[(u64, u64)],
) -> Result<(), StoreError> {
    let mut k = (Vec::new(), Vec::new());
    for (key, i) in keys {
        k.0.push(key.0.to_vec());
        k.1.push(int(*i)?);
    }
    let mut t = (Vec::new(), Vec::new());
    for (time, i) in times {
        t.0.push(int(*time)?);
        t.1.push(int(*i)?);
    }
    let s = std::sync::Arc::clone(shared);
    shared.driver.run("replacing the event index", async move {
        let c = s.reader().await?;
        c.exec(
            "WITH k AS (SELECT * FROM unnest($2::bytea[], $3::int8[]) AS k(key, idx)),
             d AS (DELETE FROM quire_event_keys q WHERE q.log = $1
                   AND NOT EXISTS (SELECT 1 FROM k WHERE k.key = q.key))
             INSERT INTO quire_event_keys (log, key, idx) SELECT $1, key, idx FROM k
             ON CONFLICT (log, key) DO UPDATE SET idx = EXCLUDED.idx",
            &[
                (&s.log, Type::INT8),
                (&k.0, Type::BYTEA_ARRAY),
                (&k.1, Type::INT8_ARRAY),
            ],
        )
        .await?;
        c.exec(
            "WITH t AS (SELECT * FROM unnest($2::int8[], $3::int8[]) AS t(time_ms, first_idx)),
             d AS (DELETE FROM quire_log_times q WHERE q.log = $1
                   AND NOT EXISTS (SELECT 1 FROM t WHERE t.time_ms = q.time_ms AND t.first_idx = q.first_idx))
             INSERT INTO quire_log_times (log, time_ms, first_idx) SELECT $1, time_ms, first_idx FROM t
             ON CONFLICT DO NOTHING",
            &[
                (&s.log, Type::INT8),
                (&t.0, Type::INT8_ARRAY),
                (&t.1, Type::INT8_ARRAY),
            ],
        )
        .await?;
        Ok(())
    })
}
