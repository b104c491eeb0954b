//! Failed-login lockout policy (pure: no storage, no clock).
//!
//! The app records each failed login (e.g. rows in `login_failures(user_id, at_ms)`, or an
//! array column) and, before verifying a password, asks [`LockoutPolicy::evaluate`] with the
//! recent failure times. While locked, do **not** verify the password (that would let an
//! attacker keep guessing) and answer like any failed login, with `Retry-After`.
//! Clear the failures after a successful login.

use std::time::Duration;

/// When repeated failures lock an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// This many failures …
    pub max_failures: u32,
    /// … within this window …
    pub window: Duration,
    /// … lock the account for this long after the last of them.
    pub lock_for: Duration,
}

impl Default for LockoutPolicy {
    /// 5 failures within 5 minutes lock for 15 minutes.
    fn default() -> Self {
        Self {
            max_failures: 5,
            window: Duration::from_secs(5 * 60),
            lock_for: Duration::from_secs(15 * 60),
        }
    }
}

/// The outcome of [`LockoutPolicy::evaluate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockoutStatus {
    /// A login attempt may proceed.
    Allowed {
        /// Failures still tolerated in the current window before a lock.
        remaining_attempts: u32,
    },
    /// Refuse without checking the password until `until_ms` (epoch ms).
    Locked {
        /// When the lock ends (epoch ms).
        until_ms: i64,
    },
}

impl LockoutStatus {
    /// Time left on the lock (for `Retry-After`), `None` when allowed.
    pub fn retry_after(&self, now_ms: i64) -> Option<Duration> {
        match *self {
            LockoutStatus::Locked { until_ms } => Some(Duration::from_millis(
                u64::try_from(until_ms.saturating_sub(now_ms)).unwrap_or(0),
            )),
            LockoutStatus::Allowed { .. } => None,
        }
    }
}

impl LockoutPolicy {
    /// How far back the app needs to load failures: older ones can no longer matter.
    pub fn lookback(&self) -> Duration {
        self.window + self.lock_for
    }

    /// Decides from the failure times (epoch ms, any order; older ones are ignored) at `now_ms`.
    ///
    /// Locked iff some `max_failures` consecutive failures fall within `window` and the last of
    /// them is less than `lock_for` ago.
    pub fn evaluate(&self, failures_ms: &[i64], now_ms: i64) -> LockoutStatus {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let (window, lock_for) = (ms(self.window), ms(self.lock_for));
        let oldest = now_ms.saturating_sub(window.saturating_add(lock_for));
        let mut recent: Vec<i64> = failures_ms
            .iter()
            .copied()
            .filter(|&t| t >= oldest && t <= now_ms)
            .collect();
        recent.sort_unstable();

        let n = usize::try_from(self.max_failures.max(1)).unwrap_or(usize::MAX);
        let until = recent
            .windows(n)
            .filter(|w| w[n - 1] - w[0] <= window)
            .map(|w| w[n - 1].saturating_add(lock_for))
            .max();
        if let Some(until_ms) = until.filter(|&u| u > now_ms) {
            return LockoutStatus::Locked { until_ms };
        }
        let in_window = recent
            .iter()
            .filter(|&&t| t > now_ms.saturating_sub(window))
            .count();
        let in_window = u32::try_from(in_window).unwrap_or(u32::MAX);
        LockoutStatus::Allowed {
            remaining_attempts: self.max_failures.max(1).saturating_sub(in_window),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const NOW: i64 = 1_700_000_000_000;

    fn policy() -> LockoutPolicy {
        LockoutPolicy::default()
    }

    #[test]
    fn no_failures_allowed() {
        assert_eq!(
            policy().evaluate(&[], NOW),
            LockoutStatus::Allowed {
                remaining_attempts: 5
            }
        );
    }

    #[test]
    fn four_failures_leave_one_attempt() {
        let f: Vec<i64> = (0..4).map(|i| NOW - i * MIN / 2).collect();
        assert_eq!(
            policy().evaluate(&f, NOW),
            LockoutStatus::Allowed {
                remaining_attempts: 1
            }
        );
    }

    #[test]
    fn five_failures_within_window_lock_for_15_minutes() {
        // Failures at now-4m … now, in any order.
        let f = [NOW - 2 * MIN, NOW, NOW - 4 * MIN, NOW - MIN, NOW - 3 * MIN];
        let status = policy().evaluate(&f, NOW);
        assert_eq!(
            status,
            LockoutStatus::Locked {
                until_ms: NOW + 15 * MIN
            }
        );
        assert_eq!(status.retry_after(NOW), Some(Duration::from_secs(15 * 60)));
        // Still locked one ms before the end, allowed at the end.
        assert!(matches!(
            policy().evaluate(&f, NOW + 15 * MIN - 1),
            LockoutStatus::Locked { .. }
        ));
        assert!(matches!(
            policy().evaluate(&f, NOW + 15 * MIN),
            LockoutStatus::Allowed { .. }
        ));
    }

    #[test]
    fn five_failures_spread_beyond_window_do_not_lock() {
        // One every 90 s: any 5 consecutive span 6 minutes > 5.
        let f: Vec<i64> = (0..5).map(|i| NOW - i * 90_000).collect();
        assert_eq!(
            policy().evaluate(&f, NOW),
            LockoutStatus::Allowed {
                remaining_attempts: 1
            }
        );
    }

    #[test]
    fn window_boundary_is_inclusive() {
        let f: Vec<i64> = (0..5).map(|i| NOW - i * 75_000).collect(); // spans exactly 5 min
        assert!(matches!(
            policy().evaluate(&f, NOW),
            LockoutStatus::Locked { .. }
        ));
    }

    #[test]
    fn old_failures_are_ignored() {
        let f: Vec<i64> = (0..10).map(|i| NOW - 30 * MIN - i * 1000).collect();
        assert_eq!(
            policy().evaluate(&f, NOW),
            LockoutStatus::Allowed {
                remaining_attempts: 5
            }
        );
        // Future timestamps (clock skew between nodes) are ignored rather than locking forever.
        assert!(matches!(
            policy().evaluate(&[NOW + MIN; 5], NOW),
            LockoutStatus::Allowed { .. }
        ));
    }

    #[test]
    fn configurable() {
        let p = LockoutPolicy {
            max_failures: 3,
            window: Duration::from_secs(60),
            lock_for: Duration::from_secs(3600),
        };
        let f = [NOW - 50_000, NOW - 20_000, NOW];
        assert_eq!(
            p.evaluate(&f, NOW),
            LockoutStatus::Locked {
                until_ms: NOW + 3_600_000
            }
        );
        assert_eq!(p.lookback(), Duration::from_secs(3660));
        assert_eq!(
            LockoutStatus::Allowed {
                remaining_attempts: 1
            }
            .retry_after(NOW),
            None
        );
    }
}
