//! The small text codecs the API needs, by hand to keep the plugin dependency-free:
//! percent-decoding of path segments and query values, query-string lookup, and JSON string
//! escaping for the few JSON bodies it writes.

use std::fmt::Write as _;

/// Why a percent-encoded string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
}

/// Decodes `%XX` escapes (and, when `plus_is_space`, `+` as a space: query strings), then
/// requires UTF-8.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Result<String, DecodeError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|&b| hex(b));
                let lo = bytes.get(i + 2).and_then(|&b| hex(b));
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(DecodeError::BadEscape);
                };
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| DecodeError::NotUtf8)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The raw (still encoded) value of the first `name=` parameter of a query string; a bare
/// `name` counts as an empty value.
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// `s` as a JSON string literal, quotes included.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_refuses_bad_ones() {
        assert_eq!(percent_decode("a%2Fb%20c", false), Ok("a/b c".into()));
        assert_eq!(percent_decode("caf%C3%A9", false), Ok("café".into()));
        assert_eq!(percent_decode("a+b", false), Ok("a+b".into()));
        assert_eq!(percent_decode("a+b", true), Ok("a b".into()));
        assert_eq!(percent_decode("%", false), Err(DecodeError::BadEscape));
        assert_eq!(percent_decode("%4", false), Err(DecodeError::BadEscape));
        assert_eq!(percent_decode("%zz", false), Err(DecodeError::BadEscape));
        assert_eq!(percent_decode("%FF", false), Err(DecodeError::NotUtf8));
    }

    #[test]
    fn finds_query_parameters() {
        assert_eq!(query_param("prefix=a&limit=3", "limit"), Some("3"));
        assert_eq!(query_param("prefix&limit=3", "prefix"), Some(""));
        assert_eq!(query_param("limit=3", "prefix"), None);
        assert_eq!(query_param("", "prefix"), None);
    }

    #[test]
    fn escapes_json_strings() {
        assert_eq!(json_string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(json_string("l1\nl2\u{1}"), r#""l1\nl2\u0001""#);
        assert_eq!(json_string("é"), "\"é\"");
    }
}
