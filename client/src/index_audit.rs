//! Auditing a log's event indexes from its envelopes alone (`quire audit
//! index`, `docs/EVENTS.md` §5 and §11): what searches trust the log to
//! have written honestly, recomputed. Each envelope's links must name the
//! previous event of the same value (and none for a value's first), log
//! time must never go backwards, and each map head must commit to the
//! root of the key map of exactly the events before its size.
//!
//! Pure: envelopes in, in index order (from a dump checked against a
//! signed checkpoint: [`crate::audit::audit_entries_with`]), a verdict out.

use std::collections::HashMap;

use quire_core::event::{key, Envelope, KeyField, Links};
use quire_core::map::{head_of, KeyMap};
use quire_core::Hash;

/// Problems kept in full; beyond them only counted.
pub const MAX_PROBLEMS: usize = 100;

/// What the audit found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexVerdict {
    /// Events read.
    pub events: u64,
    /// Distinct keys (actor, action, resource, type values).
    pub keys: usize,
    /// Map heads whose roots were recomputed.
    pub heads: u64,
    /// What does not hold, the first [`MAX_PROBLEMS`] of them.
    pub problems: Vec<String>,
    /// How many problems in all.
    pub problem_count: u64,
}

/// The audit, fed one envelope at a time.
#[derive(Debug, Default)]
pub struct IndexAudit {
    newest: HashMap<Hash, u64>,
    /// The key map of events `[0, flushed)`.
    map: KeyMap,
    flushed: u64,
    /// Key updates of events from `flushed` on, in index order.
    pending: Vec<(Hash, u64)>,
    last_time: u64,
    verdict: IndexVerdict,
}

impl IndexAudit {
    /// A new audit.
    pub fn new() -> Self {
        IndexAudit::default()
    }

    fn problem(&mut self, text: String) {
        self.verdict.problem_count += 1;
        if self.verdict.problems.len() < MAX_PROBLEMS {
            self.verdict.problems.push(text);
        }
    }

    /// Takes event `index`'s entry (the next in order).
    pub fn add(&mut self, index: u64, entry: &[u8]) {
        if index != self.verdict.events {
            self.problem(format!(
                "event {index} follows event {}",
                self.verdict.events.wrapping_sub(1)
            ));
            return;
        }
        self.verdict.events += 1;
        let env = match Envelope::decode(entry) {
            Ok(e) => e,
            Err(e) => {
                self.problem(format!(
                    "event {index} is not a quire-event/v1 envelope: {e}"
                ));
                return;
            }
        };
        if env.log_time_ms < self.last_time {
            self.problem(format!(
                "event {index} was logged at {} ms, before the event ahead of it ({} ms)",
                env.log_time_ms, self.last_time
            ));
        }
        self.last_time = self.last_time.max(env.log_time_ms);
        // Heads commit to events before them: checked before this one's
        // own keys count.
        if let Some((size, root)) = head_of(&env) {
            self.head(index, size, root);
        }
        let mut want = Links::default();
        for f in KeyField::ALL {
            if let Some(v) = env.event.value(f) {
                let k = key(f, v);
                if let Some(p) = self.newest.insert(k, index) {
                    want.0.insert(f, p);
                }
                self.pending.push((k, index));
            }
        }
        if env.prev != want {
            self.problem(format!(
                "event {index} links to {:?}; the events before it give {:?}",
                env.prev.0, want.0
            ));
        }
    }

    fn head(&mut self, index: u64, size: u64, root: Hash) {
        if size < self.flushed {
            self.problem(format!(
                "map head {index} commits to the first {size} events, fewer than the head before it ({})",
                self.flushed
            ));
            return;
        }
        let split = self.pending.partition_point(|(_, i)| *i < size);
        let rest = self.pending.split_off(split);
        self.map.update(std::mem::replace(&mut self.pending, rest));
        self.flushed = size;
        self.verdict.heads += 1;
        if self.map.root() != root {
            self.problem(format!(
                "map head {index} commits to root {root} for the first {size} events; their keys give {}",
                self.map.root()
            ));
        }
    }

    /// The verdict, once every event is in.
    pub fn finish(mut self) -> IndexVerdict {
        self.verdict.keys = self.newest.len();
        self.verdict
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use quire_core::event::{Event, Outcome};

    use super::*;

    /// An honest log's envelopes: events of three actors, a map head
    /// after every fourth, log time rising.
    fn honest(n: u64) -> Vec<Envelope> {
        let mut newest: HashMap<Hash, u64> = HashMap::new();
        let mut map = KeyMap::new();
        let mut out: Vec<Envelope> = Vec::new();
        for i in 0..n {
            let event = if i % 5 == 4 {
                let mut e = Event::new("quire.map", "server", "map");
                e.outcome = Outcome::Success;
                e.attributes.insert("size".into(), i.to_string());
                e.attributes.insert("root".into(), map.root().to_hex());
                e
            } else {
                Event::new("test.event", &format!("user{}", i % 3), "act")
            };
            let mut prev = Links::default();
            for f in KeyField::ALL {
                if let Some(v) = event.value(f) {
                    let k = key(f, v);
                    if let Some(p) = newest.insert(k, i) {
                        prev.0.insert(f, p);
                    }
                    map.update(vec![(k, i)]);
                }
            }
            let submitter = if i % 5 == 4 { "server" } else { "anonymous" };
            out.push(Envelope {
                log_time_ms: 1000 + i / 3,
                submitter: submitter.into(),
                tenant: None,
                event,
                payload: None,
                prev,
            });
        }
        out
    }

    fn audit(envs: &[Envelope]) -> IndexVerdict {
        let mut a = IndexAudit::new();
        for (i, e) in envs.iter().enumerate() {
            a.add(i as u64, &e.encode().unwrap());
        }
        a.finish()
    }

    /// The verdict names one problem, starting so.
    fn one_problem(v: &IndexVerdict, start: &str) {
        assert_eq!(v.problem_count, 1, "{:?}", v.problems);
        assert!(v.problems[0].starts_with(start), "{:?}", v.problems);
    }

    #[test]
    fn an_honest_log_passes_and_each_lie_is_named() {
        let envs = honest(40);
        let v = audit(&envs);
        assert_eq!(v.problems, Vec::<String>::new());
        assert_eq!((v.events, v.heads), (40, 8));
        // A link to the wrong event.
        let mut bad = envs.clone();
        bad[10].prev.0.insert(KeyField::Actor, 4);
        one_problem(&audit(&bad), "event 10 links to");
        // A link dropped: the chain would skip an event.
        let mut bad = envs.clone();
        bad[12].prev.0.remove(&KeyField::Action);
        assert!(audit(&bad).problems[0].starts_with("event 12 links to"));
        // Log time going back.
        let mut bad = envs.clone();
        bad[20].log_time_ms = 0;
        assert!(audit(&bad).problems[0].contains("before the event ahead of it"));
        // A head whose root is not the map of the events before it.
        let mut bad = envs.clone();
        bad[14]
            .event
            .attributes
            .insert("root".into(), Hash([9; 32]).to_hex());
        one_problem(&audit(&bad), "map head 14 commits to root");
        // A head that claims a size its root is not of.
        let mut claims_more = envs.clone();
        claims_more[9]
            .event
            .attributes
            .insert("size".into(), "8".into());
        assert!(audit(&claims_more).problems[0].starts_with("map head 9 commits to root"));
    }
}
