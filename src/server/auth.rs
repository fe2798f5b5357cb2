//! Dashboard users: roles, argon2id password hashes, session and CSRF tokens,
//! and the sign-in rate limit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use sha2::Digest as _;

/// What a dashboard user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads everything, changes nothing.
    Auditor,
    /// Also runs, pauses and resumes bots and retries items.
    Operator,
    /// Also manages users.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "auditor" => Some(Role::Auditor),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Auditor => "auditor",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// The shortest password `clerk users add` accepts.
pub const MIN_PASSWORD: usize = 10;

/// An argon2id PHC string for `password` (random salt, default parameters).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| anyhow::anyhow!("cannot encode the password salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
}

/// True if `password` matches the PHC string `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A random token (256 bits, hex) for session cookies and CSRF.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    hex::encode(bytes)
}

/// What the store keeps of a session token.
pub fn token_hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Failed sign-ins per user name and per client address: after
/// [`RateLimit::MAX_FAILURES`] within [`RateLimit::WINDOW`], further attempts
/// are refused until the window has passed (also with the right password).
#[derive(Default)]
pub struct RateLimit {
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl RateLimit {
    pub const MAX_FAILURES: usize = 5;
    pub const WINDOW: Duration = Duration::from_secs(15 * 60);

    fn keys(user: &str, client: &str) -> [String; 2] {
        [format!("user:{user}"), format!("client:{client}")]
    }

    /// `Some(wait)` if sign-ins for this user or client are blocked now.
    pub fn blocked(&self, user: &str, client: &str) -> Option<Duration> {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = None;
        for k in Self::keys(user, client) {
            if let Some(list) = map.get_mut(&k) {
                list.retain(|t| now.duration_since(*t) < Self::WINDOW);
                if list.len() >= Self::MAX_FAILURES
                    && let Some(first) = list.first()
                {
                    let w = Self::WINDOW.saturating_sub(now.duration_since(*first));
                    wait = Some(wait.map_or(w, |x: Duration| x.max(w)));
                }
            }
        }
        wait
    }

    pub fn failed(&self, user: &str, client: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for k in Self::keys(user, client) {
            map.entry(k).or_default().push(Instant::now());
        }
    }

    pub fn succeeded(&self, user: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&format!("user:{user}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterz", &h));
        assert_ne!(h, hash_password("correct horse battery").unwrap());
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn rate_limit_after_five_failures() {
        let r = RateLimit::default();
        for _ in 0..4 {
            r.failed("ann", "1.2.3.4");
        }
        assert!(r.blocked("ann", "1.2.3.4").is_none());
        r.failed("ann", "1.2.3.4");
        assert!(r.blocked("ann", "9.9.9.9").is_some(), "per user");
        assert!(r.blocked("bob", "1.2.3.4").is_some(), "per client");
        assert!(r.blocked("bob", "9.9.9.9").is_none());
    }

    #[test]
    fn secrets_compare() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }
}
