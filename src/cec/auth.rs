//! The bearer token of `tokenByAkSk`: when to fetch a new one. There is no refresh interface, so the
//! client fetches a new token ahead of expiry and once more when a business call answers 401.

use std::time::Duration;

use tokio::time::Instant;

use crate::secret::Secret;

/// A token and when to replace it.
#[derive(Clone, Debug)]
pub struct Token {
    pub value: Secret,
    /// When to fetch a new one: ahead of expiry by a fifth of its lifetime, at most a minute.
    pub refresh_at: Instant,
}

impl Token {
    /// A token received at `received` with a lifetime of `lifetime`.
    pub fn new(value: Secret, received: Instant, lifetime: Duration) -> Token {
        let margin = (lifetime / 5).min(Duration::from_secs(60));
        Token { value, refresh_at: received + lifetime.saturating_sub(margin) }
    }

    pub fn fresh(&self, now: Instant) -> bool {
        now < self.refresh_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshed_ahead_of_expiry() {
        let t0 = Instant::now();
        let t = Token::new(Secret::new("x"), t0, Duration::from_secs(600));
        assert_eq!(t.refresh_at - t0, Duration::from_secs(540));
        assert!(t.fresh(t0 + Duration::from_secs(539)));
        assert!(!t.fresh(t0 + Duration::from_secs(540)));
        let short = Token::new(Secret::new("x"), t0, Duration::from_secs(5));
        assert_eq!(short.refresh_at - t0, Duration::from_secs(4));
    }
}
