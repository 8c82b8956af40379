//! Shared fixtures: a bar in a real SQLite store (temp file) in Berlin, with taps, beers, kegs
//! and readings whose levels, volumes and pour rates are known, and helpers for the poppler
//! tools.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use scalesense_store::{
    AccountId, Beer, BeerId, DeviceId, IngestReading, KegId, LocationFields, LocationId, Millis,
    NewDevice, NewKeg, NewUser, Role, SqliteStore, Store, Units, UserId,
};

pub const MIN: Millis = 60_000;
pub const HOUR: Millis = 60 * MIN;
pub const DAY: Millis = 24 * HOUR;
/// Keg tare weights of every fixture keg (kg); SG 1.0, so litres = weight − empty.
pub const FULL_KG: f64 = 73.25;
pub const EMPTY_KG: f64 = 13.15;

pub fn ms(s: &str) -> Millis {
    s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

/// 2026-03-29 10:30 UTC: 12:30 in Berlin on the day clocks went forward.
pub fn now() -> Millis {
    ms("2026-03-29T10:30:00Z")
}

/// What a fixture tap holds.
#[derive(Debug, Clone)]
pub struct TapSpec {
    pub name: String,
    /// `(beer name, style)`; `None`: an empty tap.
    pub beer: Option<(String, String)>,
    /// Volume (L) at each reading, one reading every 10 minutes ending at `now`.
    pub volumes: Vec<f64>,
}

pub struct Bar {
    pub _dir: tempfile::TempDir,
    pub store: Arc<dyn Store>,
    pub account: AccountId,
    pub location: LocationId,
}

/// A bar `loc-001` "Zum Anker" in Europe/Berlin with the given taps (numbered from 1), a
/// manager, an admin limited to another location and a staff member.
pub async fn bar(taps: &[TapSpec], units: Units) -> Bar {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("r.db")).await.unwrap());
    let account = AccountId::try_from("acct-anker").unwrap();
    let location = LocationId::try_from("loc-001").unwrap();
    let t0 = now() - 10 * DAY;
    store
        .create_account(&account, "Anker GmbH", t0)
        .await
        .unwrap();
    store
        .create_location(
            &account,
            &location,
            &LocationFields {
                name: "Zum Anker".into(),
                address: "Hafen 1".into(),
                time_zone: "Europe/Berlin".into(),
                units,
                settings: serde_json::json!({}),
            },
            t0,
        )
        .await
        .unwrap();
    let other = LocationId::try_from("loc-002").unwrap();
    store
        .create_location(
            &account,
            &other,
            &LocationFields {
                name: "Zur Möwe".into(),
                address: "Strand 2".into(),
                time_zone: "Europe/Berlin".into(),
                units,
                settings: serde_json::json!({"export_time": "off"}),
            },
            t0,
        )
        .await
        .unwrap();
    for (id, email, role, allowed) in [
        ("u-manager", "manager@anker.test", Role::Manager, None),
        (
            "u-admin",
            "admin@anker.test",
            Role::Admin,
            Some(vec![other.clone()]),
        ),
        ("u-staff", "staff@anker.test", Role::Staff, None),
    ] {
        store
            .create_user(
                &account,
                &NewUser {
                    id: UserId::try_from(id).unwrap(),
                    email: email.into(),
                    password_hash: "x".into(),
                    role,
                    allowed_locations: allowed,
                    created_at: t0,
                },
            )
            .await
            .unwrap();
    }
    for (i, spec) in taps.iter().enumerate() {
        let number = u16::try_from(i + 1).unwrap();
        let tap = store
            .create_tap(&account, &location, number, &spec.name)
            .await
            .unwrap()
            .id;
        let Some((beer_name, style)) = &spec.beer else {
            continue;
        };
        let device = DeviceId::try_from(format!("SCALE-{number:04}").as_str()).unwrap();
        store
            .register_device(
                &account,
                &NewDevice {
                    id: device.clone(),
                    location_id: Some(location.clone()),
                    fw_version: Some("1.0.0".into()),
                    created_at: t0,
                },
            )
            .await
            .unwrap();
        store
            .assign_device(&account, &device, Some(&tap))
            .await
            .unwrap();
        let beer = BeerId::try_from(format!("{location}#beer{number}").as_str()).unwrap();
        store
            .create_custom_beer(
                &account,
                &Beer {
                    id: beer.clone(),
                    location_id: Some(location.clone()),
                    name: beer_name.clone(),
                    brewery: "Hausbrauerei".into(),
                    style: style.clone(),
                    abv: 5.0,
                    specific_gravity: 1.0,
                },
            )
            .await
            .unwrap();
        store
            .set_tap_beer(&account, &tap, Some(&beer))
            .await
            .unwrap();
        let keg = KegId::try_from(format!("keg-{number:03}").as_str()).unwrap();
        store
            .create_keg(
                &account,
                &NewKeg {
                    id: keg.clone(),
                    location_id: location.clone(),
                    beer_id: beer,
                    keg_type: "half_barrel".into(),
                    full_kg: FULL_KG,
                    empty_kg: EMPTY_KG,
                    specific_gravity: 1.0,
                    created_at: t0,
                },
            )
            .await
            .unwrap();
        store
            .tap_keg(&account, &keg, &tap, ms("2026-03-20T09:00:00Z"))
            .await
            .unwrap();
        let n = spec.volumes.len() as i64;
        let readings: Vec<IngestReading> = spec
            .volumes
            .iter()
            .enumerate()
            .map(|(j, v)| {
                let j = j as i64;
                IngestReading {
                    device_id: device.clone(),
                    boot: 1,
                    seq: j + 1,
                    ts: now() - (n - 1 - j) * 10 * MIN,
                    weight_kg: EMPTY_KG + v,
                    level_pct: v / (FULL_KG - EMPTY_KG) * 100.0,
                    battery_v: Some(3.9),
                    battery_pct: Some(90.0 - j as f64),
                    rssi: Some(-60),
                    stable: true,
                    tare_status: Some("ok".into()),
                }
            })
            .collect();
        store.ingest_batch(&readings).await.unwrap();
    }
    Bar {
        _dir: dir,
        store,
        account,
        location,
    }
}

pub fn tap(name: &str, beer: Option<(&str, &str)>, volumes: Vec<f64>) -> TapSpec {
    TapSpec {
        name: name.into(),
        beer: beer.map(|(b, s)| (b.into(), s.into())),
        volumes,
    }
}

/// Tap 1 pours 6 L/h down to 30 L (50 %, 5 h left: low by hours), tap 2 holds 3 L (5 %:
/// critical), tap 3 is empty.
pub fn three_taps() -> Vec<TapSpec> {
    vec![
        tap(
            "Tap 1",
            Some(("Pils, \"Extra\"", "Pilsner")),
            (0..=12).map(|i| 42.0 - f64::from(i)).collect(),
        ),
        tap("Tap 2", Some(("Schwarzbier", "Stout")), vec![3.0, 3.0]),
        tap("Tap 3", None, vec![]),
    ]
}

pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether the poppler tools are here; outside CI a test without them prints why it skipped.
pub fn poppler() -> bool {
    let ok = Command::new("pdftotext").arg("-v").output().is_ok()
        && Command::new("pdftoppm").arg("-v").output().is_ok()
        && Command::new("pdfinfo").arg("-v").output().is_ok();
    assert!(
        ok || !ci(),
        "CI=true but poppler-utils (pdftotext, pdftoppm, pdfinfo) is missing"
    );
    if !ok {
        eprintln!("skipped: poppler-utils not installed");
    }
    ok
}

/// `pdftotext -layout` of a PDF file.
pub fn pdf_text(path: &Path) -> String {
    let out = Command::new("pdftotext")
        .args(["-layout", path.to_str().unwrap(), "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The page count `pdfinfo` reads.
pub fn pdf_pages(path: &Path) -> u32 {
    let out = Command::new("pdfinfo").arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Renders page 1 to `{prefix}-1.png` with `pdftoppm` and returns the PNG path.
pub fn pdf_png(path: &Path, prefix: &Path) -> std::path::PathBuf {
    let out = Command::new("pdftoppm")
        .args(["-png", "-r", "100", "-f", "1", "-l", "1"])
        .arg(path)
        .arg(prefix)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = prefix.parent().unwrap();
    let stem = prefix.file_name().unwrap().to_str().unwrap();
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(stem) && Path::new(n).extension().is_some_and(|e| e == "png")
            })
        })
        .unwrap()
}
