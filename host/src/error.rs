//! Errors said once: an error and the causes under it, each layer that
//! repeats its source's text ("tcp connect error: tcp connect error") left
//! out.

use std::error::Error;
use std::fmt;

/// The causes under `e`, joined with ": ", each said once.
pub fn causes(e: &(dyn Error + 'static)) -> String {
    let mut out: Vec<String> = Vec::new();
    let top = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        let repeated = top.contains(&text) || out.iter().any(|o| o.contains(&text));
        if !repeated && !text.is_empty() {
            out.push(text);
        }
        cur = s.source();
    }
    out.join(": ")
}

/// Displays an error and its causes, each said once.
pub struct Report<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let rest = causes(self.0);
        if !rest.is_empty() {
            write!(f, ": {rest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Layer(String, #[source] Option<Box<dyn Error + Send + Sync>>);

    #[test]
    fn causes_are_said_once() {
        let io = std::io::Error::other("connection refused");
        let inner = Layer("tcp connect error".into(), Some(Box::new(io)));
        let twice = Layer("tcp connect error".into(), Some(Box::new(inner)));
        let top = Layer("connecting to the log".into(), Some(Box::new(twice)));
        assert_eq!(
            Report(&top).to_string(),
            "connecting to the log: tcp connect error: connection refused"
        );
        let alone = Layer("alone".into(), None);
        assert_eq!(Report(&alone).to_string(), "alone");
    }
}
