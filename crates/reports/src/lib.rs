//! Scale Sense reports (issue 9): what a bar manager reads about a location, and the files and
//! e-mails that carry it.
//!
//! - [`report`]: the report models and their builders over the [`scalesense_store::Store`]
//!   (inventory snapshot, pour volume by hour of day, style split, keg lifespans, kegs kicked per
//!   week, battery trend), in the location's time zone and display units.
//! - [`csv`] and [`pdf`]: pure rendering of the inventory report (RFC 4180 text; an A4 PDF made
//!   with krilla and the DejaVu Sans font shipped in `fonts/`).
//! - [`links`] and [`exports`]: export files in the data directory, HMAC-signed download links
//!   valid 15 minutes, and the purge of files older than 24 hours.
//! - [`daily`]: the daily export e-mail, a job the alert scheduler runs on the leader replica.
//!
//! Boundaries: rules come from the domain crate and data from the store; this crate never
//! decides a threshold itself, never reads the system clock (time is an argument or a
//! [`scalesense_alerts::Clock`]), and rendering never does I/O.

pub mod csv;
pub mod daily;
mod error;
pub mod exports;
pub mod links;
pub mod pdf;
pub mod report;

pub use daily::{DailyExportJob, DailyReport};
pub use error::ReportError;
pub use exports::{Download, ExportFormat, Exported, Exporter};
pub use links::{LinkSigner, SignedLink};
pub use report::ReportScope;
