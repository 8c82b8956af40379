//! Inventory exports as files: build the report, render CSV or PDF, write the file into the
//! data directory, record it in the store, and hand back a signed link valid 15 minutes.
//! Files older than 24 hours are removed by [`Exporter::purge`], which the scheduler calls.
//!
//! File names are `inventory-{location}-{local date}-{random}.{csv|pdf}`: unguessable, and safe
//! to put in a path (checked again on every download). This module must never serve a file
//! without a valid, unexpired signature, nor read outside its directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use scalesense_store::{AccountId, ExportRecord, LocationId, Millis, Store};

use crate::error::ReportError;
use crate::links::{LinkSigner, SignedLink};
use crate::report::{FILE_TTL, InventoryReport, LINK_TTL, ReportScope, inventory};
use crate::{csv, pdf};

/// An export's file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExportFormat {
    Csv,
    Pdf,
}

impl ExportFormat {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "csv" => Some(Self::Csv),
            "pdf" => Some(Self::Pdf),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Pdf => "pdf",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8; header=present",
            Self::Pdf => "application/pdf",
        }
    }

    /// The format a stored file name ends with.
    pub fn of_file(name: &str) -> Option<Self> {
        Self::parse(name.rsplit_once('.')?.1)
    }

    /// Renders the report in this format.
    pub fn render(self, report: &InventoryReport) -> Result<Vec<u8>, ReportError> {
        match self {
            Self::Csv => Ok(csv::inventory_csv(report).into_bytes()),
            Self::Pdf => pdf::inventory_pdf(report),
        }
    }
}

/// A file written and recorded, with its download link.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    pub record: ExportRecord,
    pub link: SignedLink,
    /// The file's bytes (the daily e-mail attaches the PDF).
    pub bytes: Vec<u8>,
}

/// A file read back for a download.
#[derive(Debug, Clone, PartialEq)]
pub struct Download {
    pub file_name: String,
    pub format: ExportFormat,
    pub bytes: Vec<u8>,
}

/// Writes, links, serves and purges export files.
#[derive(Debug, Clone)]
pub struct Exporter {
    store: Arc<dyn Store>,
    dir: PathBuf,
    signer: LinkSigner,
}

/// Whether `name` is a file name this module could have made: no path separators, no dots
/// but the extension's, only `[A-Za-z0-9_-]` otherwise.
pub fn is_safe_file_name(name: &str) -> bool {
    let Some((stem, ext)) = name.rsplit_once('.') else {
        return false;
    };
    !stem.is_empty()
        && stem.len() <= 200
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && ExportFormat::parse(ext).is_some()
}

fn random_token() -> String {
    use std::fmt::Write as _;
    let bytes: [u8; 12] = rand::random();
    bytes.iter().fold(String::with_capacity(24), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl Exporter {
    /// Files go to `dir` (created when missing).
    pub fn new(store: Arc<dyn Store>, dir: impl Into<PathBuf>, signer: LinkSigner) -> Self {
        Self {
            store,
            dir: dir.into(),
            signer,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn signer(&self) -> &LinkSigner {
        &self.signer
    }

    /// Builds the inventory report of `location` at `now` and exports it in `format`.
    pub async fn export_inventory(
        &self,
        account: &AccountId,
        location: &LocationId,
        format: ExportFormat,
        by: &str,
        now: Millis,
    ) -> Result<Exported, ReportError> {
        let scope = ReportScope::load(&*self.store, account, location, now).await?;
        let report = inventory(&*self.store, &scope).await?;
        self.export(&scope, &report, format, by).await
    }

    /// Renders an already built report, writes it, records it and signs a link.
    pub async fn export(
        &self,
        scope: &ReportScope,
        report: &InventoryReport,
        format: ExportFormat,
        by: &str,
    ) -> Result<Exported, ReportError> {
        let bytes = format.render(report)?;
        let id = random_token();
        let file_name = format!(
            "inventory-{}-{}-{id}.{}",
            sanitize(scope.location.id.as_str()),
            report.header.local_date,
            format.extension()
        );
        let path = self.dir.join(&file_name);
        let io = |source| ReportError::File {
            path: path.display().to_string(),
            source,
        };
        tokio::fs::create_dir_all(&self.dir).await.map_err(io)?;
        tokio::fs::write(&path, &bytes).await.map_err(io)?;
        let record = ExportRecord {
            id,
            account_id: scope.account.clone(),
            location_id: scope.location.id.clone(),
            format: format.extension().to_owned(),
            file_name: file_name.clone(),
            bytes: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
            created_by: by.to_owned(),
            created_at: scope.now,
        };
        let record = match self.store.record_export(&scope.account, &record).await {
            Ok(r) => r,
            Err(e) => {
                let _ = tokio::fs::remove_file(&path).await;
                return Err(e.into());
            }
        };
        let link = self
            .signer
            .sign(&file_name, scope.now + duration_ms(LINK_TTL));
        tracing::info!(location = %scope.location.id, file = %file_name, bytes = bytes.len(), by, "inventory exported");
        Ok(Exported {
            record,
            link,
            bytes,
        })
    }

    /// Reads the file a signed link names, after checking the link at `now`.
    pub async fn download(
        &self,
        file_name: &str,
        expires_at: i64,
        sig: &str,
        now: Millis,
    ) -> Result<Download, ReportError> {
        self.signer.verify(file_name, expires_at, sig, now)?;
        if !is_safe_file_name(file_name) {
            return Err(ReportError::LinkInvalid);
        }
        let format = ExportFormat::of_file(file_name).ok_or(ReportError::LinkInvalid)?;
        let path = self.dir.join(file_name);
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Download {
                file_name: file_name.to_owned(),
                format,
                bytes,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ReportError::Gone),
            Err(source) => Err(ReportError::File {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Removes the exports older than 24 hours at `now`: their rows, then their files. Returns
    /// how many were removed.
    pub async fn purge(&self, now: Millis) -> Result<usize, ReportError> {
        let expired = self
            .store
            .purge_exports(now - duration_ms(FILE_TTL))
            .await?;
        for export in &expired {
            if !is_safe_file_name(&export.file_name) {
                tracing::warn!(file = %export.file_name, "export row names an unsafe file; not deleting it");
                continue;
            }
            let path = self.dir.join(&export.file_name);
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "old export not removed");
                }
            }
        }
        if !expired.is_empty() {
            tracing::info!(removed = expired.len(), "old exports purged");
        }
        Ok(expired.len())
    }
}

/// Keeps `[A-Za-z0-9_-]`, replacing anything else with `_`.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn duration_ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_own_file_names_are_safe() {
        assert!(is_safe_file_name("inventory-loc-001-2026-03-29-0a1b.pdf"));
        assert!(is_safe_file_name("a.csv"));
        for bad in [
            "../secret.pdf",
            "a/b.pdf",
            "a.exe",
            ".pdf",
            "a.b.pdf",
            "download-secret",
            "a%2f.pdf",
            "",
        ] {
            assert!(!is_safe_file_name(bad), "{bad}");
        }
        assert_eq!(sanitize("loc-001#x"), "loc-001_x");
    }
}
