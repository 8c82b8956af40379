//! What a scale's answer to a command changes beyond the command itself (issue #8, seed 002):
//! a tare answer becomes the keg's tare record (with the diagnostic copy on the scale's
//! telemetry and, after a full tare, the beer's keg weight), a calibration answer becomes the
//! scale's current calibration with its drift, and each is announced on the event bus.
//!
//! The work is split in two so that an effect runs at most once. [`plan`] only reads: it finds
//! the account, the command and what the answer should change (the keg on the scale's tap, the
//! previous calibration), or why it cannot be applied — that reason goes into the command's
//! stored result (`effect_error`) so the person who sent it can see it. The pipeline then
//! records the answer (`complete_command`, where a duplicate answer is refused), and only after
//! that [`apply`] writes. A duplicate answer therefore never reaches [`apply`].
//!
//! What this module must never do: apply an effect for an answer that was not recorded as new,
//! panic on anything a scale sent, or invent a weight the scale did not report.

use scalesense_domain::units::Kilograms;
use scalesense_proto::{CommandId, DeviceId, LocationId, TapId};
use scalesense_store::{
    AccountId, CommandState, KegId, Millis, NewCalibration, NewTare, Store, StoreError, TareKind,
};
use serde_json::Value;

use crate::events::Event;

/// Pounds per kilogram's reciprocal: counts per pound ÷ this = counts per kilogram.
const KG_PER_LB: f64 = 0.453_592_37;

/// How a recorded calibration is described.
pub const CALIBRATION_METHOD: &str = "known_weight";

/// What a command's answer will change once it is recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Nothing beyond the command's own state (identify, maintenance, set_config, reboot, a
    /// refusal by the scale).
    Nothing,
    Tare(TarePlan),
    Calibrate(CalibrationPlan),
    /// The answer should have changed something but cannot: the reason is stored with it.
    Impossible(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct TarePlan {
    pub location: LocationId,
    pub tap: TapId,
    pub keg: KegId,
    pub kind: TareKind,
    pub weight_kg: f64,
    /// Raw counts at that weight through the calibration the server knows (0 when it knows
    /// none): the contract's answer carries the weight, not the counts.
    pub raw: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationPlan {
    pub location: Option<LocationId>,
    pub tap: Option<TapId>,
    /// Counts per kilogram.
    pub scale_factor: f64,
    pub zero_offset: i64,
    pub known_weight_kg: Option<f64>,
    pub drift_pct: Option<f64>,
}

/// What [`plan`] found out about an answer.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per command answer, moved once right after it is made"
)]
pub enum Planned {
    /// The device or the command is unknown: nothing to record.
    Unknown,
    /// The command was already answered (or expired): the answer is a duplicate.
    AlreadyAnswered,
    /// A new answer: record it with `result`, then apply `effect`.
    New {
        account: AccountId,
        /// The device's location, where the answer's events go.
        location: Option<LocationId>,
        /// The command's name (`tare_full`, …).
        name: String,
        issued_by: String,
        result: Value,
        effect: Effect,
    },
}

/// Reads what answering command `id` of `device` with (`ok`, `result`) would change. Writes
/// nothing.
pub async fn plan(
    store: &dyn Store,
    device: &DeviceId,
    id: &CommandId,
    ok: bool,
    result: &Value,
) -> Result<Planned, StoreError> {
    let Some(owner) = store.device_owner(device).await? else {
        return Ok(Planned::Unknown);
    };
    let account = owner.account_id.clone();
    let command = match store.command(&account, id).await {
        Ok(command) if command.device_id == *device => command,
        Ok(_) | Err(StoreError::NotFound { .. }) => return Ok(Planned::Unknown),
        Err(e) => return Err(e),
    };
    if !matches!(
        command.state,
        CommandState::Pending | CommandState::Delivered
    ) {
        return Ok(Planned::AlreadyAnswered);
    }
    let effect = if ok {
        match command.name.as_str() {
            "tare_empty" => plan_tare(store, &account, &owner, TareKind::Empty, result).await?,
            "tare_full" => plan_tare(store, &account, &owner, TareKind::Full, result).await?,
            "calibrate" => plan_calibration(store, &account, &owner, result).await?,
            _ => Effect::Nothing,
        }
    } else {
        Effect::Nothing
    };
    let mut result = result.clone();
    if let Effect::Impossible(reason) = &effect {
        tracing::warn!(device_id = %device, command_id = %id, command = command.name, reason, "the scale's answer cannot be applied");
        match &mut result {
            Value::Object(map) => {
                map.insert("effect_error".into(), Value::String(reason.clone()));
            }
            other => *other = serde_json::json!({ "effect_error": reason }),
        }
    }
    Ok(Planned::New {
        account,
        location: owner.location_id.clone(),
        name: command.name,
        issued_by: command.issued_by,
        result,
        effect,
    })
}

fn number(result: &Value, field: &str) -> Option<f64> {
    result
        .get(field)
        .and_then(Value::as_f64)
        .filter(|v| v.is_finite())
}

async fn plan_tare(
    store: &dyn Store,
    account: &AccountId,
    device: &scalesense_store::Device,
    kind: TareKind,
    result: &Value,
) -> Result<Effect, StoreError> {
    let field = match kind {
        TareKind::Empty => "empty_lbs",
        TareKind::Full => "full_lbs",
    };
    let Some(lbs) = number(result, field).or_else(|| number(result, "weight_lbs")) else {
        return Ok(Effect::Impossible(format!(
            "the scale's answer has no {field}: no tare recorded"
        )));
    };
    let (Some(location), Some(tap)) = (&device.location_id, &device.tap_id) else {
        return Ok(Effect::Impossible(format!(
            "scale {} is on no tap: no keg to record the tare on",
            device.id
        )));
    };
    let tap_row = store.tap(account, tap).await?;
    let Some(keg) = tap_row.keg_id else {
        return Ok(Effect::Impossible(format!(
            "no keg is tapped on {tap}: the tare was not recorded"
        )));
    };
    let weight_kg = Kilograms::from_lbs(lbs).0;
    let raw = store
        .calibration(account, &device.id)
        .await?
        .map_or(0, |c| {
            (c.zero_offset as f64 + weight_kg * c.scale_factor).round() as i64
        });
    Ok(Effect::Tare(TarePlan {
        location: location.clone(),
        tap: tap.clone(),
        keg,
        kind,
        weight_kg,
        raw,
    }))
}

async fn plan_calibration(
    store: &dyn Store,
    account: &AccountId,
    device: &scalesense_store::Device,
    result: &Value,
) -> Result<Effect, StoreError> {
    let (Some(per_lb), Some(zero)) = (
        number(result, "scale_factor"),
        result.get("zero_offset").and_then(Value::as_i64),
    ) else {
        return Ok(Effect::Impossible(
            "the scale's answer has no scale_factor or zero_offset: no calibration recorded".into(),
        ));
    };
    if per_lb <= 0.0 {
        return Ok(Effect::Impossible(format!(
            "the scale reported a scale factor of {per_lb}: no calibration recorded"
        )));
    }
    let scale_factor = per_lb / KG_PER_LB;
    let previous = store.calibration(account, &device.id).await?;
    let drift_pct = match previous {
        Some(p) if p.scale_factor > 0.0 => Some(drift(p.scale_factor, scale_factor)),
        _ => number(result, "drift_pct").map(|d| d.clamp(-100.0, 100.0)),
    };
    Ok(Effect::Calibrate(CalibrationPlan {
        location: device.location_id.clone(),
        tap: device.tap_id.clone(),
        scale_factor,
        zero_offset: zero,
        known_weight_kg: number(result, "weight_lbs").map(|lbs| Kilograms::from_lbs(lbs).0),
        drift_pct,
    }))
}

/// Percent change of the scale factor, bounded to ±100 % as the API stores drift.
pub fn drift(previous: f64, next: f64) -> f64 {
    ((next - previous) / previous * 100.0).clamp(-100.0, 100.0)
}

/// What [`apply`] did, for the pipeline: events to publish and a calibration for the alert
/// engine.
#[derive(Debug, Default)]
pub struct Applied {
    pub events: Vec<Event>,
    /// `(account, device, drift)` of a recorded calibration.
    pub calibration: Option<(AccountId, DeviceId, Option<f64>)>,
}

/// Writes the effect of an answer that was just recorded as new.
pub async fn apply(
    store: &dyn Store,
    account: &AccountId,
    device: &DeviceId,
    by: &str,
    effect: Effect,
    at: Millis,
) -> Result<Applied, StoreError> {
    let mut applied = Applied::default();
    match effect {
        Effect::Nothing | Effect::Impossible(_) => {}
        Effect::Tare(t) => {
            let outcome = store
                .record_tare(
                    account,
                    &NewTare {
                        keg_id: t.keg.clone(),
                        device_id: device.clone(),
                        kind: t.kind,
                        raw: t.raw,
                        weight_kg: t.weight_kg,
                        by: by.to_owned(),
                        at,
                    },
                )
                .await?;
            tracing::info!(device_id = %device, keg_id = %t.keg, kind = t.kind.as_str(), weight_kg = t.weight_kg, "tare recorded");
            applied.events.push(Event::TareUpdated {
                location_id: t.location,
                tap_id: t.tap,
                device_id: device.clone(),
                keg_id: t.keg,
                kind: t.kind,
                weight_kg: t.weight_kg,
                beer_weight: outcome.beer_weight,
                at,
            });
        }
        Effect::Calibrate(c) => {
            let recorded = store
                .record_calibration(
                    account,
                    &NewCalibration {
                        device_id: device.clone(),
                        scale_factor: c.scale_factor,
                        zero_offset: c.zero_offset,
                        method: CALIBRATION_METHOD.into(),
                        known_weight_kg: c.known_weight_kg,
                        drift_pct: c.drift_pct,
                        by: by.to_owned(),
                        at,
                    },
                )
                .await?;
            tracing::info!(device_id = %device, scale_factor = recorded.scale_factor, drift_pct = ?recorded.drift_pct, "calibration recorded");
            if let Some(location) = c.location {
                applied.events.push(Event::CalibrationUpdated {
                    location_id: location,
                    device_id: device.clone(),
                    tap_id: c.tap,
                    scale_factor: recorded.scale_factor,
                    drift_pct: recorded.drift_pct,
                    at,
                });
            }
            applied.calibration = Some((account.clone(), device.clone(), recorded.drift_pct));
        }
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use scalesense_store::{NewCommand, SqliteStore};
    use serde_json::json;

    use super::*;

    const NOW: Millis = 1_700_000_000_000;

    /// The demo bar with one tap, and a `name` command to its scale.
    async fn store_with_command(name: &str) -> (tempfile::TempDir, SqliteStore, AccountId) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        crate::demo::ensure(&store, 1, Some("pw"), NOW)
            .await
            .unwrap();
        let account = AccountId::try_from(crate::demo::ACCOUNT).unwrap();
        store
            .create_command(
                &account,
                &NewCommand {
                    id: "cmd-1".try_into().unwrap(),
                    device_id: "SCALE-0001".try_into().unwrap(),
                    name: name.into(),
                    params: json!({}),
                    issued_by: "usr-1".into(),
                    issued_at: NOW,
                    expires_at: NOW + 600_000,
                },
            )
            .await
            .unwrap();
        (dir, store, account)
    }

    #[tokio::test]
    async fn a_tare_without_a_keg_on_the_tap_is_refused_with_its_reason() {
        let (_dir, store, account) = store_with_command("tare_empty").await;
        let keg = KegId::try_from("keg-demo-0001").unwrap();
        store.kick_keg(&account, &keg, NOW + 1).await.unwrap();
        let device = DeviceId::try_from("SCALE-0001").unwrap();
        let answer = json!({ "empty_lbs": 29.0, "weight_lbs": 29.0 });
        let planned = plan(&store, &device, &"cmd-1".try_into().unwrap(), true, &answer)
            .await
            .unwrap();
        let Planned::New { effect, result, .. } = planned else {
            panic!("{planned:?}")
        };
        assert!(matches!(effect, Effect::Impossible(_)), "{effect:?}");
        assert_eq!(result["empty_lbs"], 29.0, "the scale's answer is kept");
        assert!(
            result["effect_error"]
                .as_str()
                .unwrap()
                .contains("no keg is tapped"),
            "{result}"
        );
        let applied = apply(&store, &account, &device, "usr-1", effect, NOW)
            .await
            .unwrap();
        assert!(applied.events.is_empty());
        assert!(store.tare_records(&account, &keg).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_unknown_or_answered_command_has_no_effect() {
        let (_dir, store, _account) = store_with_command("tare_empty").await;
        let device = DeviceId::try_from("SCALE-0001").unwrap();
        let unknown = plan(
            &store,
            &device,
            &"cmd-2".try_into().unwrap(),
            true,
            &json!({}),
        )
        .await
        .unwrap();
        assert_eq!(unknown, Planned::Unknown);
        let other = DeviceId::try_from("SCALE-0404").unwrap();
        let stranger = plan(
            &store,
            &other,
            &"cmd-1".try_into().unwrap(),
            true,
            &json!({}),
        )
        .await
        .unwrap();
        assert_eq!(stranger, Planned::Unknown);
        store
            .complete_command(&device, &"cmd-1".try_into().unwrap(), true, &json!({}), NOW)
            .await
            .unwrap();
        let again = plan(
            &store,
            &device,
            &"cmd-1".try_into().unwrap(),
            true,
            &json!({}),
        )
        .await
        .unwrap();
        assert_eq!(again, Planned::AlreadyAnswered);
    }

    #[test]
    fn drift_is_the_bounded_percent_change() {
        assert!((drift(20_000.0, 20_500.0) - 2.5).abs() < 1e-9);
        assert!((drift(20_000.0, 19_600.0) + 2.0).abs() < 1e-9);
        assert!((drift(1.0, 1_000.0) - 100.0).abs() < 1e-9);
    }
}
