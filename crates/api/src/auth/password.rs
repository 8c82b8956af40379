//! Password hashing with Argon2id (PHC strings), and the dummy hash that makes a login for an
//! unknown user cost the same as a wrong password.
//!
//! Hashing is CPU-bound (tens of milliseconds in release): callers run it on a blocking thread.
//! This module must never log or return a password, and never accept a hash that is not
//! Argon2 (a stored hash that does not parse verifies as "wrong password", never as success).

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};

/// Shortest accepted password, characters.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest accepted password, bytes: hashing cost must not depend on what a client sends.
pub const MAX_PASSWORD_BYTES: usize = 256;

/// Argon2id cost for new hashes. Verification always uses the cost written in the hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordCost {
    /// Memory, KiB.
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

impl Default for PasswordCost {
    /// OWASP's Argon2id minimum (19 MiB, 2 passes, 1 lane), argon2's defaults.
    fn default() -> Self {
        Self {
            m_kib: Params::DEFAULT_M_COST,
            t: Params::DEFAULT_T_COST,
            p: Params::DEFAULT_P_COST,
        }
    }
}

impl PasswordCost {
    /// The cheapest cost Argon2 allows: for tests only, never for real passwords.
    pub const TEST_ONLY: Self = Self {
        m_kib: 8,
        t: 1,
        p: 1,
    };
}

/// Hashes and verifies passwords at one cost.
#[derive(Debug)]
pub struct Passwords {
    params: Params,
    dummy_hash: String,
}

impl Passwords {
    pub fn new(cost: PasswordCost) -> Result<Self, String> {
        let params = Params::new(cost.m_kib, cost.t, cost.p, None).map_err(|e| e.to_string())?;
        let dummy_hash = hash_with(&params, "scalesense dummy password for unknown users")?;
        Ok(Self { params, dummy_hash })
    }

    /// A new PHC string with a fresh random salt.
    pub fn hash(&self, password: &str) -> Result<String, String> {
        hash_with(&self.params, password)
    }

    /// Whether `password` matches `hash`; for `None` (no such user) the dummy hash is checked
    /// so the answer takes as long, and is always `false`.
    pub fn verify(&self, password: &str, hash: Option<&str>) -> bool {
        let argon = Argon2::default();
        if let Some(hash) = hash {
            argon.verify_password(password.as_bytes(), hash).is_ok()
        } else {
            let _ = argon.verify_password(password.as_bytes(), self.dummy_hash.as_str());
            false
        }
    }
}

fn hash_with(params: &Params, password: &str) -> Result<String, String> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks a new password's length; `field` names it in the error.
pub fn check_new_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!("must be at least {MIN_PASSWORD_CHARS} characters"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!("must be at most {MAX_PASSWORD_BYTES} bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ_by_salt() {
        let p = Passwords::new(PasswordCost::TEST_ONLY).unwrap();
        let a = p.hash("correct horse battery").unwrap();
        let b = p.hash("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{a}");
        assert_ne!(a, b);
        assert!(p.verify("correct horse battery", Some(&a)));
        assert!(!p.verify("correct horse batterY", Some(&a)));
        assert!(!p.verify("correct horse battery", None));
        assert!(!p.verify("anything", Some("not a phc string")));
    }

    #[test]
    fn new_passwords_have_bounds() {
        assert!(check_new_password("short").is_err());
        assert!(check_new_password("long enough!").is_ok());
        assert!(check_new_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
    }
}
