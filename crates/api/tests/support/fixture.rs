//! The data every API test, the schemathesis run and the benchmark start from: account `acme`
//! with a 24-tap bar `loc-001` (scales, a tapped keg with three hours of readings, alerts, a
//! command), a second bar `loc-002`, users of every role (one limited to `loc-002`), and a
//! second account `other` whose admin must never see any of it.
//!
//! Shared by `tests/` (as a module) and `examples/serve_fixture.rs` (by path), so both run
//! against the same bar.

use scalesense_api::auth::password::{PasswordCost, Passwords};
use scalesense_api::auth::secrets;
use scalesense_store::{
    AccountId, Alert, AlertState, Beer, BeerId, DeviceId, IngestReading, KegId, LocationFields,
    LocationId, NewApiToken, NewCommand, NewDevice, NewKeg, NewUser, RecordId, Role, Severity,
    Store, StoreError, TapId, Units,
};
use serde_json::json;

/// 2026-03-18 12:00:00 UTC: "now" for every fixture.
pub const T0: i64 = 1_773_835_200_000;
/// Every fixture user's password.
pub const PASSWORD: &str = "correct horse battery";
const MIN: i64 = 60_000;

/// Ids and secrets of the seeded data.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub acme: AccountId,
    pub other: AccountId,
    pub loc: LocationId,
    pub loc2: LocationId,
    pub other_loc: LocationId,
    /// An admin API token of `acme`.
    pub admin_token: String,
}

pub fn id<T: for<'a> TryFrom<&'a str>>(s: &str) -> T
where
    for<'a> <T as TryFrom<&'a str>>::Error: std::fmt::Debug,
{
    T::try_from(s).expect("fixture id")
}

fn tap(loc: &LocationId, n: u16) -> TapId {
    TapId::new(loc, n).expect("fixture tap id")
}

async fn location(
    store: &dyn Store,
    account: &AccountId,
    loc: &LocationId,
    name: &str,
    units: Units,
    taps: u16,
) -> Result<(), StoreError> {
    store
        .create_location(
            account,
            loc,
            &LocationFields {
                name: name.into(),
                address: "1 Quay Street".into(),
                time_zone: "Europe/Dublin".into(),
                units,
                settings: json!({}),
            },
            T0 - 30 * 24 * 60 * MIN,
        )
        .await?;
    for n in 1..=taps {
        store
            .create_tap(account, loc, n, &format!("Tap {n}"))
            .await?;
    }
    Ok(())
}

async fn device(
    store: &dyn Store,
    account: &AccountId,
    device: &str,
    loc: &LocationId,
    on_tap: Option<&TapId>,
) -> Result<(), StoreError> {
    let device_id: DeviceId = id(device);
    store
        .register_device(
            account,
            &NewDevice {
                id: device_id.clone(),
                location_id: Some(loc.clone()),
                fw_version: Some("1.4.2".into()),
                created_at: T0 - 20 * 24 * 60 * MIN,
            },
        )
        .await?;
    if let Some(tap) = on_tap {
        store.assign_device(account, &device_id, Some(tap)).await?;
    }
    Ok(())
}

async fn user(
    store: &dyn Store,
    passwords: &Passwords,
    account: &AccountId,
    user: &str,
    email: &str,
    role: Role,
    allowed: Option<Vec<LocationId>>,
) -> Result<(), StoreError> {
    store
        .create_user(
            account,
            &NewUser {
                id: id(user),
                email: email.into(),
                password_hash: passwords.hash(PASSWORD).expect("hash"),
                role,
                allowed_locations: allowed,
                created_at: T0 - MIN,
            },
        )
        .await?;
    Ok(())
}

/// Seeds the fixture into an empty store.
pub async fn seed(store: &dyn Store) -> Result<Fixture, StoreError> {
    let acme: AccountId = id("acme");
    let other: AccountId = id("other");
    let loc: LocationId = id("loc-001");
    let loc2: LocationId = id("loc-002");
    let other_loc: LocationId = id("loc-901");
    store.create_account(&acme, "Acme Taphouses", T0).await?;
    store.create_account(&other, "Other Bars", T0).await?;
    location(store, &acme, &loc, "Acme Quay", Units::Metric, 24).await?;
    location(store, &acme, &loc2, "Acme Dock", Units::Imperial, 2).await?;
    location(store, &other, &other_loc, "Other Inn", Units::Metric, 1).await?;

    for n in 1..=24u16 {
        device(
            store,
            &acme,
            &format!("SCALE-{n:04}"),
            &loc,
            Some(&tap(&loc, n)),
        )
        .await?;
    }
    device(store, &acme, "SCALE-0030", &loc, None).await?;
    device(store, &acme, "SCALE-0201", &loc2, Some(&tap(&loc2, 1))).await?;
    device(
        store,
        &other,
        "SCALE-9001",
        &other_loc,
        Some(&tap(&other_loc, 1)),
    )
    .await?;

    beers_and_kegs(store, &acme, &other, &loc, &other_loc).await?;
    activity(store, &acme, &loc).await?;
    let admin_token = people(store, &acme, &other, &loc2).await?;
    Ok(Fixture {
        acme,
        other,
        loc,
        loc2,
        other_loc,
        admin_token,
    })
}

async fn beers_and_kegs(
    store: &dyn Store,
    acme: &AccountId,
    other: &AccountId,
    loc: &LocationId,
    other_loc: &LocationId,
) -> Result<(), StoreError> {
    let guinness: BeerId = id("guinness-draught");
    store
        .create_library_beer(&Beer {
            id: guinness.clone(),
            location_id: None,
            name: "Guinness Draught".into(),
            brewery: "Guinness".into(),
            style: "Stout".into(),
            abv: 4.2,
            specific_gravity: 1.014,
        })
        .await?;
    store
        .set_default_keg_weight(&guinness, "half_barrel", 73.25, 13.15)
        .await?;
    store
        .create_custom_beer(
            acme,
            &Beer {
                id: id("loc-001#house-ipa"),
                location_id: Some(loc.clone()),
                name: "House IPA".into(),
                brewery: "Acme".into(),
                style: "IPA".into(),
                abv: 6.5,
                specific_gravity: 1.013,
            },
        )
        .await?;
    store
        .create_custom_beer(
            other,
            &Beer {
                id: id("loc-901#their-ale"),
                location_id: Some(other_loc.clone()),
                name: "Their Ale".into(),
                brewery: "Other".into(),
                style: "Ale".into(),
                abv: 5.0,
                specific_gravity: 1.01,
            },
        )
        .await?;

    let tap1 = tap(loc, 1);
    for (keg, tapped) in [("keg-fixture-tapped", true), ("keg-fixture-new", false)] {
        let keg_id: KegId = id(keg);
        store
            .create_keg(
                acme,
                &NewKeg {
                    id: keg_id.clone(),
                    location_id: loc.clone(),
                    beer_id: guinness.clone(),
                    keg_type: "half_barrel".into(),
                    full_kg: 73.25,
                    empty_kg: 13.15,
                    specific_gravity: 1.014,
                    created_at: T0 - 4 * 60 * MIN,
                },
            )
            .await?;
        if tapped {
            store
                .tap_keg(acme, &keg_id, &tap1, T0 - 3 * 60 * MIN - MIN)
                .await?;
            store.set_tap_beer(acme, &tap1, Some(&guinness)).await?;
        }
    }
    Ok(())
}

/// Readings on tap 1, two alerts and a command.
async fn activity(store: &dyn Store, acme: &AccountId, loc: &LocationId) -> Result<(), StoreError> {
    // Three hours of readings on tap 1, one every five minutes, pouring steadily.
    let readings: Vec<IngestReading> = (0..36i64)
        .map(|i| IngestReading {
            device_id: id("SCALE-0001"),
            boot: 1,
            seq: i,
            ts: T0 - 3 * 60 * MIN + i * 5 * MIN,
            weight_kg: 60.0 - i as f64 * 0.25,
            level_pct: 78.0 - i as f64 * 0.4,
            battery_v: Some(3.9),
            battery_pct: Some(80.0 - i as f64 * 0.05),
            rssi: Some(-60),
            stable: true,
            tare_status: Some("complete".into()),
        })
        .collect();
    store.ingest_batch(&readings).await?;

    for (entity, kind, state) in [
        ("loc-001#TAP#02", "low_keg", AlertState::Active),
        ("SCALE-0003", "low_battery", AlertState::Firing),
    ] {
        store
            .fire_alert(
                acme,
                &Alert {
                    location_id: loc.clone(),
                    kind: kind.into(),
                    entity: entity.into(),
                    severity: Severity::Warning,
                    state,
                    fired_at: T0 - 10 * MIN,
                    updated_at: T0 - 10 * MIN,
                    acknowledged_by: None,
                    acknowledged_at: None,
                    context: json!({"level_pct": 15.0}),
                },
            )
            .await?;
    }
    store
        .create_command(
            acme,
            &NewCommand {
                id: id("cmd-fixture-1"),
                device_id: id("SCALE-0001"),
                name: "identify".into(),
                params: json!({}),
                issued_by: "fixture".into(),
                issued_at: T0 - MIN,
                expires_at: T0 + 9 * MIN,
            },
        )
        .await?;
    Ok(())
}

/// Users of every role, and an admin API token (returned).
async fn people(
    store: &dyn Store,
    acme: &AccountId,
    other: &AccountId,
    loc2: &LocationId,
) -> Result<String, StoreError> {
    let passwords = Passwords::new(PasswordCost::TEST_ONLY).expect("test cost");
    for (uid, email, role, allowed) in [
        ("usr-staff", "staff@acme.test", Role::Staff, None),
        ("usr-manager", "manager@acme.test", Role::Manager, None),
        ("usr-admin", "admin@acme.test", Role::Admin, None),
        (
            "usr-restricted",
            "restricted@acme.test",
            Role::Staff,
            Some(vec![loc2.clone()]),
        ),
        ("usr-victim", "victim@acme.test", Role::Staff, None),
    ] {
        user(store, &passwords, acme, uid, email, role, allowed).await?;
    }
    user(
        store,
        &passwords,
        other,
        "usr-other-admin",
        "admin@other.test",
        Role::Admin,
        None,
    )
    .await?;

    let admin_token = secrets::new_api_token();
    store
        .create_api_token(
            acme,
            &NewApiToken {
                id: RecordId::try_from("tok-fixture-admin").expect("id"),
                token_hash: secrets::token_hash(&admin_token),
                name: "fixture admin".into(),
                role: Role::Admin,
                created_at: T0 - MIN,
            },
        )
        .await?;
    Ok(admin_token)
}
