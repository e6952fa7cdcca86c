//! The persistent state of the leaf index: its runs, the merge in progress
//! and the runs whose blocks are still being deleted, in one small record
//! that each engine stores beside the log's head.

use crate::store::StoreError;

/// Largest encoded state accepted (checked before decoding).
pub(crate) const MAX_STATE_BYTES: usize = 64 * 1024;

/// One sorted run: the pairs of leaves `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) id: u64,
    pub(crate) start: u64,
    pub(crate) end: u64,
}

impl Run {
    pub(crate) fn len(&self) -> u64 {
        self.end - self.start
    }
}

/// Most runs one merge takes.
pub(crate) const MAX_FANOUT: usize = 16;

/// A merge of adjacent runs (two or more, oldest first) into `output`,
/// done a step at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Merge {
    pub(crate) inputs: Vec<Run>,
    pub(crate) output: u64,
    /// The last pair written to `output`.
    pub(crate) last: Option<(u64, u64)>,
}

/// The persistent state of the index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct IndexState {
    pub(crate) next_id: u64,
    /// Runs in index order; together they cover `[0, covered())`.
    pub(crate) runs: Vec<Run>,
    pub(crate) merge: Option<Merge>,
    /// Runs merged away whose blocks are still being deleted.
    pub(crate) garbage: Vec<u64>,
}

impl IndexState {
    /// Leaves `[0, covered())` are in runs.
    pub(crate) fn covered(&self) -> u64 {
        self.runs.last().map_or(0, |r| r.end)
    }

    /// Where `runs` stand as adjacent runs of the state, in order, if
    /// they all do.
    pub(crate) fn adjacent(&self, runs: &[Run]) -> Option<usize> {
        let first = runs.first()?;
        let pos = self.runs.iter().position(|r| r == first)?;
        (self.runs.get(pos..pos + runs.len()) == Some(runs)).then_some(pos)
    }

    /// Replaces `inputs`, adjacent runs at `pos`, with run `output`
    /// covering them; their ids go to the runs to delete.
    pub(crate) fn replace_merged(&mut self, pos: usize, inputs: &[Run], output: u64) {
        let (Some(first), Some(newest)) = (inputs.first(), inputs.last()) else {
            return;
        };
        let run = Run {
            id: output,
            start: first.start,
            end: newest.end,
        };
        self.runs.splice(pos..pos + inputs.len(), [run]);
        self.garbage.extend(inputs.iter().map(|r| r.id));
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![1u8];
        let mut put = |v: u64| out.extend_from_slice(&v.to_be_bytes());
        put(self.next_id);
        put(self.runs.len() as u64);
        for r in &self.runs {
            put(r.id);
            put(r.start);
            put(r.end);
        }
        match &self.merge {
            None => put(0),
            Some(m) => {
                // Flag 1: two inputs (the only merge of the first format);
                // flag 2: a count, then the inputs.
                if m.inputs.len() == 2 {
                    put(1);
                } else {
                    put(2);
                    put(m.inputs.len() as u64);
                }
                for r in &m.inputs {
                    put(r.id);
                    put(r.start);
                    put(r.end);
                }
                put(m.output);
                let (has, k, i) = m.last.map_or((0, 0, 0), |(k, i)| (1, k, i));
                put(has);
                put(k);
                put(i);
            }
        }
        put(self.garbage.len() as u64);
        for g in &self.garbage {
            put(*g);
        }
        out
    }

    /// # Errors
    /// [`StoreError::Corrupt`] for anything but a well-formed state.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let bad = |why: &str| StoreError::Corrupt(format!("leaf index state: {why}"));
        if bytes.len() > MAX_STATE_BYTES {
            return Err(bad(&format!(
                "{} bytes, over the {MAX_STATE_BYTES}-byte limit",
                bytes.len()
            )));
        }
        let Some((&1, mut rest)) = bytes.split_first() else {
            return Err(bad("unknown version"));
        };
        let mut get = || -> Result<u64, StoreError> {
            let (head, tail) = rest.split_at_checked(8).ok_or_else(|| bad("truncated"))?;
            rest = tail;
            let mut b = [0u8; 8];
            b.copy_from_slice(head);
            Ok(u64::from_be_bytes(b))
        };
        let run = |get: &mut dyn FnMut() -> Result<u64, StoreError>| -> Result<Run, StoreError> {
            Ok(Run {
                id: get()?,
                start: get()?,
                end: get()?,
            })
        };
        let next_id = get()?;
        let n = get()?;
        let mut runs = Vec::new();
        for _ in 0..n.min(MAX_STATE_BYTES as u64) {
            runs.push(run(&mut get)?);
        }
        let inputs = match get()? {
            0 => 0,
            1 => 2,
            2 => get()?,
            _ => return Err(bad("bad merge flag")),
        };
        let merge = if inputs == 0 {
            None
        } else {
            if !(2..=MAX_FANOUT as u64).contains(&inputs) {
                return Err(bad(&format!(
                    "a merge of {inputs} runs (2 to {MAX_FANOUT})"
                )));
            }
            let mut runs = Vec::new();
            for _ in 0..inputs {
                runs.push(run(&mut get)?);
            }
            let output = get()?;
            let has = get()?;
            let (k, i) = (get()?, get()?);
            Some(Merge {
                inputs: runs,
                output,
                last: (has == 1).then_some((k, i)),
            })
        };
        let g = get()?;
        let mut garbage = Vec::new();
        for _ in 0..g.min(MAX_STATE_BYTES as u64) {
            garbage.push(get()?);
        }
        if !rest.is_empty() {
            return Err(bad("trailing bytes"));
        }
        let state = IndexState {
            next_id,
            runs,
            merge,
            garbage,
        };
        let mut at = 0;
        for r in &state.runs {
            if r.start != at || r.end <= r.start || r.id >= state.next_id {
                return Err(bad("runs do not tile the leaves"));
            }
            at = r.end;
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_rejects_damage() {
        let run = |id, start, end| Run { id, start, end };
        let runs = vec![run(2, 0, 10), run(4, 10, 13)];
        let s = IndexState {
            next_id: 5,
            runs: runs.clone(),
            merge: Some(Merge {
                inputs: runs,
                output: 3,
                last: Some((7, 9)),
            }),
            garbage: vec![0, 1],
        };
        let bytes = s.encode();
        assert_eq!(IndexState::decode(&bytes).unwrap(), s);
        for cut in 0..bytes.len() {
            assert!(IndexState::decode(&bytes[..cut]).is_err(), "prefix {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(IndexState::decode(&longer).is_err());
        let mut gap = s.clone();
        gap.runs[1].start = 11;
        assert!(IndexState::decode(&gap.encode()).is_err());
        assert!(IndexState::decode(&vec![1u8; MAX_STATE_BYTES + 1]).is_err());
        // A merge of two keeps the first format's bytes (flag 1), read by
        // servers that know no other; a wider one has a flag of its own.
        assert_eq!(bytes[8 * 8 + 1..8 * 8 + 9], 1u64.to_be_bytes());
        let mut wide = s.clone();
        if let Some(m) = &mut wide.merge {
            m.inputs.push(run(6, 13, 20));
        }
        let wide_bytes = wide.encode();
        assert_eq!(IndexState::decode(&wide_bytes).unwrap(), wide);
        for cut in 0..wide_bytes.len() {
            assert!(
                IndexState::decode(&wide_bytes[..cut]).is_err(),
                "prefix {cut}"
            );
        }
        let mut too_wide = wide.clone();
        if let Some(m) = &mut too_wide.merge {
            m.inputs = vec![m.inputs[0]; MAX_FANOUT + 1];
        }
        assert!(IndexState::decode(&too_wide.encode()).is_err());
    }
}
