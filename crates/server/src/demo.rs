//! The demo bar `scalesense up` creates on first run: account "Demo Taphouse", location
//! `loc-001` in New York (imperial units), one tap per simulated scale with a beer of its own
//! style and a tapped keg of a mix of keg types, the scales `SCALE-0001…` on those taps, and an
//! admin user.
//!
//! Idempotent: every record is created only if it is missing, so a second run (or a run after a
//! crash half-way) completes the set and changes nothing that exists. The admin password is
//! hashed with Argon2id here; the store only ever sees the hash, and a generated password is
//! returned once to be shown to the person who started the server, never logged.

use argon2::{Argon2, PasswordHasher};
use rand::distr::Alphanumeric;
use rand::{Rng, TryRngCore};
use scalesense_domain::keg::KegType;
use scalesense_proto::{DeviceId, IdError, LocationId, TapId};
use scalesense_store::{
    AccountId, Beer, BeerId, KegId, LocationFields, Millis, NewDevice, NewKeg, NewUser, Role,
    Store, StoreError, StoreIdError, Units, UserId,
};

/// The demo account.
pub const ACCOUNT: &str = "demo";
/// The demo location (the simulator's default).
pub const LOCATION: &str = "loc-001";
/// The demo admin's e-mail.
pub const ADMIN_EMAIL: &str = "admin@demo.local";
/// The most scales (and taps) the demo creates; device ids have four digits.
pub const MAX_SCALES: u16 = 9999;

/// Beers on the demo taps: name, style, ABV %, specific gravity (seed 002's values for the
/// styles it names; the others from the same range).
const BEERS: [(&str, &str, f64, f64); 12] = [
    ("Lantern Hazy IPA", "IPA", 6.8, 1.013),
    ("Harbour Dry Stout", "Stout", 4.2, 1.014),
    ("Boardwalk Lager", "Lager", 4.8, 1.010),
    ("Stoop Pale Ale", "Pale Ale", 5.6, 1.012),
    ("Bridge Pilsner", "Pilsner", 5.0, 1.009),
    ("Gowanus Sour", "Sour", 4.5, 1.008),
    ("Ferry Porter", "Porter", 5.8, 1.014),
    ("Sunset Wheat", "Wheat", 5.2, 1.011),
    ("Corner Light Lager", "Light Lager", 4.0, 1.007),
    ("Red Hook Amber", "Amber Ale", 5.4, 1.012),
    ("Double Dutch IPA", "Double IPA", 8.2, 1.016),
    ("Pier Kölsch", "Kölsch", 4.9, 1.009),
];

/// Why the demo data could not be created.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("demo id: {0}")]
    StoreId(#[from] StoreIdError),
    #[error("demo id: {0}")]
    Id(#[from] IdError),
    #[error("hashing the admin password: {0}")]
    Password(String),
    #[error("--scales must be between 1 and {MAX_SCALES}, not {0}")]
    Scales(u16),
}

/// What `ensure` found or made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoOutcome {
    /// The demo account did not exist before this run.
    pub created: bool,
    pub admin_email: String,
    /// The admin password, when this run generated it (shown once, stored only hashed).
    pub generated_password: Option<String>,
}

/// The id of the scale on demo tap `n` (1-based): `SCALE-0001`…
pub fn device_id(n: u16) -> Result<DeviceId, IdError> {
    DeviceId::try_from(format!("SCALE-{n:04}").as_str())
}

/// Creates whatever part of the demo bar with `scales` taps is missing.
pub async fn ensure(
    store: &dyn Store,
    scales: u16,
    admin_password: Option<&str>,
    now: Millis,
) -> Result<DemoOutcome, DemoError> {
    if scales == 0 || scales > MAX_SCALES {
        return Err(DemoError::Scales(scales));
    }
    let account = AccountId::try_from(ACCOUNT)?;
    let location = LocationId::try_from(LOCATION)?;
    let created = existing(store.create_account(&account, "Demo Taphouse", now).await)?;
    existing(
        store
            .create_location(
                &account,
                &location,
                &LocationFields {
                    name: "Demo Taphouse".into(),
                    address: "1 Front Street, Brooklyn, NY 11201".into(),
                    time_zone: "America/New_York".into(),
                    units: Units::Imperial,
                    settings: serde_json::json!({}),
                },
                now,
            )
            .await,
    )?;
    for n in 1..=scales {
        ensure_tap(store, &account, &location, n, now).await?;
    }
    let generated_password = ensure_admin(store, &account, admin_password, now).await?;
    if created {
        tracing::info!(scales, "created the demo bar");
    }
    Ok(DemoOutcome {
        created,
        admin_email: ADMIN_EMAIL.to_owned(),
        generated_password,
    })
}

/// `Ok(true)` when the record was created, `Ok(false)` when it already existed.
fn existing<T>(result: Result<T, StoreError>) -> Result<bool, StoreError> {
    match result {
        Ok(_) => Ok(true),
        Err(StoreError::Conflict { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

async fn ensure_tap(
    store: &dyn Store,
    account: &AccountId,
    location: &LocationId,
    n: u16,
    now: Millis,
) -> Result<(), DemoError> {
    let index = usize::from(n - 1);
    let (name, style, abv, sg) = BEERS[index % BEERS.len()];
    let keg_type = &KegType::REFERENCE[index % KegType::REFERENCE.len()];
    let weights = keg_type.reference_weights();
    let (full_kg, empty_kg) = (weights.full().0, weights.empty().0);

    let beer_id = BeerId::try_from(format!("demo-beer-{:02}", index % BEERS.len() + 1).as_str())?;
    existing(
        store
            .create_library_beer(&Beer {
                id: beer_id.clone(),
                location_id: None,
                name: name.into(),
                brewery: "Demo Brewing Co.".into(),
                style: style.into(),
                abv,
                specific_gravity: sg,
            })
            .await,
    )?;
    store
        .set_default_keg_weight(&beer_id, keg_type.name(), full_kg, empty_kg)
        .await?;

    let tap = TapId::new(location, n)?;
    existing(
        store
            .create_tap(account, location, n, &format!("Tap {n}"))
            .await,
    )?;
    let device = device_id(n)?;
    existing(
        store
            .register_device(
                account,
                &NewDevice {
                    id: device.clone(),
                    location_id: Some(location.clone()),
                    fw_version: None,
                    created_at: now,
                },
            )
            .await,
    )?;
    if store.device(account, &device).await?.tap_id.as_ref() != Some(&tap) {
        store.assign_device(account, &device, Some(&tap)).await?;
    }
    if store.tap(account, &tap).await?.keg_id.is_none() {
        let keg = KegId::try_from(format!("keg-demo-{n:04}").as_str())?;
        existing(
            store
                .create_keg(
                    account,
                    &NewKeg {
                        id: keg.clone(),
                        location_id: location.clone(),
                        beer_id: beer_id.clone(),
                        keg_type: keg_type.name().to_owned(),
                        full_kg,
                        empty_kg,
                        specific_gravity: sg,
                        created_at: now,
                    },
                )
                .await,
        )?;
        store.tap_keg(account, &keg, &tap, now).await?;
        store.set_tap_beer(account, &tap, Some(&beer_id)).await?;
    }
    Ok(())
}

/// Creates the admin user if missing; returns the password when it was generated.
async fn ensure_admin(
    store: &dyn Store,
    account: &AccountId,
    password: Option<&str>,
    now: Millis,
) -> Result<Option<String>, DemoError> {
    if store.user_by_email(account, ADMIN_EMAIL).await?.is_some() {
        return Ok(None);
    }
    let (password, generated) = match password {
        Some(p) => (p.to_owned(), false),
        None => (generate_password(), true),
    };
    let hash = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| DemoError::Password(e.to_string()))?;
    store
        .create_user(
            account,
            &NewUser {
                id: UserId::try_from("admin")?,
                email: ADMIN_EMAIL.into(),
                password_hash: hash.to_string(),
                role: Role::Admin,
                allowed_locations: None,
                created_at: now,
            },
        )
        .await?;
    Ok(generated.then_some(password))
}

/// 20 random letters and digits (≈ 119 bits).
fn generate_password() -> String {
    rand::rngs::OsRng
        .unwrap_err()
        .sample_iter(&Alphanumeric)
        .take(20)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::{PasswordHash, PasswordVerifier};

    #[test]
    fn generated_passwords_are_long_and_differ() {
        let (a, b) = (generate_password(), generate_password());
        assert_eq!(a.len(), 20);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn device_ids_match_the_simulator() {
        assert_eq!(device_id(1).unwrap().as_str(), "SCALE-0001");
        assert_eq!(device_id(12).unwrap().as_str(), "SCALE-0012");
    }

    #[tokio::test]
    async fn the_demo_bar_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = scalesense_store::connect(dir.path().join("demo.db").to_str().unwrap())
            .await
            .unwrap();
        let first = ensure(store.as_ref(), 3, Some("correct horse"), 1_700_000_000_000)
            .await
            .unwrap();
        assert!(first.created);
        assert_eq!(first.generated_password, None);
        let again = ensure(store.as_ref(), 3, None, 1_700_000_100_000)
            .await
            .unwrap();
        assert!(!again.created);
        // The admin exists, so nothing is generated on a second run.
        assert_eq!(again.generated_password, None);

        let account = AccountId::try_from(ACCOUNT).unwrap();
        let location = LocationId::try_from(LOCATION).unwrap();
        let taps = store.taps(&account, &location).await.unwrap();
        assert_eq!(taps.len(), 3);
        for (i, view) in taps.iter().enumerate() {
            let n = u16::try_from(i + 1).unwrap();
            assert_eq!(view.tap.id, TapId::new(&location, n).unwrap());
            assert_eq!(view.tap.device_id, Some(device_id(n).unwrap()));
            assert!(view.tap.keg_id.is_some(), "tap {n} has a keg");
            assert!(view.tap.beer_id.is_some(), "tap {n} has a beer");
        }
        let admin = store
            .user_by_email(&account, ADMIN_EMAIL)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(admin.role, Role::Admin);
        let hash = PasswordHash::new(&admin.password_hash).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &hash)
                .is_ok()
        );
        assert!(Argon2::default().verify_password(b"wrong", &hash).is_err());
    }
}
