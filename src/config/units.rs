//! Human units in configuration: durations (`"250ms"`, `"10s"`, `"1h"`, `"1d"`), byte sizes
//! (`"512KiB"`, `"1 MiB"`) and token amounts (`"0.5 ether"`, `"1000e18"`, `"30 gwei"`).
//!
//! Parsing is exact: amounts are integers in the smallest unit (wei), and a value that does not fit
//! or would need rounding is an error rather than a silent truncation.

use std::time::Duration;

use alloy_primitives::U256;

/// Parses a duration such as `"500ms"`, `"30s"`, `"5m"`, `"1h"`, `"1d"` or `"1w"`.
///
/// A bare integer is not accepted: every duration in the configuration names its unit.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{input}` has no unit (use ms, s, m, h, d or w)"))?;
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(format!("`{input}` does not start with a number"));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{input}`: the number is too large"))?;
    let millis_per_unit: u64 = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        other => return Err(format!("`{input}`: unknown unit `{other}` (use ms, s, m, h, d or w)")),
    };
    n.checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{input}` is too long"))
}

/// Parses a byte size such as `"1048576"`, `"512KiB"`, `"1 MiB"` or `"2MB"`.
pub fn parse_byte_size(input: &str) -> Result<u64, String> {
    let s = input.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(format!("`{input}` does not start with a number"));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{input}`: the number is too large"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "`{input}`: unknown unit `{other}` (use B, KiB, MiB, GiB, KB, MB or GB)"
            ))
        }
    };
    n.checked_mul(mult).ok_or_else(|| format!("`{input}` is too large"))
}

/// Parses an amount into the smallest unit.
///
/// Accepted forms: a plain integer (`"1000000"`), scientific notation with an integer result
/// (`"1000e18"`, `"1.5e18"`), and a decimal with a unit (`"0.5 ether"`, `"30 gwei"`, `"7 wei"`).
/// `ether` and `eth` mean 10^18, `gwei` 10^9, `wei` 1. A result with a fractional part below one
/// unit is rejected.
pub fn parse_amount(input: &str) -> Result<U256, String> {
    let s = input.trim();
    let (number, exp): (&str, u32) = if let Some((num, unit)) = s.split_once(char::is_whitespace) {
        let exp = match unit.trim().to_ascii_lowercase().as_str() {
            "ether" | "eth" => 18,
            "gwei" => 9,
            "wei" => 0,
            other => return Err(format!("`{input}`: unknown unit `{other}` (use ether, gwei or wei)")),
        };
        (num.trim(), exp)
    } else if let Some(stripped) = s.strip_suffix("ether") {
        (stripped.trim(), 18)
    } else if let Some(stripped) = s.strip_suffix("gwei") {
        (stripped.trim(), 9)
    } else if let Some(stripped) = s.strip_suffix("wei") {
        (stripped.trim(), 0)
    } else {
        (s, 0)
    };
    let (mantissa, extra_exp) = match number.split_once(['e', 'E']) {
        Some((m, e)) => {
            let e: u32 = e.parse().map_err(|_| format!("`{input}`: bad exponent `{e}`"))?;
            (m, e)
        }
        None => (number, 0),
    };
    let exp = exp
        .checked_add(extra_exp)
        .filter(|e| *e <= 77)
        .ok_or_else(|| format!("`{input}` is too large"))?;
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(format!("`{input}` is not a number"));
    }
    if !int_part.chars().all(|c| c.is_ascii_digit()) || !frac_part.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("`{input}` is not a number"));
    }
    let frac_trimmed = frac_part.trim_end_matches('0');
    if frac_trimmed.len() as u32 > exp {
        return Err(format!("`{input}` is smaller than one unit (fractional wei)"));
    }
    let digits = format!("{int_part}{frac_trimmed}");
    let digits = if digits.is_empty() { "0".to_string() } else { digits };
    let base = U256::from_str_radix(&digits, 10).map_err(|_| format!("`{input}` is too large"))?;
    let scale = U256::from(10u8).pow(U256::from(exp - frac_trimmed.len() as u32));
    base.checked_mul(scale).ok_or_else(|| format!("`{input}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10 years").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("1024"), Ok(1024));
        assert_eq!(parse_byte_size("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_byte_size("1 MiB"), Ok(1 << 20));
        assert!(parse_byte_size("1 PiB").is_err());
    }

    #[test]
    fn amounts() {
        let ether = U256::from(10u64).pow(U256::from(18));
        assert_eq!(parse_amount("0.5 ether"), Ok(ether / U256::from(2)));
        assert_eq!(parse_amount("1000e18"), Ok(ether * U256::from(1000)));
        assert_eq!(parse_amount("1.5e18"), Ok(ether * U256::from(3) / U256::from(2)));
        assert_eq!(parse_amount("30 gwei"), Ok(U256::from(30_000_000_000u64)));
        assert_eq!(parse_amount("1000000"), Ok(U256::from(1_000_000u64)));
        assert_eq!(parse_amount("2ether"), Ok(ether * U256::from(2)));
        assert!(parse_amount("0.5").is_err(), "fractional wei");
        assert!(parse_amount("1 dollar").is_err());
        assert!(parse_amount("1e80").is_err());
        assert!(parse_amount("-1").is_err());
        assert!(parse_amount("").is_err());
    }
}
