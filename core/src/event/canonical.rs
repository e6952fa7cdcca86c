//! The canonical JSON of event envelopes: RFC 8785 (JSON Canonicalization
//! Scheme) over the subset of JSON an envelope uses.
//!
//! The subset: objects whose member names are unique, strings, and
//! integers from 0 to 2^53 − 1 (numbers that IEEE 754 doubles, and so every
//! JSON implementation, hold exactly). No arrays, floats, booleans or
//! `null`. Over this subset RFC 8785 is:
//! - no whitespace;
//! - object members sorted by their names as UTF-16 code units (§3.2.3);
//! - strings as ECMAScript `JSON.stringify` writes them (§3.2.2.2): `"` and
//!   `\` escaped, U+0008, U+0009, U+000A, U+000C and U+000D as `\b \t \n
//!   \f \r`, every other code point below U+0020 as `\u00xx` (lowercase
//!   hex), everything else as its UTF-8 bytes;
//! - integers in decimal, no sign, no leading zeros (§3.2.2.3).
//!
//! [`decode`] takes only bytes that are already canonical: it parses, then
//! encodes again and compares, so that one envelope has exactly one byte
//! string (and one leaf hash).

use std::fmt::Write as _;

/// The largest integer an envelope holds: 2^53 − 1.
pub const MAX_INT: u64 = (1 << 53) - 1;

/// A value of the envelope's JSON subset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// A string.
    Str(String),
    /// An integer, at most [`MAX_INT`].
    Int(u64),
    /// An object: members in any order, names unique.
    Obj(Vec<(String, Value)>),
}

/// Why bytes are not a canonical value of the subset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// Not JSON.
    #[error("not JSON: {0}")]
    Syntax(String),
    /// JSON outside the subset.
    #[error("{0}")]
    Subset(String),
    /// JSON of the subset, but not in its canonical form.
    #[error(
        "not in canonical form (RFC 8785): members sorted by name, no whitespace, minimal escapes"
    )]
    NotCanonical,
}

/// The canonical bytes of `v`.
///
/// # Errors
/// [`CanonicalError::Subset`] for an integer above [`MAX_INT`] or an
/// object with two members of one name.
pub fn encode(v: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = String::new();
    write_value(&mut out, v)?;
    Ok(out.into_bytes())
}

fn write_value(out: &mut String, v: &Value) -> Result<(), CanonicalError> {
    match v {
        Value::Str(s) => write_str(out, s),
        Value::Int(n) => {
            if *n > MAX_INT {
                return Err(CanonicalError::Subset(format!(
                    "integer {n} is above 2^53 - 1"
                )));
            }
            let _ = write!(out, "{n}");
        }
        Value::Obj(members) => {
            let mut sorted: Vec<&(String, Value)> = members.iter().collect();
            sorted.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            if let Some(w) = sorted.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(CanonicalError::Subset(format!(
                    "member {:?} appears twice",
                    w[0].0
                )));
            }
            out.push('{');
            for (i, (name, value)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(out, name);
                out.push(':');
                write_value(out, value)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// Writes `s` as a JSON string as RFC 8785 writes it.
pub(super) fn write_str(out: &mut String, s: &str) {
    out.push('"');
    // Most strings need no escape: copied whole.
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The value of canonical bytes `b`. The caller bounds `b`'s length.
///
/// # Errors
/// [`CanonicalError`]: not JSON, outside the subset, or not canonical.
pub fn decode(b: &[u8]) -> Result<Value, CanonicalError> {
    let json: serde_json::Value =
        serde_json::from_slice(b).map_err(|e| CanonicalError::Syntax(e.to_string()))?;
    let v = from_json(&json, 0)?;
    if encode(&v)? != b {
        return Err(CanonicalError::NotCanonical);
    }
    Ok(v)
}

/// Objects nest at most this deep in the subset (an envelope uses 2).
const MAX_DEPTH: usize = 4;

/// `json` in the subset, in any form (for input that need not be
/// canonical, such as a submitter's file).
///
/// # Errors
/// [`CanonicalError::Subset`] naming what is outside it.
pub fn from_json(json: &serde_json::Value, depth: usize) -> Result<Value, CanonicalError> {
    use serde_json::Value as J;
    match json {
        J::String(s) => Ok(Value::Str(s.clone())),
        J::Number(n) => match n.as_u64() {
            Some(i) if i <= MAX_INT => Ok(Value::Int(i)),
            _ => Err(CanonicalError::Subset(format!(
                "number {n} is not an integer from 0 to 2^53 - 1"
            ))),
        },
        J::Object(map) => {
            if depth >= MAX_DEPTH {
                return Err(CanonicalError::Subset(format!(
                    "objects nested more than {MAX_DEPTH} deep"
                )));
            }
            map.iter()
                .map(|(k, v)| Ok((k.clone(), from_json(v, depth + 1)?)))
                .collect::<Result<_, _>>()
                .map(Value::Obj)
        }
        J::Null => Err(CanonicalError::Subset("null is not allowed".into())),
        J::Bool(_) => Err(CanonicalError::Subset("booleans are not allowed".into())),
        J::Array(_) => Err(CanonicalError::Subset("arrays are not allowed".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(members: &[(&str, Value)]) -> Value {
        Value::Obj(
            members
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn members_sort_by_utf16_code_units_not_by_utf8_bytes() {
        // U+1F600 is D83D DE00 in UTF-16, below U+FF5E (FF5E); in UTF-8 it
        // is F0..., above EF BD 9E. RFC 8785 §3.2.3 sorts by UTF-16.
        let v = obj(&[
            ("\u{ff5e}", Value::Int(1)),
            ("\u{1f600}", Value::Int(2)),
            ("a", Value::Int(3)),
        ]);
        let text = String::from_utf8(encode(&v).unwrap()).unwrap();
        assert_eq!(text, "{\"a\":3,\"\u{1f600}\":2,\"\u{ff5e}\":1}");
    }

    #[test]
    fn strings_escape_as_ecmascript_does() {
        let v = Value::Str("q\"b\\ \u{8}\t\n\u{c}\r\u{1}\u{1f}\u{7f}/é".into());
        let text = String::from_utf8(encode(&v).unwrap()).unwrap();
        assert_eq!(text, "\"q\\\"b\\\\ \\b\\t\\n\\f\\r\\u0001\\u001f\u{7f}/é\"");
        assert_eq!(decode(text.as_bytes()).unwrap(), v);
    }

    #[test]
    fn only_canonical_bytes_decode() {
        assert!(decode(b"{\"a\":1,\"b\":\"x\"}").is_ok());
        for bad in [
            &b"{\"b\":\"x\",\"a\":1}"[..],
            b"{ \"a\":1}",
            b"{\"a\":01}",
            b"{\"a\":1.0}",
            b"{\"a\":\"\\u0041\"}",
            b"{\"a\":1,\"a\":1}",
        ] {
            assert!(decode(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        for outside in [
            &b"{\"a\":null}"[..],
            b"{\"a\":true}",
            b"{\"a\":[]}",
            b"{\"a\":-1}",
            b"{\"a\":9007199254740992}",
        ] {
            assert!(
                matches!(decode(outside), Err(CanonicalError::Subset(_))),
                "{}",
                String::from_utf8_lossy(outside)
            );
        }
        assert!(matches!(decode(b"{"), Err(CanonicalError::Syntax(_))));
        assert!(encode(&obj(&[("a", Value::Int(1)), ("a", Value::Int(2))])).is_err());
        assert!(encode(&Value::Int(MAX_INT + 1)).is_err());
    }
}
