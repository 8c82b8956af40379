//! Signed download links: `/api/v1/downloads/{file}?expires={ms}&sig={hex}`, where `sig` is
//! HMAC-SHA256 over the path and the expiry with a server secret. The link is the credential
//! (like a presigned URL): whoever holds it may fetch the file until it expires, and changing
//! any byte of the path or the expiry makes the signature wrong.
//!
//! This module must never accept a link without checking the signature in constant time, and
//! never log the secret.

use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::error::ReportError;

type HmacSha256 = Hmac<Sha256>;

/// The path prefix every download link starts with.
pub const DOWNLOAD_PREFIX: &str = "/api/v1/downloads/";
/// The secret's file in the data directory (created on first use, mode 0600).
pub const SECRET_FILE: &str = "download-secret";

/// Signs and checks download links with one server secret.
#[derive(Clone)]
pub struct LinkSigner {
    secret: Vec<u8>,
}

impl core::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LinkSigner").finish_non_exhaustive()
    }
}

/// A link's query, as the download route receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedLink {
    /// The whole URL path and query, as handed to the client.
    pub url: String,
    /// Epoch milliseconds.
    pub expires_at: i64,
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

impl LinkSigner {
    /// A signer with this secret (at least 32 bytes are recommended).
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self {
            secret: secret.into(),
        }
    }

    /// The secret stored in `dir/download-secret`, created (32 random bytes, hex) when missing,
    /// so links survive a restart of `scalesense up`.
    pub fn load_or_create(dir: &Path) -> Result<Self, ReportError> {
        let path = dir.join(SECRET_FILE);
        let io = |source| ReportError::File {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) if text.trim().len() >= 32 => return Ok(Self::new(text.trim().as_bytes())),
            Ok(_) => {
                tracing::warn!(path = %path.display(), "download secret too short; replacing it");
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        std::fs::create_dir_all(dir).map_err(io)?;
        let secret: [u8; 32] = rand::random();
        let text = hex(&secret);
        write_private(&path, text.as_bytes()).map_err(io)?;
        Ok(Self::new(text.into_bytes()))
    }

    fn mac(&self, path: &str, expires_at: i64) -> HmacSha256 {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(expires_at.to_string().as_bytes());
        mac
    }

    /// The link to `file`, valid until `expires_at` (epoch ms).
    pub fn sign(&self, file: &str, expires_at: i64) -> SignedLink {
        let path = format!("{DOWNLOAD_PREFIX}{file}");
        let sig = hex(&self.mac(&path, expires_at).finalize().into_bytes());
        SignedLink {
            url: format!("{path}?expires={expires_at}&sig={sig}"),
            expires_at,
        }
    }

    /// Checks a link to `file` at `now`: the signature first (a tampered expiry is invalid,
    /// not expired), then the expiry.
    pub fn verify(
        &self,
        file: &str,
        expires_at: i64,
        sig: &str,
        now: i64,
    ) -> Result<(), ReportError> {
        let path = format!("{DOWNLOAD_PREFIX}{file}");
        let expected = self.mac(&path, expires_at).finalize().into_bytes();
        let given = unhex(sig).ok_or(ReportError::LinkInvalid)?;
        if given.len() != expected.len() || !bool::from(given.as_slice().ct_eq(expected.as_slice()))
        {
            return Err(ReportError::LinkInvalid);
        }
        if now >= expires_at {
            return Err(ReportError::LinkExpired);
        }
        Ok(())
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(link: &SignedLink) -> (String, i64, String) {
        let (path, q) = link.url.split_once('?').unwrap();
        let file = path.strip_prefix(DOWNLOAD_PREFIX).unwrap().to_owned();
        let mut expires = 0;
        let mut sig = String::new();
        for pair in q.split('&') {
            match pair.split_once('=').unwrap() {
                ("expires", v) => expires = v.parse().unwrap(),
                ("sig", v) => sig = v.to_owned(),
                _ => panic!("unexpected {pair}"),
            }
        }
        (file, expires, sig)
    }

    #[test]
    fn a_fresh_link_is_accepted_until_it_expires() {
        let signer = LinkSigner::new(b"0123456789abcdef0123456789abcdef".to_vec());
        let link = signer.sign("inventory-x.pdf", 1_000_000);
        let (file, expires, sig) = query(&link);
        assert_eq!(file, "inventory-x.pdf");
        assert!(signer.verify(&file, expires, &sig, 999_999).is_ok());
        assert!(matches!(
            signer.verify(&file, expires, &sig, 1_000_000),
            Err(ReportError::LinkExpired)
        ));
    }

    #[test]
    fn tampering_with_any_part_is_refused() {
        let signer = LinkSigner::new(b"0123456789abcdef0123456789abcdef".to_vec());
        let (file, expires, sig) = query(&signer.sign("a.csv", 1_000_000));
        let invalid = |r: Result<(), ReportError>| matches!(r, Err(ReportError::LinkInvalid));
        assert!(
            invalid(signer.verify("b.csv", expires, &sig, 0)),
            "other file"
        );
        assert!(
            invalid(signer.verify(&file, expires + 1, &sig, 0)),
            "longer expiry"
        );
        let mut flipped = sig.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        assert!(invalid(signer.verify(
            &file,
            expires,
            std::str::from_utf8(&flipped).unwrap(),
            0
        )));
        assert!(invalid(signer.verify(&file, expires, "zz", 0)));
        assert!(invalid(signer.verify(&file, expires, "", 0)));
        let other = LinkSigner::new(b"another secret, just as long, 32b".to_vec());
        assert!(
            invalid(other.verify(&file, expires, &sig, 0)),
            "other server"
        );
    }

    #[test]
    fn the_secret_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = LinkSigner::load_or_create(dir.path()).unwrap();
        let b = LinkSigner::load_or_create(dir.path()).unwrap();
        assert_eq!(
            a.sign("f", 1),
            b.sign("f", 1),
            "same secret after a restart"
        );
        let c = LinkSigner::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        assert_ne!(a.sign("f", 1), c.sign("f", 1));
        assert!(
            !format!("{a:?}")
                .contains(&std::fs::read_to_string(dir.path().join(SECRET_FILE)).unwrap())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
