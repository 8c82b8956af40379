//! CSV rendering (RFC 4180): a header row, comma separators, CRLF line ends, and a field quoted
//! when it holds a comma, a quote, CR or LF (quotes doubled). Column names carry their unit
//! (`volume_left_l`, `volume_left_gal`), so a spreadsheet never has to guess.
//!
//! Pure: a report in, text out. This module must never read the store or write a file.

use crate::report::InventoryReport;

/// Builds RFC 4180 text row by row.
#[derive(Debug, Default)]
pub struct CsvWriter {
    out: String,
}

impl CsvWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one record.
    pub fn row<I, S>(&mut self, fields: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for (i, field) in fields.into_iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            push_field(&mut self.out, field.as_ref());
        }
        self.out.push_str("\r\n");
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn push_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// A number with at most `decimals` decimals, or an empty field.
fn num(value: Option<f64>, decimals: usize) -> String {
    value
        .filter(|v| v.is_finite())
        .map_or_else(String::new, |v| format!("{v:.decimals$}"))
}

/// The inventory snapshot as CSV: one row per tap, by tap number.
pub fn inventory_csv(report: &InventoryReport) -> String {
    let unit = if report.header.volume_unit == "gal" {
        "gal"
    } else {
        "l"
    };
    let mut w = CsvWriter::new();
    w.row([
        "tap_number".to_owned(),
        "tap_name".to_owned(),
        "beer".to_owned(),
        "style".to_owned(),
        "keg_id".to_owned(),
        "keg_type".to_owned(),
        "level_pct".to_owned(),
        format!("volume_left_{unit}"),
        "hours_remaining_h".to_owned(),
        "tapped_date_local".to_owned(),
        "low".to_owned(),
    ]);
    for t in &report.taps {
        w.row([
            t.tap_number.to_string(),
            t.tap_name.clone(),
            t.beer.clone().unwrap_or_default(),
            t.style.clone().unwrap_or_default(),
            t.keg_id.clone().unwrap_or_default(),
            t.keg_type.clone().unwrap_or_default(),
            num(t.level_pct, 1),
            num(t.volume_left, 2),
            num(t.hours_remaining, 1),
            t.tapped_date.clone().unwrap_or_default(),
            t.low.clone().unwrap_or_default(),
        ]);
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_rfc_4180_requires() {
        let mut w = CsvWriter::new();
        w.row(["plain", "a,b", "say \"hi\"", "two\nlines", "cr\rhere", ""]);
        w.row(["é", "x"]);
        assert_eq!(
            w.finish(),
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\"cr\rhere\",\r\né,x\r\n"
        );
    }

    #[test]
    fn numbers_are_fixed_and_unknown_is_empty() {
        assert_eq!(num(Some(12.345), 1), "12.3");
        assert_eq!(num(None, 1), "");
        assert_eq!(num(Some(f64::NAN), 2), "");
    }
}
