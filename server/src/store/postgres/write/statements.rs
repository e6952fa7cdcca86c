//! The second round trip's writes after the bundles: tile and mid rows,
//! the leaf index's blocks, metadata, event rows, the checkpoint and the
//! new head, each checked by PostgreSQL ([`super::super::statement`]).

use tokio_postgres::types::Type;

use super::super::leaf_plan::LeafPlan;
use super::super::session::Session;
use super::super::statement::{checked, exec};
use super::{Plan, Work};

impl Plan {
    /// Tile and mid rows, leaf index blocks, metadata, event rows, the
    /// checkpoint and the new head: the checkpoint after every write that
    /// PostgreSQL checks, so a write that fails aborts the transaction
    /// before the signed note is ever written.
    pub(super) fn statements<'a>(
        &'a self,
        client: &'a Session,
        leaf: Option<&'a LeafPlan>,
        work: &mut Vec<Work<'a>>,
    ) {
        if !self.new_rows.0.is_empty() {
            let n = self.new_rows.0.len() as u64;
            work.push(Box::pin(exec(
                client,
                checked!(
                    "INSERT INTO quire_tiles (log, mid, level, idx, hashes) SELECT $1, * FROM unnest($2::bool[], $3::int2[], $4::int8[], $5::bytea[]) ON CONFLICT DO NOTHING",
                    6,
                    7
                ),
                vec![
                    (&self.log, Type::INT8),
                    (&self.new_rows.0, Type::BOOL_ARRAY),
                    (&self.new_rows.1, Type::INT2_ARRAY),
                    (&self.new_rows.2, Type::INT8_ARRAY),
                    (&self.new_rows.3, Type::BYTEA_ARRAY),
                ],
                n,
                format!("{n} new tile and mid rows (some exist already)"),
            )));
        }
        for r in &self.rows {
            let what = format!(
                "{} row {}/{}",
                if r.mid { "mid" } else { "tile" },
                r.level,
                r.index
            );
            work.push(Box::pin(exec(
                client,
                checked!(
                    "UPDATE quire_tiles SET hashes = hashes || $5 WHERE log = $1 AND mid = $2 AND level = $3 AND idx = $4 AND length(hashes) = $6",
                    7,
                    8
                ),
                vec![
                    (&self.log, Type::INT8),
                    (&r.mid, Type::BOOL),
                    (&r.level, Type::INT2),
                    (&r.index, Type::INT8),
                    (&r.bytes, Type::BYTEA),
                    (&r.at, Type::INT4),
                ],
                1,
                format!("{what} (not {} hashes long)", r.at / 32),
            )));
        }
        if let Some(leaf) = leaf {
            leaf.statements(client, &self.log, work);
        }
        if !self.meta.0.is_empty() {
            work.push(Box::pin(exec(
                client,
                checked!(
                    "INSERT INTO quire_meta (log, key, value) SELECT $1, * FROM unnest($2::text[], $3::bytea[]) ON CONFLICT (log, key) DO UPDATE SET value = EXCLUDED.value",
                    4,
                    5
                ),
                vec![(&self.log, Type::INT8), (&self.meta.0, Type::TEXT_ARRAY), (&self.meta.1, Type::BYTEA_ARRAY)],
                self.meta.0.len() as u64,
                "metadata".into(),
            )));
        }
        self.events.statements(client, &self.log, work);
        if !self.checkpoints.0.is_empty() {
            let n = self.checkpoints.0.len() as u64;
            work.push(Box::pin(exec(
                client,
                checked!(
                    "INSERT INTO quire_checkpoints (log, size, signed_at_ms, note) SELECT $1, * FROM unnest($2::int8[], $3::int8[], $4::bytea[])",
                    5,
                    6
                ),
                vec![
                    (&self.log, Type::INT8),
                    (&self.checkpoints.0, Type::INT8_ARRAY),
                    (&self.checkpoints.1, Type::INT8_ARRAY),
                    (&self.checkpoints.2, Type::BYTEA_ARRAY),
                ],
                n,
                "checkpoints".into(),
            )));
        }
        work.push(Box::pin(exec(
            client,
            checked!(
                "INSERT INTO quire_heads (log, size, root) VALUES ($1, $2, $3) ON CONFLICT (log) DO UPDATE SET size = EXCLUDED.size, root = EXCLUDED.root",
                4,
                5
            ),
            vec![
                (&self.log, Type::INT8),
                (&self.head_row.0, Type::INT8),
                (&self.head_row.1, Type::BYTEA),
            ],
            1,
            "the head".into(),
        )));
    }
}
