//! `${NAME}` expansion for secrets in configuration values.
//!
//! Only `${NAME}` and `${NAME:-default}` are recognised (`$$` writes a literal `$`); an unset
//! variable without a default is an error, never an empty string, so a missing API key cannot
//! silently turn into an unauthenticated upstream URL.

/// Expands `${NAME}` references in `input` using `lookup`.
pub(super) fn expand_with(input: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| "unterminated `${` (expected `${NAME}`)".to_string())?;
            let (name, default) = match body[..end].split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (&body[..end], None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("`${{{name}}}` is not a valid variable name"));
            }
            let value = match (lookup(name).filter(|v| !v.is_empty() || default.is_none()), default) {
                (Some(v), _) => v,
                (None, Some(d)) => d.to_string(),
                (None, None) => return Err(format!("environment variable `{name}` is not set")),
            };
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Expands `${NAME}` references from the process environment.
pub fn expand(input: &str) -> Result<String, String> {
    expand_with(input, |name| std::env::var(name).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        (name == "KEY").then(|| "s3cret".to_string())
    }

    #[test]
    fn expands_and_escapes() {
        assert_eq!(
            expand_with("https://x/?k=${KEY}", lookup).unwrap(),
            "https://x/?k=s3cret"
        );
        assert_eq!(expand_with("a$$b", lookup).unwrap(), "a$b");
        assert_eq!(expand_with("cost $5", lookup).unwrap(), "cost $5");
        assert_eq!(expand_with("plain", lookup).unwrap(), "plain");
    }

    #[test]
    fn unset_and_malformed_are_errors() {
        assert!(expand_with("${MISSING}", lookup).unwrap_err().contains("MISSING"));
        assert!(expand_with("${KEY", lookup).is_err());
        assert!(expand_with("${K-Y}", lookup).is_err());
    }

    #[test]
    fn defaults_fill_unset_variables() {
        assert_eq!(expand_with("${MISSING:-demo}", lookup).unwrap(), "demo");
        assert_eq!(expand_with("${KEY:-demo}", lookup).unwrap(), "s3cret");
        assert_eq!(expand_with("${MISSING:-}", lookup).unwrap(), "");
    }
}
