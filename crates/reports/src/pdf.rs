//! The inventory PDF: A4, the location and date, the inventory table, a pour-by-hour bar chart
//! drawn with paths, and the low-keg list; one or two pages for 24 taps.
//!
//! Rendering is two pure steps: [`layout`] places everything on pages as plain drawing
//! operations (so page breaks are decided, and testable, before any PDF exists), then krilla
//! writes them with the DejaVu Sans font shipped in `fonts/` (subset-embedded). No headless
//! browser, no external service, no system font. This module must never read the store, a file
//! or the clock.

use krilla::Document;
use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::metadata::Metadata;
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::text::{Font, TextDirection};

use crate::error::ReportError;
use crate::report::{InventoryReport, InventoryRow};

/// DejaVu Sans (Bitstream Vera licence, `fonts/LICENSE-DejaVu.txt`).
static FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

/// A4 in points.
pub const PAGE_WIDTH: f32 = 595.28;
pub const PAGE_HEIGHT: f32 = 841.89;
const MARGIN: f32 = 36.0;
/// Lowest baseline content may use; the footer sits below.
const CONTENT_BOTTOM: f32 = PAGE_HEIGHT - 48.0;
const ROW_HEIGHT: f32 = 15.0;
const TABLE_SIZE: f32 = 8.0;
const CHART_HEIGHT: f32 = 150.0;
/// Mean advance of DejaVu Sans glyphs, in em: text is cut to fit its column with this.
const EM_PER_CHAR: f32 = 0.56;
/// DejaVu Sans digits are 1303/2048 em wide: right-aligned numbers line up with this.
const EM_PER_DIGIT: f32 = 0.637;

/// An sRGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Colour(pub u8, pub u8, pub u8);

const INK: Colour = Colour(0x1a, 0x20, 0x2c);
const MUTED: Colour = Colour(0x5a, 0x67, 0x78);
const BAND: Colour = Colour(0xed, 0xf2, 0xf7);
const RULE: Colour = Colour(0xcb, 0xd5, 0xe0);
const BAR: Colour = Colour(0x2b, 0x6c, 0xb0);
const WARNING: Colour = Colour(0xb7, 0x79, 0x1f);
const CRITICAL: Colour = Colour(0xc5, 0x30, 0x30);

/// One drawing operation, in page points with the origin at the top left (y down).
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Text with its baseline at `y`.
    Text {
        x: f32,
        y: f32,
        size: f32,
        colour: Colour,
        text: String,
    },
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        colour: Colour,
    },
    Line {
        x1: f32,
        y1: f32,
        x2: f32,
        y2: f32,
        colour: Colour,
    },
}

/// The laid-out document: one list of operations per page.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub pages: Vec<Vec<Op>>,
}

/// A table column: header, left edge, width, right-aligned.
struct Column {
    title: &'static str,
    x: f32,
    w: f32,
    right: bool,
}

fn columns(volume_unit: &str) -> [Column; 8] {
    let left = if volume_unit == "gal" {
        "Left (gal)"
    } else {
        "Left (L)"
    };
    let col = |title, x, w, right| Column { title, x, w, right };
    [
        col("Tap", MARGIN, 80.0, false),
        col("Beer", 118.0, 100.0, false),
        col("Style", 220.0, 66.0, false),
        col("Keg type", 288.0, 60.0, false),
        col("Level %", 350.0, 38.0, true),
        col(left, 392.0, 44.0, true),
        col("Hours left", 440.0, 46.0, true),
        col("Tapped", 496.0, 63.0, false),
    ]
}

/// Cuts `text` so it fits `width` at `size`, ending with "…" when cut.
fn fit(text: &str, width: f32, size: f32) -> String {
    let max = (width / (size * EM_PER_CHAR)).floor().max(1.0) as usize;
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

fn num(value: Option<f64>, decimals: usize) -> String {
    value
        .filter(|v| v.is_finite())
        .map_or_else(|| "–".to_owned(), |v| format!("{v:.decimals$}"))
}

/// Places a page's operations, starting new pages as needed.
struct Pager {
    pages: Vec<Vec<Op>>,
    y: f32,
}

impl Pager {
    fn new() -> Self {
        Self {
            pages: vec![Vec::new()],
            y: MARGIN,
        }
    }

    fn ops(&mut self) -> &mut Vec<Op> {
        if self.pages.is_empty() {
            self.pages.push(Vec::new());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    /// Makes room for `height` more points, breaking the page when it does not fit.
    fn need(&mut self, height: f32) -> bool {
        if self.y + height > CONTENT_BOTTOM {
            self.pages.push(Vec::new());
            self.y = MARGIN + 10.0;
            true
        } else {
            false
        }
    }

    fn text(&mut self, x: f32, y: f32, size: f32, colour: Colour, text: impl Into<String>) {
        self.ops().push(Op::Text {
            x,
            y,
            size,
            colour,
            text: text.into(),
        });
    }

    fn text_right(&mut self, right: f32, y: f32, size: f32, colour: Colour, text: String) {
        let width = text.chars().count() as f32 * size * EM_PER_DIGIT;
        self.text(right - width, y, size, colour, text);
    }

    fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, colour: Colour) {
        self.ops().push(Op::Rect { x, y, w, h, colour });
    }

    fn line(&mut self, x1: f32, y1: f32, x2: f32, y2: f32, colour: Colour) {
        self.ops().push(Op::Line {
            x1,
            y1,
            x2,
            y2,
            colour,
        });
    }
}

/// Lays the inventory report out on A4 pages.
pub fn layout(report: &InventoryReport) -> Layout {
    let h = &report.header;
    let mut p = Pager::new();
    p.y = MARGIN + 18.0;
    p.text(
        MARGIN,
        p.y,
        18.0,
        INK,
        format!("Inventory — {}", h.location_name),
    );
    p.y += 18.0;
    p.text(
        MARGIN,
        p.y,
        9.0,
        MUTED,
        format!(
            "{} ({}) · location {} · volumes in {}",
            h.local_time, h.time_zone, h.location_id, h.volume_unit
        ),
    );
    p.y += 22.0;
    table(&mut p, &report.taps, &h.volume_unit);
    p.y += 18.0;
    chart(&mut p, report);
    p.y += 16.0;
    low_kegs(&mut p, &report.low_kegs);
    let total = p.pages.len();
    for (i, page) in p.pages.iter_mut().enumerate() {
        page.push(Op::Text {
            x: MARGIN,
            y: PAGE_HEIGHT - 24.0,
            size: 7.0,
            colour: MUTED,
            text: format!(
                "Scale Sense · {} · {} · page {} of {total}",
                h.location_name,
                h.local_date,
                i + 1
            ),
        });
    }
    Layout { pages: p.pages }
}

fn table_header(p: &mut Pager, cols: &[Column]) {
    p.rect(
        MARGIN,
        p.y - 11.0,
        PAGE_WIDTH - 2.0 * MARGIN,
        ROW_HEIGHT,
        BAND,
    );
    for c in cols {
        if c.right {
            let width = c.title.chars().count() as f32 * TABLE_SIZE * EM_PER_CHAR;
            p.text(c.x + c.w - width, p.y, TABLE_SIZE, INK, c.title);
        } else {
            p.text(c.x, p.y, TABLE_SIZE, INK, c.title);
        }
    }
    p.y += ROW_HEIGHT;
}

fn table(p: &mut Pager, rows: &[InventoryRow], volume_unit: &str) {
    let cols = columns(volume_unit);
    table_header(p, &cols);
    for row in rows {
        if p.need(ROW_HEIGHT) {
            table_header(p, &cols);
        }
        let colour = match row.low.as_deref() {
            Some("critical") => CRITICAL,
            Some(_) => WARNING,
            None => INK,
        };
        let cells = [
            format!("{} {}", row.tap_number, row.tap_name),
            row.beer.clone().unwrap_or_else(|| "–".into()),
            row.style.clone().unwrap_or_default(),
            row.keg_type.clone().unwrap_or_default(),
            num(row.level_pct, 1),
            num(row.volume_left, 1),
            num(row.hours_remaining, 1),
            row.tapped_date.clone().unwrap_or_default(),
        ];
        for (c, cell) in cols.iter().zip(cells) {
            if c.right {
                p.text_right(c.x + c.w, p.y, TABLE_SIZE, colour, cell);
            } else {
                p.text(
                    c.x,
                    p.y,
                    TABLE_SIZE,
                    colour,
                    fit(&cell, c.w - 2.0, TABLE_SIZE),
                );
            }
        }
        let rule_y = p.y + 4.0;
        p.line(MARGIN, rule_y, PAGE_WIDTH - MARGIN, rule_y, RULE);
        p.y += ROW_HEIGHT;
    }
    if rows.is_empty() {
        p.text(MARGIN, p.y, 9.0, MUTED, "This location has no taps.");
        p.y += ROW_HEIGHT;
    }
}

/// A "nice" axis maximum at or above `max` (1, 2 or 5 × 10^n).
fn nice_max(max: f64) -> f64 {
    if !(max.is_finite() && max > 0.0) {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * magnitude)
}

fn chart(p: &mut Pager, report: &InventoryReport) {
    let pbh = &report.pour_by_hour;
    p.need(CHART_HEIGHT + 40.0);
    p.text(
        MARGIN,
        p.y,
        11.0,
        INK,
        format!(
            "Pour volume by hour of day — average per day over {} days ({})",
            pbh.days, report.header.volume_unit
        ),
    );
    p.y += 10.0;
    let left = MARGIN + 30.0;
    let right = PAGE_WIDTH - MARGIN;
    let top = p.y;
    let bottom = top + CHART_HEIGHT;
    let max = nice_max(
        pbh.hours
            .iter()
            .map(|h| h.average_per_day)
            .fold(0.0, f64::max),
    );
    for step in 0..=4 {
        let value = max * f64::from(step) / 4.0;
        let y = bottom - (value / max) as f32 * CHART_HEIGHT;
        p.line(left, y, right, y, RULE);
        p.text_right(left - 4.0, y + 3.0, 7.0, MUTED, format!("{value:.1}"));
    }
    let slot = (right - left) / 24.0;
    for bar in &pbh.hours {
        let value = if bar.average_per_day.is_finite() {
            bar.average_per_day.max(0.0)
        } else {
            0.0
        };
        let h = (value / max) as f32 * CHART_HEIGHT;
        let x = left + f32::from(bar.hour) * slot + slot * 0.15;
        if h > 0.0 {
            p.rect(x, bottom - h, slot * 0.7, h, BAR);
        }
        if bar.hour % 3 == 0 {
            p.text(x, bottom + 10.0, 7.0, MUTED, format!("{:02}", bar.hour));
        }
    }
    p.line(left, bottom, right, bottom, INK);
    p.y = bottom + 14.0;
}

fn low_kegs(p: &mut Pager, rows: &[InventoryRow]) {
    p.need(40.0);
    p.text(MARGIN, p.y, 11.0, INK, "Low kegs");
    p.y += 15.0;
    if rows.is_empty() {
        p.text(MARGIN, p.y, 9.0, MUTED, "No keg is low.");
        p.y += 13.0;
        return;
    }
    for row in rows {
        p.need(13.0);
        let critical = row.low.as_deref() == Some("critical");
        let hours = row
            .hours_remaining
            .filter(|h| h.is_finite())
            .map_or_else(String::new, |h| format!(" · {h:.1} h left"));
        p.text(
            MARGIN,
            p.y,
            9.0,
            if critical { CRITICAL } else { WARNING },
            format!(
                "{} {} — {} · {} %{} ({})",
                row.tap_number,
                row.tap_name,
                row.beer.as_deref().unwrap_or("no beer"),
                num(row.level_pct, 1),
                hours,
                row.low.as_deref().unwrap_or("warning"),
            ),
        );
        p.y += 13.0;
    }
}

fn fill(colour: Colour) -> Fill {
    Fill {
        paint: rgb::Color::new(colour.0, colour.1, colour.2).into(),
        opacity: NormalizedF32::ONE,
        rule: krilla::paint::FillRule::default(),
    }
}

/// Renders a layout to PDF bytes.
pub fn render(layout: &Layout, title: &str) -> Result<Vec<u8>, ReportError> {
    let font = Font::new(FONT.into(), 0)
        .ok_or_else(|| ReportError::Pdf("the shipped font does not parse".into()))?;
    let settings = PageSettings::from_wh(PAGE_WIDTH, PAGE_HEIGHT)
        .ok_or_else(|| ReportError::Pdf("bad page size".into()))?;
    let mut document = Document::new();
    document.set_metadata(Metadata::new().title(title.to_owned()));
    for ops in &layout.pages {
        let mut page = document.start_page_with(settings.clone());
        let mut surface = page.surface();
        for op in ops {
            match op {
                Op::Text {
                    x,
                    y,
                    size,
                    colour,
                    text,
                } => {
                    surface.set_fill(Some(fill(*colour)));
                    surface.set_stroke(None);
                    surface.draw_text(
                        Point::from_xy(*x, *y),
                        font.clone(),
                        *size,
                        text,
                        false,
                        TextDirection::Auto,
                    );
                }
                Op::Rect { x, y, w, h, colour } => {
                    if let Some(rect) = Rect::from_xywh(*x, *y, *w, *h) {
                        let mut pb = PathBuilder::new();
                        pb.push_rect(rect);
                        if let Some(path) = pb.finish() {
                            surface.set_fill(Some(fill(*colour)));
                            surface.set_stroke(None);
                            surface.draw_path(&path);
                        }
                    }
                }
                Op::Line {
                    x1,
                    y1,
                    x2,
                    y2,
                    colour,
                } => {
                    let mut pb = PathBuilder::new();
                    pb.move_to(*x1, *y1);
                    pb.line_to(*x2, *y2);
                    if let Some(path) = pb.finish() {
                        surface.set_fill(None);
                        surface.set_stroke(Some(Stroke {
                            paint: rgb::Color::new(colour.0, colour.1, colour.2).into(),
                            width: 0.5,
                            ..Stroke::default()
                        }));
                        surface.draw_path(&path);
                    }
                }
            }
        }
        surface.finish();
        page.finish();
    }
    document
        .finish()
        .map_err(|e| ReportError::Pdf(format!("{e:?}")))
}

/// The inventory report as a PDF.
pub fn inventory_pdf(report: &InventoryReport) -> Result<Vec<u8>, ReportError> {
    render(
        &layout(report),
        &format!(
            "Inventory — {} — {}",
            report.header.location_name, report.header.local_date
        ),
    )
}

#[cfg(test)]
#[allow(clippy::float_cmp, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        assert_eq!(fit("IPA", 50.0, 8.0), "IPA");
        let cut = fit("A very long beer name that never ends", 40.0, 8.0);
        assert!(cut.ends_with('…'), "{cut}");
        assert!(cut.chars().count() <= 9);
    }

    #[test]
    fn axis_maximum_is_round() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(3.2), 5.0);
        assert_eq!(nice_max(0.7), 1.0);
        assert_eq!(nice_max(12.0), 20.0);
        assert_eq!(nice_max(f64::NAN), 1.0);
    }
}
