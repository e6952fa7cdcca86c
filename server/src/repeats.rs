//! One line for a failure that repeats: a loop that retries every few
//! milliseconds (following storage, renewing a lease) logs a failure when
//! it starts or changes, then at most once a minute with the count of
//! repeats, and once when it ends, instead of a line per round.

use std::time::{Duration, Instant};

/// How often a failure that goes on is logged again.
const AGAIN_AFTER: Duration = Duration::from_secs(60);

/// The failure going on, if any.
#[derive(Debug, Default)]
pub struct Repeats {
    current: Option<(String, Instant, u64)>,
}

impl Repeats {
    /// A round failed with `message`: `Some(repeats)` when it is to be
    /// logged (`repeats` of it since the last line), `None` to stay quiet.
    pub fn failed(&mut self, message: &str) -> Option<u64> {
        match &mut self.current {
            Some((m, at, n)) if m == message => {
                *n += 1;
                if at.elapsed() < AGAIN_AFTER {
                    return None;
                }
                let repeats = *n;
                *at = Instant::now();
                *n = 0;
                Some(repeats)
            }
            _ => {
                self.current = Some((message.to_owned(), Instant::now(), 0));
                Some(0)
            }
        }
    }

    /// A round succeeded: true when a failure had been going on.
    pub fn recovered(&mut self) -> bool {
        self.current.take().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::Repeats;

    #[test]
    fn a_repeated_failure_is_logged_once_until_it_changes_or_ends() {
        let mut r = Repeats::default();
        assert_eq!(r.failed("down"), Some(0));
        for _ in 0..100 {
            assert_eq!(r.failed("down"), None);
        }
        assert_eq!(r.failed("another"), Some(0));
        assert!(r.recovered());
        assert!(!r.recovered());
        assert_eq!(r.failed("down"), Some(0));
    }
}
