//! A commit's statements, each checked by PostgreSQL for the rows it wrote.
//!
//! A commit's writes are pipelined with its `COMMIT` in one round trip, so
//! no check of the client's may come between them: a check the client made
//! on an answer would come after the transaction committed. Each statement
//! instead reports its rows to `quire_expect` (schema migration 7), whose
//! error (SQLSTATE `QU001`, [`super::conn::engine`] makes it
//! [`StoreError::Corrupt`]) aborts the transaction, and PostgreSQL answers
//! the `COMMIT` after it with a rollback.
//!
//! A write that fails before it is sent never reaches PostgreSQL, so
//! nothing aborts: [`with_commit`] sends the `COMMIT` only once every
//! write was sent.
//!
//! A statement's SQL is its write made by [`checked!`]: in a `WITH w AS
//! (… RETURNING 1)` and `SELECT quire_expect(count(*), $k, $k+1) FROM w`,
//! where `$k` and `$k+1` are the two parameters after its own, which
//! [`exec`] passes: the rows expected and what they are, for the error's
//! message.

use tokio_postgres::types::{ToSql, Type};

/// A commit's write as PostgreSQL checks it: `$write` (a statement
/// without `RETURNING`) reporting the rows it wrote to `quire_expect`,
/// with the rows expected and what they are as parameters `$want` and
/// `$what`, the two after the write's own ([`exec`] passes them).
macro_rules! checked {
    ($write:literal, $want:literal, $what:literal) => {
        concat!(
            "WITH w AS (",
            $write,
            " RETURNING 1) SELECT quire_expect(count(*), $",
            $want,
            ", $",
            $what,
            ") FROM w"
        )
    };
}
pub(super) use checked;

use super::conn::int;
use super::session::{Param, Session};
use crate::store::StoreError;

/// One statement that must write `want` rows, `what` naming them.
///
/// # Errors
/// [`StoreError::Corrupt`] when it wrote another number (raised by
/// PostgreSQL, so the transaction is aborted), or what PostgreSQL answers.
pub(super) async fn exec(
    client: &Session,
    sql: &'static str,
    params: Vec<Param<'_>>,
    want: u64,
    what: String,
) -> Result<(), StoreError> {
    debug_assert!(
        sql.ends_with(&format!(
            "${}, ${}) FROM w",
            params.len() + 1,
            params.len() + 2
        )),
        "{sql} takes the rows expected and what they are after its {} parameters",
        params.len()
    );
    let want = int(want)?;
    let mut all: Vec<Param<'_>> = params;
    all.push((&want, Type::INT8));
    all.push((&what, Type::TEXT));
    client.exec(sql, &all).await?;
    Ok(())
}

/// [`exec`] with three `BIGINT` parameters it owns.
///
/// # Errors
/// As [`exec`].
pub(super) async fn exec_owned(
    client: &Session,
    sql: &'static str,
    values: [i64; 3],
    want: u64,
    what: String,
) -> Result<(), StoreError> {
    let params: Vec<Param<'_>> = values
        .iter()
        .map(|v| (v as &(dyn ToSql + Sync), Type::INT8))
        .collect();
    exec(client, sql, params, want, what).await
}

/// A commit's writes, each sent on its first poll ([`Session`]: a call
/// sends its statement when first polled).
pub(super) type Writes<'a> = Vec<super::write::Work<'a>>;

/// Runs `writes` pipelined with the `COMMIT` that `commit` sends behind
/// them, and returns what each write answered, in order, and what the
/// `COMMIT` answered, or `None` when it was not sent.
///
/// PostgreSQL aborts the transaction on any write it refuses, but a write
/// that fails before it is sent (a parameter that cannot be encoded, a
/// connection already closed) never reaches it: a `COMMIT` behind it would
/// commit the transaction without that write. So every write is polled
/// once first (which sends it or fails it), and `COMMIT` is sent only
/// when none failed then; otherwise the transaction is left open for the
/// caller to roll back.
pub(super) async fn with_commit<T, C, F>(
    writes: Writes<'_>,
    commit: C,
) -> (Vec<Result<(), StoreError>>, Option<T>)
where
    C: FnOnce() -> F,
    F: std::future::Future<Output = T>,
{
    use std::future::Future as _;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::Poll;

    let unsent = AtomicBool::new(false);
    let writes: Vec<FirstPoll<'_, _>> = writes
        .into_iter()
        .map(|fut| FirstPoll {
            fut,
            polled: false,
            unsent: &unsent,
        })
        .collect();
    let mut all = std::pin::pin!(futures_util::future::join_all(writes));
    // One poll of each: sent, or failed before it was.
    let first = std::future::poll_fn(|cx| Poll::Ready(all.as_mut().poll(cx))).await;
    if unsent.load(Ordering::Relaxed) {
        let answered = match first {
            Poll::Ready(answered) => answered,
            Poll::Pending => all.await,
        };
        return (answered, None);
    }
    match first {
        Poll::Ready(answered) => (answered, Some(commit().await)),
        Poll::Pending => {
            let (answered, committed) = futures_util::future::join(all, commit()).await;
            (answered, Some(committed))
        }
    }
}

/// A write that notes when it failed on its first poll (before it was
/// sent).
struct FirstPoll<'u, F> {
    fut: F,
    polled: bool,
    unsent: &'u std::sync::atomic::AtomicBool,
}

impl<F> std::future::Future for FirstPoll<'_, F>
where
    F: std::future::Future<Output = Result<(), StoreError>> + Unpin,
{
    type Output = Result<(), StoreError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let first = !self.polled;
        self.polled = true;
        let answer = std::pin::Pin::new(&mut self.fut).poll(cx);
        if first && matches!(answer, std::task::Poll::Ready(Err(_))) {
            self.unsent
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A write that is "sent" on its first poll and answers `answer` on
    /// its second, noting both in `log`.
    fn write(
        log: &Arc<Mutex<Vec<String>>>,
        name: &'static str,
        answer: Result<(), &'static str>,
    ) -> super::super::write::Work<'static> {
        let log = Arc::clone(log);
        Box::pin(async move {
            log.lock().unwrap().push(format!("{name} sent"));
            tokio::task::yield_now().await;
            log.lock().unwrap().push(format!("{name} answered"));
            answer.map_err(StoreError::engine)
        })
    }

    /// A write that fails before it is sent.
    fn unsendable(
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send>> {
        Box::pin(async { Err(StoreError::engine("a parameter that cannot be encoded")) })
    }

    fn commit(log: &Arc<Mutex<Vec<String>>>) -> impl FnOnce() -> std::future::Ready<&'static str> {
        let log = Arc::clone(log);
        move || {
            log.lock().unwrap().push("COMMIT sent".into());
            std::future::ready("committed")
        }
    }

    #[test]
    fn a_checked_write_reports_its_rows_in_the_two_parameters_after_its_own() {
        assert_eq!(
            checked!("DELETE FROM t WHERE a = $1", 2, 3),
            "WITH w AS (DELETE FROM t WHERE a = $1 RETURNING 1) SELECT quire_expect(count(*), $2, $3) FROM w"
        );
    }

    #[tokio::test]
    async fn commit_is_sent_behind_every_write_and_never_after_one_that_was_not_sent() {
        // Every write sent: COMMIT goes behind them all, and a write the
        // server refuses is answered as such beside it.
        let log = Arc::new(Mutex::new(Vec::new()));
        let writes: Writes<'_> = vec![
            write(&log, "a", Ok(())),
            write(&log, "b", Err("refused by the server")),
        ];
        let (answered, committed) = with_commit(writes, commit(&log)).await;
        assert_eq!(committed, Some("committed"));
        assert!(answered[0].is_ok());
        assert!(answered[1]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("refused by the server"));
        let order = log.lock().unwrap().clone();
        let at = |e: &str| order.iter().position(|x| x == e).unwrap();
        assert!(
            at("a sent") < at("COMMIT sent") && at("b sent") < at("COMMIT sent"),
            "{order:?}"
        );

        // One write failed before it was sent: no COMMIT, the others
        // still answered.
        let log = Arc::new(Mutex::new(Vec::new()));
        let writes: Writes<'_> = vec![
            write(&log, "a", Ok(())),
            unsendable(),
            write(&log, "c", Ok(())),
        ];
        let (answered, committed) = with_commit(writes, commit(&log)).await;
        assert_eq!(committed, None);
        assert!(answered[1].is_err());
        assert!(answered[0].is_ok() && answered[2].is_ok());
        let order = log.lock().unwrap().clone();
        assert!(!order.iter().any(|e| e == "COMMIT sent"), "{order:?}");
        assert!(order.iter().any(|e| e == "c answered"), "{order:?}");
    }
}
