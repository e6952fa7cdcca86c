//! A PostgreSQL database altered beside the servers: a stored value
//! longer than any Quire writes is refused as corrupt, naming the value and
//! its limit, never read whole (`server/src/store/postgres/bounded.rs`).
//! The PostgreSQL server is real, started by `scripts/postgres`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use quire_server::store::postgres::{Create, PgOptions, PgStore};
use quire_server::store::{Storage, StorageReader, StoreError};
use quire_tests::commits::{entries, Writer};

/// A value altered beside the server to be longer than any Quire writes
/// (a checkpoint note, an entry, metadata, kept cosignatures, a lease's
/// address, an origin) is refused
/// as corrupt, naming the value and its limit, and values within their
/// limits still read. (The statements select at most a limit and a byte,
/// so PostgreSQL cuts such a value before sending it.)
#[test]
fn postgres_refuses_stored_values_over_their_limits() {
    let pg = quire_tests::postgres::shared();
    let origin = quire_tests::postgres::unique("oversized.example/log");
    let store = quire_tests::postgres::store(&origin, Create::Yes).unwrap();
    // Three commits: entries 0..3 in one row, entry 3 alone, 4..10 in one.
    let mut w = Writer::new();
    for (from, count) in [(0, 3), (3, 1), (4, 6)] {
        let (c, next) = w.commit(&entries(from, count), true);
        store.commit(&c).unwrap();
        w = next;
    }
    store
        .keep_cosignatures(10, b"\xe2\x80\x94 witness sig\n")
        .unwrap();
    let sql = |q: &str| {
        quire_tests::postgres::psql(
            &pg.url,
            &q.replace(
                "LOG",
                &format!("(SELECT id FROM quire_logs WHERE origin = '{origin}')"),
            ),
        )
        .unwrap()
    };
    let refused = |e: StoreError, what: &str, limit: usize| {
        assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
        let want = format!("{what} is over {limit} bytes");
        assert!(e.to_string().contains(&want), "{e} (wanted {want:?})");
    };
    let big = "repeat('x', 300000)::bytea";

    // The latest checkpoint's note: the view that reads it does not open.
    sql(&format!(
        "UPDATE quire_checkpoints SET note = note || {big} WHERE log = LOG"
    ));
    let e = store.reader().err().unwrap();
    refused(e, "the stored note of the checkpoint of size 10", 64 * 1024);
    sql("UPDATE quire_checkpoints SET note = substring(note FROM 1 FOR length(note) - 300000) WHERE log = LOG");
    let r = store.reader().unwrap();
    assert_eq!(r.entries(0, 10).unwrap(), entries(0, 10));

    // An entry, metadata, kept cosignatures.
    sql(&format!(
        "UPDATE quire_entries SET data = {big} WHERE log = LOG AND idx = 3"
    ));
    refused(r.entries(0, 10).unwrap_err(), "stored entry 3", 65535);
    // A row of several entries is bounded as a bundle record.
    sql("UPDATE quire_entries SET data = data || repeat('x', 19000000)::bytea WHERE log = LOG AND idx = 4");
    refused(
        r.entries(4, 10).unwrap_err(),
        "stored entries 4..10",
        quire_server::store::bundle::MAX_RECORD_BYTES,
    );
    sql("UPDATE quire_entries SET data = substring(data FROM 1 FOR length(data) - 19000000) WHERE log = LOG AND idx = 4");
    sql(&format!(
        "INSERT INTO quire_meta (log, key, value) VALUES (LOG, 'lifecycle', {big})"
    ));
    refused(
        r.meta("lifecycle").unwrap_err(),
        "stored metadata \"lifecycle\"",
        64 * 1024,
    );
    sql(&format!(
        "UPDATE quire_cosignatures SET lines = {big} WHERE log = LOG"
    ));
    refused(
        r.latest_cosignatures().unwrap_err(),
        "the kept cosignatures of size 10",
        64 * 1024,
    );
    // What is within its limit still reads.
    assert_eq!(r.entries(4, 10).unwrap(), entries(4, 6));

    // A lease's holder and address: none longer is taken, and one altered
    // to be longer is refused when read.
    let long = "h".repeat(4097);
    let e = store
        .acquire(&long, "http://a", std::time::Duration::from_secs(60))
        .unwrap_err();
    assert!(e.to_string().contains("at most 4096 bytes"), "{e}");
    store
        .acquire("a", "http://a", std::time::Duration::from_secs(60))
        .unwrap()
        .unwrap();
    assert_eq!(store.holder().unwrap().unwrap().address, "http://a");
    sql("UPDATE quire_leases SET address = repeat('x', 300000) WHERE log = LOG");
    refused(
        store.holder().unwrap_err(),
        "the stored lease's address",
        4096,
    );

    // The list of a database's logs, in a database of its own (other
    // tests list the shared one's).
    let db = pg.create_database("oversized").unwrap();
    let opts = PgOptions::new(pg.url_of(&db));
    PgStore::open(&opts, "origin.example/log", Create::Yes).unwrap();
    assert_eq!(PgStore::origins(&opts).unwrap(), ["origin.example/log"]);
    pg.psql(&db, "UPDATE quire_logs SET origin = repeat('o', 70000)")
        .unwrap();
    refused(
        PgStore::origins(&opts).unwrap_err(),
        "a stored origin",
        64 * 1024,
    );
}
