//! C2SP `tlog-checkpoint` text: the body of a signed note that names a log,
//! a tree size and its root.
//!
//! ```text
//! <origin>\n
//! <decimal size, no leading zeros>\n
//! <base64 root hash>\n
//! [<extension line>\n]...
//! ```

use std::fmt::Write as _;

use crate::hash::Hash;

/// Largest checkpoint body accepted, checked before any parsing.
pub const MAX_CHECKPOINT_BYTES: usize = 8 * 1024;
/// Most extension lines accepted.
pub const MAX_EXTENSION_LINES: usize = 32;

/// A checkpoint body: the log's origin, a tree size and its root.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
    extensions: Vec<String>,
}

/// A checkpoint body that is not valid C2SP `tlog-checkpoint` text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Over the size limit; nothing was parsed.
    #[error("checkpoint is {len} bytes; the limit is {MAX_CHECKPOINT_BYTES}")]
    TooLarge {
        /// Bytes given.
        len: usize,
    },
    /// Not UTF-8, or holds control characters other than newline.
    #[error("checkpoint must be UTF-8 text without control characters other than newline")]
    NotText,
    /// The last line lacks its newline.
    #[error("checkpoint must end with a newline")]
    NoFinalNewline,
    /// Fewer than three lines.
    #[error("checkpoint needs origin, size and root lines; got {lines} lines")]
    TooFewLines {
        /// Lines found.
        lines: usize,
    },
    /// Empty origin line.
    #[error("checkpoint origin line is empty")]
    EmptyOrigin,
    /// A tree size above [`crate::MAX_TREE_SIZE`], the largest tree any
    /// proof can be computed or verified for.
    #[error("checkpoint size {0} exceeds the limit of 2^63 - 1")]
    SizeTooLarge(u64),
    /// Size line not a canonical decimal u64.
    #[error("checkpoint size line {0:?} is not a decimal number without leading zeros below 2^64")]
    BadSize(String),
    /// Root line not canonical base64 of 32 bytes.
    #[error("checkpoint root line {0:?} is not the base64 of a 32-byte hash")]
    BadRoot(String),
    /// An empty extension line (a blank line ends a note's text).
    #[error("checkpoint extension line {line} is empty")]
    EmptyExtension {
        /// 1-based line number.
        line: usize,
    },
    /// Too many extension lines.
    #[error("checkpoint has {count} extension lines; the limit is {MAX_EXTENSION_LINES}")]
    TooManyExtensions {
        /// Lines found.
        count: usize,
    },
}

/// Whether a string is free of control characters (newline excluded).
pub(crate) fn is_note_text(s: &str) -> bool {
    !s.chars().any(|c| c < ' ' && c != '\n')
}

impl Checkpoint {
    /// A checkpoint with no extension lines.
    ///
    /// # Errors
    /// [`CheckpointError::EmptyOrigin`] or [`CheckpointError::NotText`] when
    /// the origin cannot be an origin line.
    pub fn new(origin: &str, size: u64, root: Hash) -> Result<Self, CheckpointError> {
        Self::with_extensions(origin, size, root, Vec::new())
    }

    /// A checkpoint with extension lines.
    ///
    /// # Errors
    /// As [`Checkpoint::parse`] would reject the resulting text.
    pub fn with_extensions(
        origin: &str,
        size: u64,
        root: Hash,
        extensions: Vec<String>,
    ) -> Result<Self, CheckpointError> {
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        if size > crate::MAX_TREE_SIZE {
            return Err(CheckpointError::SizeTooLarge(size));
        }
        if origin.contains('\n') || !is_note_text(origin) {
            return Err(CheckpointError::NotText);
        }
        if extensions.len() > MAX_EXTENSION_LINES {
            return Err(CheckpointError::TooManyExtensions {
                count: extensions.len(),
            });
        }
        for (i, e) in extensions.iter().enumerate() {
            if e.is_empty() {
                return Err(CheckpointError::EmptyExtension { line: i + 4 });
            }
            if e.contains('\n') || !is_note_text(e) {
                return Err(CheckpointError::NotText);
            }
        }
        let cp = Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        };
        let len = cp.to_text().len();
        if len > MAX_CHECKPOINT_BYTES {
            return Err(CheckpointError::TooLarge { len });
        }
        Ok(cp)
    }

    /// Parses checkpoint text (a note's text, ending in newline).
    ///
    /// # Errors
    /// [`CheckpointError`] naming the first problem found.
    pub fn parse(text: &[u8]) -> Result<Self, CheckpointError> {
        if text.len() > MAX_CHECKPOINT_BYTES {
            return Err(CheckpointError::TooLarge { len: text.len() });
        }
        let text = std::str::from_utf8(text).map_err(|_| CheckpointError::NotText)?;
        if !is_note_text(text) {
            return Err(CheckpointError::NotText);
        }
        let Some(body) = text.strip_suffix('\n') else {
            return Err(CheckpointError::NoFinalNewline);
        };
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.len() < 3 {
            return Err(CheckpointError::TooFewLines { lines: lines.len() });
        }
        let origin = lines[0];
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        let size = parse_size(lines[1])?;
        let root =
            Hash::from_base64(lines[2]).map_err(|_| CheckpointError::BadRoot(lines[2].into()))?;
        let ext = &lines[3..];
        if ext.len() > MAX_EXTENSION_LINES {
            return Err(CheckpointError::TooManyExtensions { count: ext.len() });
        }
        if let Some(i) = ext.iter().position(|l| l.is_empty()) {
            return Err(CheckpointError::EmptyExtension { line: i + 4 });
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions: ext.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    /// The checkpoint text, each line ending in a newline.
    pub fn to_text(&self) -> String {
        let mut s = String::with_capacity(self.origin.len() + 70);
        let _ = write!(
            s,
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            self.root.to_base64()
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// The origin line: the log's name.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The tree size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root hash.
    pub fn root(&self) -> &Hash {
        &self.root
    }

    /// Extension lines, without newlines.
    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }
}

fn parse_size(line: &str) -> Result<u64, CheckpointError> {
    let bad = || CheckpointError::BadSize(line.chars().take(40).collect());
    let canonical = !line.is_empty()
        && line.bytes().all(|b| b.is_ascii_digit())
        && (line == "0" || !line.starts_with('0'));
    if !canonical {
        return Err(bad());
    }
    let size = line.parse::<u64>().map_err(|_| bad())?;
    if size > crate::MAX_TREE_SIZE {
        return Err(CheckpointError::SizeTooLarge(size));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    #[test]
    fn round_trip_with_extensions() {
        let cp = Checkpoint::with_extensions(
            "audit.example.com/prod/2026",
            12345,
            leaf_hash(b"x"),
            vec!["ext one".into()],
        )
        .unwrap();
        let text = cp.to_text();
        assert_eq!(Checkpoint::parse(text.as_bytes()), Ok(cp));
    }

    #[test]
    fn rejects_bad_sizes() {
        let root = leaf_hash(b"x").to_base64();
        for size in [
            "",
            "01",
            "-1",
            "+1",
            "1 ",
            "18446744073709551616",
            "0x10",
            "１",
        ] {
            let text = format!("o\n{size}\n{root}\n");
            assert!(
                matches!(
                    Checkpoint::parse(text.as_bytes()),
                    Err(CheckpointError::BadSize(_))
                ),
                "{size:?}"
            );
        }
        let text = format!("o\n0\n{root}\n");
        assert_eq!(Checkpoint::parse(text.as_bytes()).unwrap().size(), 0);
        let max = crate::MAX_TREE_SIZE;
        let text = format!("o\n{max}\n{root}\n");
        assert_eq!(Checkpoint::parse(text.as_bytes()).unwrap().size(), max);
        // Sizes no proof can serve: 2^63 and 2^64 - 1.
        for size in [max + 1, u64::MAX] {
            let text = format!("o\n{size}\n{root}\n");
            assert_eq!(
                Checkpoint::parse(text.as_bytes()),
                Err(CheckpointError::SizeTooLarge(size))
            );
            assert_eq!(
                Checkpoint::new("o", size, leaf_hash(b"x")),
                Err(CheckpointError::SizeTooLarge(size))
            );
        }
    }

    #[test]
    fn rejects_malformed() {
        let root = leaf_hash(b"x").to_base64();
        let cases: Vec<(String, CheckpointError)> = vec![
            (format!("o\n1\n{root}"), CheckpointError::NoFinalNewline),
            ("o\n1\n".into(), CheckpointError::TooFewLines { lines: 2 }),
            (format!("\n1\n{root}\n"), CheckpointError::EmptyOrigin),
            (
                format!("o\n1\n{root}\n\n"),
                CheckpointError::EmptyExtension { line: 4 },
            ),
            (format!("o\t\n1\n{root}\n"), CheckpointError::NotText),
            (
                "o\n1\nAAAA\n".into(),
                CheckpointError::BadRoot("AAAA".into()),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(Checkpoint::parse(text.as_bytes()), Err(want), "{text:?}");
        }
        let big = vec![b'a'; MAX_CHECKPOINT_BYTES + 1];
        assert_eq!(
            Checkpoint::parse(&big),
            Err(CheckpointError::TooLarge {
                len: MAX_CHECKPOINT_BYTES + 1
            })
        );
        assert_eq!(
            Checkpoint::parse(&[0xff, b'\n']),
            Err(CheckpointError::NotText)
        );
    }
}
