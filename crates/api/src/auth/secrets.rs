//! Opaque secrets: session and API tokens (random, shown once, stored only as a SHA-256 hash),
//! the CSRF token derived from a session token, and short random ids.
//!
//! A token has 256 bits of entropy, so an unsalted fast hash is the right storage: there is
//! nothing to brute-force. This module must never keep a token after returning it.

use std::fmt::Write;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// API tokens start with this, so secret scanners and people can recognise them.
pub const API_TOKEN_PREFIX: &str = "sst_";

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// A new session token: 32 random bytes, base64url.
pub fn new_session_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// A new API token: the prefix and 32 random bytes, base64url.
pub fn new_api_token() -> String {
    format!(
        "{API_TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(random_bytes::<32>())
    )
}

/// A new random password for an operator to pass on: 15 random bytes, base64url (20 characters).
pub fn new_password() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<15>())
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A short random lowercase-hex suffix for generated ids (`usr-…`, `keg-20260318-…`).
pub fn random_suffix(bytes: usize) -> String {
    let raw = random_bytes::<16>();
    hex(&raw[..bytes.min(16)])
}

/// How a token is stored and looked up: lowercase hex SHA-256.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// The CSRF token of a session: derived from the session token, so only someone who holds the
/// (HttpOnly) cookie's value, i.e. the server, can compute it; the dashboard receives it in the
/// login answer and `GET /auth/me`.
pub fn csrf_token(session_token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"scalesense csrf v1\0");
    h.update(session_token.as_bytes());
    URL_SAFE_NO_PAD.encode(h.finalize())
}

/// Compares a presented CSRF token with the expected one in constant time.
pub fn csrf_matches(expected: &str, presented: &str) -> bool {
    expected.as_bytes().ct_eq(presented.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_shaped() {
        let a = new_session_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, new_session_token());
        let t = new_api_token();
        assert!(t.starts_with(API_TOKEN_PREFIX));
        assert_eq!(t.len(), API_TOKEN_PREFIX.len() + 43);
        assert_eq!(random_suffix(4).len(), 8);
    }

    #[test]
    fn hashes_and_csrf_are_stable() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let c = csrf_token("session");
        assert_eq!(c, csrf_token("session"));
        assert_ne!(c, csrf_token("other"));
        assert!(csrf_matches(&c, &c));
        assert!(!csrf_matches(&c, &c[..10]));
        assert!(!csrf_matches(&c, ""));
    }
}
