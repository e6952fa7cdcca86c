//! Whether a log may sign: the gate its sequencer passes before each
//! signature. Start-up checks hold it (the sequencer waits, bounded, and
//! writers queue); proof that signing would fork the log stops it for good.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Whether the log may sign new checkpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signing {
    /// It may.
    Open,
    /// Not yet: a start-up check is under way.
    Held(String),
    /// Never again until an operator acts: the reason says what was found.
    Stopped(String),
}

/// The gate: a state and a condition variable for the sequencer to wait on.
#[derive(Debug)]
pub struct SigningGate {
    state: Mutex<Signing>,
    changed: Condvar,
}

impl Default for SigningGate {
    fn default() -> Self {
        SigningGate {
            state: Mutex::new(Signing::Open),
            changed: Condvar::new(),
        }
    }
}

impl SigningGate {
    /// The state now.
    pub fn get(&self) -> Signing {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Holds signing, unless it was stopped.
    pub fn hold(&self, why: &str) {
        self.update(
            |s| !matches!(s, Signing::Stopped(_)),
            Signing::Held(why.to_owned()),
        );
    }

    /// Opens a held gate; a stopped one stays stopped.
    pub fn open(&self) {
        self.update(|s| matches!(s, Signing::Held(_)), Signing::Open);
    }

    /// Stops signing for good; returns whether this call stopped it.
    pub fn stop(&self, why: &str) -> bool {
        self.update(
            |s| !matches!(s, Signing::Stopped(_)),
            Signing::Stopped(why.to_owned()),
        )
    }

    fn update(&self, when: impl FnOnce(&Signing) -> bool, to: Signing) -> bool {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !when(&s) {
            return false;
        }
        *s = to;
        drop(s);
        self.changed.notify_all();
        true
    }

    /// Waits while the gate is held, at most `limit`; returns the state
    /// then (still [`Signing::Held`] when the limit passed).
    pub fn wait_while_held(&self, limit: Duration) -> Signing {
        let deadline = Instant::now() + limit;
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while let Signing::Held(_) = &*s {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            s = self
                .changed
                .wait_timeout(s, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        s.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopped_is_final_and_held_waits_for_open() {
        let g = std::sync::Arc::new(SigningGate::default());
        g.hold("checking");
        assert!(matches!(
            g.wait_while_held(Duration::from_millis(1)),
            Signing::Held(_)
        ));
        let g2 = std::sync::Arc::clone(&g);
        let t = std::thread::spawn(move || g2.wait_while_held(Duration::from_secs(60)));
        g.open();
        assert_eq!(t.join().ok(), Some(Signing::Open));
        assert!(g.stop("witness ahead"));
        assert!(!g.stop("again"));
        g.hold("x");
        g.open();
        assert_eq!(g.get(), Signing::Stopped("witness ahead".into()));
    }
}
