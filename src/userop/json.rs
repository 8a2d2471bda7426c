//! The members of a JSON object, found in text that serde_json has already validated.
//!
//! Every `&RawValue` comes out of serde_json's parser (or its validating constructors), so its
//! text is well-formed JSON. Splitting such text into members only needs to find where each
//! key and value ends, which a general parser does at a character at a time: a user operation's
//! signature alone can be several kilobytes of hex. Here a string's end is found with a
//! vectorised search for `"` or `\` ([`memchr::memchr2`]), and values are returned as the text
//! they occupy, ready for the hex parsers.
//!
//! The scanner does not re-validate what serde_json validated, but it never trusts it either:
//! text that does not have the shape it expects is an error, never a panic or an out-of-bounds
//! read, and every loop advances through the input.

use std::borrow::Cow;

/// Why text could not be split into members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ScanError {
    /// The value is not an object.
    NotAnObject,
    /// The text is not well-formed where the scanner looked (`at` is a byte offset).
    Malformed { at: usize, expected: &'static str },
}

/// Calls `member` with each member of the object in `text`, in the order written, duplicates
/// included: the key (escapes resolved) and the value's JSON text (no surrounding whitespace).
/// Stops at the first error, the scanner's or `member`'s.
pub(super) fn object_members<'t, E: From<ScanError>>(
    text: &'t str,
    mut member: impl FnMut(Cow<'t, str>, &'t str) -> Result<(), E>,
) -> Result<(), E> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return Err(ScanError::NotAnObject.into());
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return Ok(finish(b, i + 1)?);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return Err(malformed(i, "a member name").into());
        }
        let (end, escaped) = string_end(b, i)?;
        let key = if escaped {
            let owned: String = serde_json::from_str(&text[i..end]).map_err(|_| malformed(i, "a member name"))?;
            Cow::Owned(owned)
        } else {
            Cow::Borrowed(&text[i + 1..end - 1])
        };
        i = skip_ws(b, end);
        if b.get(i) != Some(&b':') {
            return Err(malformed(i, "`:`").into());
        }
        let start = skip_ws(b, i + 1);
        let end = value_end(b, start)?;
        member(key, &text[start..end])?;
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Ok(finish(b, i + 1)?),
            _ => return Err(malformed(i, "`,` or `}`").into()),
        }
    }
}

fn malformed(at: usize, expected: &'static str) -> ScanError {
    ScanError::Malformed { at, expected }
}

/// Only whitespace may follow the object.
fn finish(b: &[u8], i: usize) -> Result<(), ScanError> {
    let end = skip_ws(b, i);
    if end == b.len() {
        Ok(())
    } else {
        Err(malformed(end, "the end of the object"))
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// For the string opening at `b[i]`: the offset just past its closing quote, and whether it
/// contains escapes.
fn string_end(b: &[u8], i: usize) -> Result<(usize, bool), ScanError> {
    let mut at = i + 1;
    let mut escaped = false;
    loop {
        let found = b.get(at..).and_then(|rest| memchr::memchr2(b'"', b'\\', rest));
        let Some(k) = found else {
            return Err(malformed(i, "a closed string"));
        };
        at += k;
        if b[at] == b'"' {
            return Ok((at + 1, escaped));
        }
        // A backslash and the character it escapes (`\uXXXX`'s digits hold neither a quote nor
        // a backslash, so they are skipped by the next search).
        escaped = true;
        at += 2;
    }
}

/// The offset just past the value starting at `b[i]`.
fn value_end(b: &[u8], i: usize) -> Result<usize, ScanError> {
    match b.get(i) {
        Some(b'"') => string_end(b, i).map(|(end, _)| end),
        Some(b'{' | b'[') => nested_end(b, i),
        Some(_) => {
            // A number, `true`, `false` or `null`: up to the next delimiter.
            let len = b[i..]
                .iter()
                .position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(b.len() - i);
            if len == 0 {
                Err(malformed(i, "a value"))
            } else {
                Ok(i + len)
            }
        }
        None => Err(malformed(i, "a value")),
    }
}

/// The offset just past the object or array opening at `b[i]`, strings inside skipped whole.
fn nested_end(b: &[u8], i: usize) -> Result<usize, ScanError> {
    let mut depth = 0usize;
    let mut at = i;
    while let Some(&c) = b.get(at) {
        match c {
            b'"' => {
                at = string_end(b, at)?.0;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(at + 1);
                }
            }
            _ => {}
        }
        at += 1;
    }
    Err(malformed(i, "a closed object or array"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The members of `text`, as `object_members` hands them over.
    fn collect(text: &str) -> Result<Vec<(Cow<'_, str>, &str)>, ScanError> {
        let mut list = Vec::new();
        object_members(text, |k, v| {
            list.push((k, v));
            Ok::<_, ScanError>(())
        })?;
        Ok(list)
    }

    fn members(text: &str) -> Vec<(String, String)> {
        collect(text)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v.to_owned()))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn splits_members_of_every_value_kind() {
        let text = r#" { "a" : "0x12" ,"b":null, "c":-1.5e3,"d":{"x":[1,{"y":"}]"}],"z":"\""},
            "e":[ ], "f":true, "g":"" } "#;
        assert_eq!(
            members(text),
            pairs(&[
                ("a", r#""0x12""#),
                ("b", "null"),
                ("c", "-1.5e3"),
                ("d", r#"{"x":[1,{"y":"}]"}],"z":"\""}"#),
                ("e", "[ ]"),
                ("f", "true"),
                ("g", r#""""#),
            ])
        );
        assert_eq!(members("{}"), pairs(&[]));
        assert_eq!(members(" {\n}\n"), pairs(&[]));
    }

    #[test]
    fn keys_with_escapes_are_resolved_and_values_kept_verbatim() {
        let text = r#"{"s\u0065nder":"0x\u0031","a\\b":"x\\\"y","q\"":1}"#;
        let got = collect(text).unwrap();
        assert!(matches!(got[0].0, Cow::Owned(_)));
        assert_eq!(
            members(text),
            pairs(&[("sender", r#""0x\u0031""#), ("a\\b", r#""x\\\"y""#), ("q\"", "1")])
        );
    }

    #[test]
    fn escapes_anywhere_in_long_strings() {
        for at in 0..80 {
            let value = format!("{}\\\"{}", "a".repeat(at), "b".repeat(40));
            let text = format!(r#"{{"k":"{value}","{value}":1}}"#);
            let got = collect(&text).unwrap();
            assert_eq!(
                got[0],
                (Cow::Borrowed("k"), &text[5..5 + value.len() + 2]),
                "escape at {at}"
            );
            assert_eq!(got[1].0, value.replace("\\\"", "\""), "escape at {at}");
            assert_eq!(got[1].1, "1");
        }
    }

    #[test]
    fn duplicates_are_kept_for_the_caller_to_judge() {
        assert_eq!(members(r#"{"a":1,"a":2}"#), pairs(&[("a", "1"), ("a", "2")]));
    }

    #[test]
    fn other_values_are_not_objects() {
        for text in ["[]", "\"{}\"", "null", "1", "", "  "] {
            assert_eq!(collect(text), Err(ScanError::NotAnObject), "{text:?}");
        }
    }

    #[test]
    fn malformed_text_is_an_error_not_a_panic() {
        // None of these reach the scanner through serde_json; they show it stays in bounds.
        for text in [
            "{",
            "{\"a",
            "{\"a\\",
            "{\"a\"",
            "{\"a\":",
            "{\"a\":\"x",
            "{\"a\":\"x\\\"",
            "{\"a\":1",
            "{\"a\":1,",
            "{\"a\":{",
            "{\"a\":{\"b\":\"}",
            "{\"a\":1}x",
            "{\"a\":1 \"b\":2}",
            "{a:1}",
            "{\"a\" 1}",
            "{\"a\":,}",
            "{\"a\":]}",
        ] {
            assert!(matches!(collect(text), Err(ScanError::Malformed { .. })), "{text:?}");
        }
    }

    #[test]
    fn arbitrary_text_never_panics() {
        use proptest::prelude::*;
        proptest!(|(text in "[{}\\[\\]\":,\\\\ a0\n]{0,40}")| {
            let _ = collect(&text);
        });
        proptest!(|(text in any::<String>())| {
            let _ = collect(&text);
        });
    }

    #[test]
    fn agrees_with_serde_json_on_generated_objects() {
        use proptest::prelude::*;
        let value = prop_oneof![
            "[0-9a-fA-Fx]{0,80}".prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            Just(serde_json::Value::Null),
            "[ -~é\u{1F600}\"\\\\\n]{0,12}".prop_map(|s| serde_json::json!({ "k": s, "l": [s, 1] })),
        ];
        let object = proptest::collection::vec(("[ -~é\"\\\\]{0,6}", value), 0..12);
        proptest!(|(list in object, pretty in any::<bool>())| {
            let map: serde_json::Map<String, serde_json::Value> = list.into_iter().collect();
            let text = if pretty {
                serde_json::to_string_pretty(&map).unwrap()
            } else {
                serde_json::to_string(&map).unwrap()
            };
            let got = collect(&text).unwrap();
            prop_assert_eq!(got.len(), map.len());
            for ((k, v), (ek, ev)) in got.iter().zip(&map) {
                prop_assert_eq!(&**k, ek.as_str());
                prop_assert_eq!(&serde_json::from_str::<serde_json::Value>(v).unwrap(), ev);
            }
        });
    }
}
