//! What both backends share, so they name, age and report counters the same way: counter keys,
//! window arithmetic, key lifetimes and [`Usage`].

use alloy_primitives::U256;

use alloy_primitives::Address;

use super::{Scope, Usage, Window};

/// How long a closed window's counter is kept after its end, so that a late refund still finds it.
pub(crate) const GRACE_SECS: u64 = 3600;

/// The longest lifetime given to a key (about 34 000 years); a key that would live longer never
/// expires. Keeps every relative expiry far inside what Redis accepts.
pub(crate) const MAX_TTL_SECS: u64 = 1 << 40;

/// A window length as used: a period of 0 counts as 1 second (a window never divides by zero).
pub(crate) fn period(period: u64) -> u64 {
    period.max(1)
}

/// The fixed window holding `now`: its id (`now / period`) and its end (saturating at `u64::MAX`).
pub(crate) fn fixed_window(period_secs: u64, now: u64) -> (u64, u64) {
    let p = period(period_secs);
    let id = now / p;
    // id · p ≤ now, so only the end can overflow.
    (id, (id * p).saturating_add(p))
}

/// Seconds from `now` until `at` plus [`GRACE_SECS`], at least 1; `None` when that is beyond
/// [`MAX_TTL_SECS`] (the key does not expire).
pub(crate) fn ttl_after(now: u64, at: u64) -> Option<u64> {
    let ttl = at.saturating_sub(now).saturating_add(GRACE_SECS).max(1);
    (ttl <= MAX_TTL_SECS).then_some(ttl)
}

/// The key of a counter within the store: its name and its window, so a counter used with two
/// windows is two counters, and a fixed window's key carries its id (an old window's key simply
/// expires). The name comes last, so no two (name, window) pairs share a key.
pub(crate) fn counter_key(counter: &str, window: &Window, now: u64) -> String {
    match *window {
        Window::Lifetime => format!("c:l:{counter}"),
        Window::Fixed { period: p } => {
            let (id, _) = fixed_window(p, now);
            format!("c:f{}:{id}:{counter}", period(p))
        }
        Window::Anchored { period: p } => format!("c:a{}:{counter}", period(p)),
        Window::Schedule { start_at, interval } => format!("c:s{start_at}+{interval}:{counter}"),
    }
}

/// The part of a key that says whose it is: `a:<account>` (lowercase hex) for an account's
/// counters and op records, `p` for shared counters. In Redis it follows the prefix inside the
/// hash tag (`{opgate:a:0x…}`), so it decides the Cluster slot.
pub(crate) fn owner(scope: Scope, account: Address) -> String {
    match scope {
        Scope::Account => format!("a:{account:#x}"),
        Scope::Shared => "p".to_owned(),
    }
}

/// When the `k`-th unit (0-based) of a schedule is available: `start_at + k · interval`, exact
/// (saturating at `U256::MAX`).
pub(crate) fn schedule_due(start_at: u64, interval: u64, k: U256) -> U256 {
    k.saturating_mul(U256::from(interval))
        .saturating_add(U256::from(start_at))
}

/// A time beyond `u64::MAX` reported as `u64::MAX`.
pub(crate) fn clamp_secs(t: U256) -> u64 {
    u64::try_from(t).unwrap_or(u64::MAX)
}

/// A counter's [`Usage`] at `now`, from what is stored under its key: `used` (0 when absent) and,
/// for an anchored window, the stored window end.
pub(crate) fn usage_of(window: &Window, now: u64, used: U256, anchored_end: Option<u64>) -> Usage {
    match *window {
        Window::Lifetime => Usage {
            used,
            resets_at: None,
            available_at: None,
        },
        Window::Fixed { period: p } => Usage {
            used,
            resets_at: Some(fixed_window(p, now).1),
            available_at: None,
        },
        Window::Anchored { .. } => match anchored_end.filter(|end| now < *end) {
            Some(end) => Usage {
                used,
                resets_at: Some(end),
                available_at: None,
            },
            None => Usage {
                used: U256::ZERO,
                resets_at: None,
                available_at: None,
            },
        },
        Window::Schedule { start_at, interval } => Usage {
            used,
            resets_at: None,
            available_at: Some(clamp_secs(schedule_due(start_at, interval, used))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_windows_are_epoch_aligned_and_never_overflow() {
        assert_eq!(fixed_window(60, 0), (0, 60));
        assert_eq!(fixed_window(60, 59), (0, 60));
        assert_eq!(fixed_window(60, 60), (1, 120));
        assert_eq!(fixed_window(0, 7), (7, 8));
        assert_eq!(fixed_window(10, u64::MAX).1, u64::MAX);
    }

    #[test]
    fn ttls_are_relative_clamped_and_bounded() {
        assert_eq!(ttl_after(100, 160), Some(60 + GRACE_SECS));
        assert_eq!(ttl_after(200, 160), Some(GRACE_SECS));
        assert_eq!(ttl_after(0, u64::MAX), None);
    }

    #[test]
    fn keys_distinguish_windows() {
        let w = [
            Window::Lifetime,
            Window::Fixed { period: 60 },
            Window::Fixed { period: 3600 },
            Window::Anchored { period: 60 },
            Window::Schedule {
                start_at: 0,
                interval: 60,
            },
        ];
        let keys: std::collections::HashSet<_> = w.iter().map(|w| counter_key("x", w, 7200)).collect();
        assert_eq!(keys.len(), w.len());
        assert_eq!(counter_key("x", &Window::Fixed { period: 60 }, 7200), "c:f60:120:x");
    }

    #[test]
    fn schedules_saturate() {
        assert_eq!(schedule_due(10, 5, U256::from(3)), U256::from(25));
        assert_eq!(schedule_due(1, u64::MAX, U256::MAX), U256::MAX);
        assert_eq!(clamp_secs(U256::MAX), u64::MAX);
    }
}
