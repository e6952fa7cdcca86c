//! The leaf index's share of a commit ([`LeafPlan`]): under the head's
//! lock, the check that the stored index state is the one its step was
//! computed from and that no run holds a leaf said new; then the blocks
//! the step writes and deletes, and the new state.

use tokio_postgres::types::Type;

use super::conn::{int, Column as _};
use super::leaf_blocks::{
    db_key, probe_params, probe_row, state_params, Probes, PROBE_SQL, STATE_SQL,
};
use super::leaves::Planned;
use super::runs_beside::{reserved_value, Lane};
use super::session::Session;
use super::statement::{checked, exec};
use super::write::Work;
use crate::store::leaf_index::{block_lookup, IndexState, STATE_KEY};
use crate::store::StoreError;

/// Writes blocks: `$1` the log, `$2`–`$5` arrays of runs, first keys,
/// first indexes and pairs; checked by the rows written ([`exec`]).
pub(super) const PUT_BLOCKS: &str = checked!(
    "INSERT INTO quire_leaf_blocks (log, run, first_key, first_idx, pairs) SELECT $1, * FROM unnest($2::int8[], $3::int8[], $4::int8[], $5::bytea[])",
    6,
    7
);

/// The stored reservation before and after a commit, as stored.
type ReservedChange = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The statement that moves the reservation stored under `key` from `change.0` to
/// `change.1`, each compared with what is stored: an insert where none
/// is stored (a row there fails it), else an update or delete of the
/// row that must name the one expected.
fn reserve<'a>(
    client: &'a Session,
    log: &'a i64,
    key: &'a &'static str,
    change: &'a ReservedChange,
) -> Work<'a> {
    let what = || "the reserved leaf index run".to_owned();
    match change {
        (None, Some(to)) => Box::pin(exec(
            client,
            checked!(
                "INSERT INTO quire_meta (log, key, value) VALUES ($1, $2, $3)",
                4,
                5
            ),
            vec![(log, Type::INT8), (key, Type::TEXT), (to, Type::BYTEA)],
            1,
            what(),
        )),
        (Some(from), Some(to)) => Box::pin(exec(
            client,
            checked!(
                "UPDATE quire_meta SET value = $4 WHERE log = $1 AND key = $2 AND value = $3",
                5,
                6
            ),
            vec![
                (log, Type::INT8),
                (key, Type::TEXT),
                (from, Type::BYTEA),
                (to, Type::BYTEA),
            ],
            1,
            what(),
        )),
        (Some(from), None) => Box::pin(exec(
            client,
            checked!(
                "DELETE FROM quire_meta WHERE log = $1 AND key = $2 AND value = $3",
                4,
                5
            ),
            vec![(log, Type::INT8), (key, Type::TEXT), (from, Type::BYTEA)],
            1,
            what(),
        )),
        (None, None) => Box::pin(async { Ok(()) }),
    }
}

/// A commit's check that its leaves are new: the probes of the runs whose
/// filters did not rule their keys out, and the keys.
pub(super) struct NewLeaves {
    pub(super) probes: Probes,
    pub(super) keys: Vec<u64>,
}

/// The leaf index's share of a commit: the blocks its step writes and
/// deletes as statement parameters (runs, keys, indexes, and the pairs of
/// those written), the stored state it extends, and the new state when
/// the step changed it.
pub(super) struct LeafPlan {
    puts: (Vec<i64>, Vec<i64>, Vec<i64>, Vec<Vec<u8>>),
    deletes: (Vec<i64>, Vec<i64>, Vec<i64>),
    base: Vec<u8>,
    state: Option<Vec<u8>>,
    /// Runs written beside the commits taken: their ids and blocks.
    taken: Vec<(i64, u64)>,
    /// Reserved run ids (a run's, a merge's) stored before and after, where
    /// they differ ([`super::runs_beside`]): the key and the change.
    reservations: Vec<(&'static str, ReservedChange)>,
    /// For a commit of leaves said new: their check, read with the state.
    pub(super) new_leaves: Option<NewLeaves>,
}

impl LeafPlan {
    /// The statements of `planned`, whose written blocks move here.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a run or index past `BIGINT`.
    pub(super) fn of(planned: &mut Planned) -> Result<Self, StoreError> {
        let base = planned.base.encode();
        let state = planned.step.state.encode();
        let value = |id: Option<u64>| id.map(reserved_value).transpose();
        let mut reservations = Vec::new();
        for (key, r) in [
            (Lane::Runs, planned.reservation),
            (Lane::Merges, planned.merge_reservation),
        ] {
            if r.from != r.to {
                reservations.push((key.key(), (value(r.from)?, value(r.to)?)));
            }
        }
        let mut p = LeafPlan {
            puts: (Vec::new(), Vec::new(), Vec::new(), Vec::new()),
            deletes: (Vec::new(), Vec::new(), Vec::new()),
            state: (state != base).then_some(state),
            base,
            taken: planned
                .taken
                .iter()
                .map(|(id, blocks)| Ok::<_, StoreError>((int(*id)?, *blocks)))
                .collect::<Result<_, _>>()?,
            reservations,
            new_leaves: None,
        };
        for ((run, k, i), bytes) in std::mem::take(&mut planned.changes.puts) {
            p.puts.0.push(int(run)?);
            p.puts.1.push(db_key(k));
            p.puts.2.push(int(i)?);
            p.puts.3.push(bytes);
        }
        for (run, k, i) in &planned.changes.deletes {
            p.deletes.0.push(int(*run)?);
            p.deletes.1.push(db_key(*k));
            p.deletes.2.push(int(*i)?);
        }
        Ok(p)
    }

    /// The state the step was computed from must be the stored one (read
    /// after the head's lock, which every writer takes), and for leaves
    /// said new, no probed block may hold one's key. The state and the
    /// probes are pipelined: the probed runs are the stored state's once
    /// it is the one expected.
    ///
    /// # Errors
    /// [`StoreError::Engine`] when another writer changed the state;
    /// [`StoreError::LeafStored`] when a leaf's key is in a run.
    pub(super) async fn check(&self, client: &Session, log: i64) -> Result<(), StoreError> {
        let state_params = state_params(&log);
        let state = client.row_opt(STATE_SQL, &state_params);
        let probed = async {
            match &self.new_leaves {
                Some(c) if !c.probes.0.is_empty() => client
                    .rows_planned(PROBE_SQL, &probe_params(&log, &c.probes))
                    .await
                    .map(Some),
                _ => Ok(None),
            }
        };
        let (row, probed) = futures_util::future::join(state, probed).await;
        let stored = match row? {
            Some(r) => r.col::<Vec<u8>>(0)?,
            None => IndexState::default().encode(),
        };
        if stored != self.base {
            return Err(StoreError::engine(
                "the stored leaf index changed since this commit's step was computed (another writer); the next commit reads it again",
            ));
        }
        if let (Some(rows), Some(c)) = (probed?, &self.new_leaves) {
            let mut found = Vec::new();
            for r in &rows {
                let (n, block) = probe_row(r)?;
                if let Some(k) = c.keys.get(n) {
                    block_lookup(&block, *k, &mut found);
                }
                if let Some(i) = found.first() {
                    return Err(StoreError::LeafStored(format!(
                        "leaf {n} of the commit may be stored already (its key is at index {i} in a run of the leaf index)"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The blocks written and deleted, and the new state, each checked by
    /// the rows it wrote (`log` is borrowed: the parameters refer to it).
    #[allow(clippy::trivially_copy_pass_by_ref)]
    pub(super) fn statements<'a>(
        &'a self,
        client: &'a Session,
        log: &'a i64,
        work: &mut Vec<Work<'a>>,
    ) {
        let (puts, deletes) = (&self.puts, &self.deletes);
        for (run, blocks) in &self.taken {
            work.push(Box::pin(exec(
                client,
                "WITH w AS (SELECT 1 FROM quire_leaf_blocks WHERE log = $1 AND run = $2) SELECT quire_expect(count(*), $3, $4) FROM w",
                vec![(log, Type::INT8), (run, Type::INT8)],
                *blocks,
                format!("blocks of leaf index run {run}, written beside the commits"),
            )));
        }
        for (key, change) in &self.reservations {
            work.push(reserve(client, log, key, change));
        }
        if !puts.0.is_empty() {
            work.push(Box::pin(exec(
                client,
                PUT_BLOCKS,
                vec![
                    (log, Type::INT8),
                    (&puts.0, Type::INT8_ARRAY),
                    (&puts.1, Type::INT8_ARRAY),
                    (&puts.2, Type::INT8_ARRAY),
                    (&puts.3, Type::BYTEA_ARRAY),
                ],
                puts.0.len() as u64,
                "leaf index blocks".into(),
            )));
        }
        if !deletes.0.is_empty() {
            work.push(Box::pin(exec(
                client,
                checked!(
                    "DELETE FROM quire_leaf_blocks b USING unnest($2::int8[], $3::int8[], $4::int8[]) AS d(run, first_key, first_idx) WHERE b.log = $1 AND b.run = d.run AND b.first_key = d.first_key AND b.first_idx = d.first_idx",
                    5,
                    6
                ),
                vec![
                    (log, Type::INT8),
                    (&deletes.0, Type::INT8_ARRAY),
                    (&deletes.1, Type::INT8_ARRAY),
                    (&deletes.2, Type::INT8_ARRAY),
                ],
                deletes.0.len() as u64,
                "leaf index blocks deleted".into(),
            )));
        }
        if let Some(state) = &self.state {
            work.push(Box::pin(exec(
                client,
                checked!(
                    "INSERT INTO quire_meta (log, key, value) VALUES ($1, $2, $3) ON CONFLICT (log, key) DO UPDATE SET value = EXCLUDED.value",
                    4,
                    5
                ),
                vec![
                    (log, Type::INT8),
                    (&STATE_KEY, Type::TEXT),
                    (state, Type::BYTEA),
                ],
                1,
                "the leaf index state".into(),
            )));
        }
    }
}
