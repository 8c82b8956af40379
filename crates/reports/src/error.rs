//! The reports crate's errors. A store error keeps its kind so the API can answer `404` or
//! `503` as for any other read.

use scalesense_store::StoreError;

/// Why a report, an export or a download failed.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot render the PDF: {0}")]
    Pdf(String),
    #[error("export file {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the download link has expired")]
    LinkExpired,
    #[error("the download link is not valid")]
    LinkInvalid,
    #[error("the export file no longer exists")]
    Gone,
    #[error("cannot send the export e-mail: {0}")]
    Mail(String),
}
