//! A store whose commits of entries wait at a gate the test opens, and the
//! next of which can be made to fail: faults and interleavings placed by
//! counting commits, not by time.

use std::sync::{Arc, Condvar, Mutex};

use quire_server::store::{Commit, Storage, StoreError};

/// `S`, its commits of entries gated; its clones share it.
pub struct Gated<S> {
    pub inner: Arc<S>,
    gate: Arc<(Mutex<bool>, Condvar)>,
    /// The entries of each commit that reached the gate.
    entered: Arc<(Mutex<Vec<usize>>, Condvar)>,
    /// The failure of the next commit of entries, once past the gate.
    pub fail_next: Arc<Mutex<Option<StoreError>>>,
}

impl<S> Gated<S> {
    /// `inner`, the gate closed.
    pub fn new(inner: S) -> Self {
        Gated {
            inner: Arc::new(inner),
            gate: Arc::new((Mutex::new(false), Condvar::new())),
            entered: Arc::new((Mutex::new(Vec::new()), Condvar::new())),
            fail_next: Arc::new(Mutex::new(None)),
        }
    }

    /// Opens the gate, for good.
    pub fn open(&self) {
        let (open, cv) = &*self.gate;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }

    /// The entries of each commit that reached the gate, in order.
    pub fn entered(&self) -> Vec<usize> {
        self.entered.0.lock().unwrap().clone()
    }

    /// Blocks until `n` commits reached the gate.
    pub fn wait_entered(&self, n: usize) {
        let (m, cv) = &*self.entered;
        let mut e = m.lock().unwrap();
        while e.len() < n {
            e = cv.wait(e).unwrap();
        }
    }
}

impl<S> Clone for Gated<S> {
    fn clone(&self) -> Self {
        Gated {
            inner: Arc::clone(&self.inner),
            gate: Arc::clone(&self.gate),
            entered: Arc::clone(&self.entered),
            fail_next: Arc::clone(&self.fail_next),
        }
    }
}

impl<S: Storage> Storage for Gated<S> {
    type Reader = S::Reader;
    fn reader(&self) -> Result<Self::Reader, StoreError> {
        self.inner.reader()
    }
    fn checks_new_leaves(&self) -> bool {
        self.inner.checks_new_leaves()
    }
    fn commit(&self, c: &Commit) -> Result<(), StoreError> {
        self.pass(c)?;
        self.inner.commit(c)
    }
    fn commit_unsettled(&self, c: &Commit) -> Result<(), StoreError> {
        self.pass(c)?;
        self.inner.commit_unsettled(c)
    }
    fn settle(&self, size: u64) -> Result<(), StoreError> {
        self.inner.settle(size)
    }
    fn keep_cosignatures(&self, size: u64, lines: &[u8]) -> Result<(), StoreError> {
        self.inner.keep_cosignatures(size, lines)
    }
    fn replace_event_index(
        &self,
        keys: &[(quire_core::Hash, u64)],
        times: &[(u64, u64)],
    ) -> Result<(), StoreError> {
        self.inner.replace_event_index(keys, times)
    }
    fn drop_entries(&self, dropped: quire_server::lifecycle::Dropped) -> Result<(), StoreError> {
        self.inner.drop_entries(dropped)
    }
}

impl<S> Gated<S> {
    /// Where a commit of entries waits for the gate, and fails when told.
    fn pass(&self, c: &Commit) -> Result<(), StoreError> {
        if !c.entries.is_empty() {
            let (m, cv) = &*self.entered;
            m.lock().unwrap().push(c.entries.len());
            cv.notify_all();
            let (open, cv) = &*self.gate;
            let mut o = open.lock().unwrap();
            while !*o {
                o = cv.wait(o).unwrap();
            }
            drop(o);
            if let Some(e) = self.fail_next.lock().unwrap().take() {
                return Err(e);
            }
        }
        Ok(())
    }
}
