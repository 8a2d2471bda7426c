//! How times and amounts read in refusal details: an ISO-8601 time next to its Unix seconds, an
//! amount of wei in ether next to the exact wei.

use alloy_primitives::U256;

/// `2026-01-01T00:00:00Z (1767225600)`.
pub fn time(unix: u64) -> String {
    format!("{} ({unix})", iso8601(unix))
}

/// `unix` as `YYYY-MM-DDTHH:MM:SSZ` (UTC, proleptic Gregorian).
pub fn iso8601(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = i128::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i128::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

/// `0.18 ether (181230500000000000 wei)`.
pub fn ether(wei: U256) -> String {
    let unit = U256::from(10u64).pow(U256::from(18));
    let (whole, frac) = (wei / unit, wei % unit);
    let mut frac = format!("{frac:0>18}");
    while frac.ends_with('0') {
        frac.pop();
    }
    if frac.is_empty() {
        format!("{whole} ether ({wei} wei)")
    } else {
        format!("{whole}.{frac} ether ({wei} wei)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_iso_8601() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_750_000_000), "2025-06-15T15:06:40Z");
        assert_eq!(time(86_399), "1970-01-01T23:59:59Z (86399)");
    }

    #[test]
    fn wei_reads_as_ether() {
        assert_eq!(
            ether(U256::from(181_230_500_000_000_000u64)),
            "0.1812305 ether (181230500000000000 wei)"
        );
        assert_eq!(
            ether(U256::from(2) * U256::from(10u64).pow(U256::from(18))),
            "2 ether (2000000000000000000 wei)"
        );
        assert_eq!(ether(U256::ZERO), "0 ether (0 wei)");
        assert_eq!(ether(U256::from(1)), "0.000000000000000001 ether (1 wei)");
    }
}
