//! The command machine: a command in, a response and an effect out, nothing done behind it.
//!
//! Input is the command name (from the topic or the BLE characteristic), the payload bytes,
//! the time and what the scale currently knows. Output is a [`Decision`]: ignore it (an id
//! already handled — a retained command redelivered after a reconnect or reboot), or answer
//! with a [`Response`] carrying the same id plus an [`Effect`] for the caller to apply.
//!
//! Rules that must hold: a command whose `expires_at` has passed is answered with an error and
//! never run; so is one that arrives while the scale does not know the time (it cannot tell
//! whether it expired); an id seen before is never run again; a malformed command that still
//! names an id gets an error response so the server can clear it. This module never touches
//! settings storage, the radio or the clock: the caller passes time in and applies effects.

use core::fmt::{self, Write};

use heapless::String;
use scalesense_proto::payload::{Command, Response, ResponseResult};
use scalesense_proto::{CONTRACT_VERSION, CommandId, CommandName, ContractError};
use serde::Deserialize;

use crate::calibration::{Calibration, MIN_TARE_SPAN_LBS, TareRecord};
use crate::settings::Settings;

/// How long `identify` flashes when the command gives no duration (seconds).
pub const DEFAULT_IDENTIFY_S: u32 = 10;

/// Longest error text a response carries (the contract's limit).
pub const ERROR_LEN: usize = scalesense_proto::payload::MAX_ERROR_LEN;

/// The filtered state of the load cell at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// Monotonic ms of the sample this came from.
    pub at_ms: u64,
    /// Filtered raw counts (median, then moving average).
    pub raw: f64,
    /// Pounds through the current calibration, temperature-compensated.
    pub weight_lbs: f64,
    pub stable: bool,
    pub temp_c: Option<f64>,
}

/// Everything a command may look at.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Monotonic ms, for effects that last a while (identify, maintenance).
    pub now_ms: u64,
    /// Epoch ms, when the scale knows the time; expiry is judged on it.
    pub epoch_ms: Option<u64>,
    pub settings: &'a Settings,
    pub measurement: Option<&'a Measurement>,
}

/// What the caller must do after answering. Settings changes are deltas; the caller
/// persists them before they take effect.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Effect {
    /// Nothing beyond sending the response.
    Nothing,
    /// Record the empty-keg tare.
    TareEmpty(TareRecord),
    /// Record the full-keg tare.
    TareFull(TareRecord),
    /// Adopt this calibration.
    Calibrate(Calibration),
    /// Change the reading interval and/or the temperature coefficient.
    Configure {
        interval_s: Option<u32>,
        temp_coeff: Option<f64>,
    },
    /// Flash the LED and show the id until this monotonic time.
    Identify {
        until_ms: u64,
    },
    /// Pause readings and stream live weight; leave by itself at `until_ms` if given.
    MaintenanceEnter {
        until_ms: Option<u64>,
    },
    MaintenanceExit,
    /// Restart once the response is delivered.
    Reboot,
}

impl Effect {
    /// `settings` with this effect's changes; unchanged for effects that are not settings.
    pub fn apply_to(&self, settings: &Settings) -> Settings {
        let mut next = settings.clone();
        match *self {
            Effect::TareEmpty(record) => next.tare.empty = Some(record),
            Effect::TareFull(record) => next.tare.full = Some(record),
            Effect::Calibrate(calibration) => next.calibration = Some(calibration),
            Effect::Configure {
                interval_s,
                temp_coeff,
            } => {
                if let Some(interval_s) = interval_s {
                    next.interval_s = interval_s;
                }
                if let Some(coeff) = temp_coeff {
                    next.temp_coeff = coeff;
                }
            }
            Effect::Nothing
            | Effect::Identify { .. }
            | Effect::MaintenanceEnter { .. }
            | Effect::MaintenanceExit
            | Effect::Reboot => {}
        }
        next
    }
}

/// The machine's verdict on one command.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "no allocator to box into; a decision is moved once, right after it is made"
)]
pub enum Decision {
    /// This id was handled before: do nothing, send nothing.
    Duplicate(CommandId),
    /// Send `response` (same id as the command) and apply `effect`.
    Respond { response: Response, effect: Effect },
}

/// Decides what to do with one command. `Err` only when the payload is so broken that it
/// names no usable id, so no response can be addressed.
pub fn handle(
    name: CommandName,
    payload: &[u8],
    ctx: &Context<'_>,
) -> Result<Decision, ContractError> {
    let decoded = scalesense_proto::decode_command_for(payload, name);
    let id = match &decoded {
        Ok(command) => command.id.clone(),
        Err(err) => id_only(payload).ok_or(*err)?,
    };
    if ctx.settings.has_seen(&id) {
        return Ok(Decision::Duplicate(id));
    }
    let command = match decoded {
        Ok(command) => command,
        Err(err) => return Ok(reject(id, format_args!("{err}"))),
    };
    let Some(epoch_ms) = ctx.epoch_ms else {
        return Ok(reject(
            id,
            format_args!("clock not set; cannot check expiry"),
        ));
    };
    if command.is_expired(epoch_ms) {
        return Ok(reject(
            id,
            format_args!("expired at {} (now {epoch_ms})", command.expires_at),
        ));
    }
    Ok(run(name, &command, ctx)
        .unwrap_or_else(|reason| reject(command.id.clone(), format_args!("{reason}"))))
}

/// Runs a valid, unexpired command; `Err` carries the reason for an error response.
fn run(name: CommandName, command: &Command, ctx: &Context<'_>) -> Result<Decision, &'static str> {
    let id = command.id.clone();
    let params = &command.params;
    let (result, effect) = match name {
        CommandName::TareEmpty | CommandName::TareFull => tare(name, ctx)?,
        CommandName::Calibrate => {
            // `validate_for` guarantees the weight for calibrate.
            let known = params.known_weight_lbs.unwrap_or_default();
            calibrate(known, ctx)?
        }
        CommandName::Identify => {
            let secs = params.duration_s.unwrap_or(DEFAULT_IDENTIFY_S);
            let until_ms = ctx.now_ms + u64::from(secs) * 1_000;
            (None, Effect::Identify { until_ms })
        }
        CommandName::MaintenanceEnter => {
            let until_ms = params
                .duration_s
                .map(|secs| ctx.now_ms + u64::from(secs) * 1_000);
            (None, Effect::MaintenanceEnter { until_ms })
        }
        CommandName::MaintenanceExit => (None, Effect::MaintenanceExit),
        CommandName::SetConfig => (
            None,
            Effect::Configure {
                interval_s: params.interval_s,
                temp_coeff: params.temp_coeff,
            },
        ),
        CommandName::Reboot => (None, Effect::Reboot),
    };
    Ok(Decision::Respond {
        response: Response {
            v: CONTRACT_VERSION,
            id,
            ok: true,
            result,
            error: None,
        },
        effect,
    })
}

type Outcome = (Option<ResponseResult>, Effect);

/// A still load, or the reason there is none.
fn steady<'a>(ctx: &Context<'a>) -> Result<&'a Measurement, &'static str> {
    let m = ctx.measurement.ok_or("no weight measured yet")?;
    if m.stable {
        Ok(m)
    } else {
        Err("load not stable; try again when it is still")
    }
}

fn tare(name: CommandName, ctx: &Context<'_>) -> Result<Outcome, &'static str> {
    let m = steady(ctx)?;
    let record = TareRecord {
        raw: crate::num::round(m.raw) as i32,
        lbs: m.weight_lbs,
    };
    let calibration = ctx.settings.calibration.unwrap_or(Calibration::nominal(0));
    let other_lbs = |r: Option<TareRecord>| r.map(|r| calibration.to_lbs(f64::from(r.raw)));
    // Contract: tare weights are reported as 0–500 lb; a hair below zero is noise.
    let lbs = m.weight_lbs.max(0.0);
    let mut result = ResponseResult {
        weight_lbs: Some(m.weight_lbs),
        ..ResponseResult::default()
    };
    if name == CommandName::TareEmpty {
        if other_lbs(ctx.settings.tare.full)
            .is_some_and(|full| full - m.weight_lbs < MIN_TARE_SPAN_LBS)
        {
            return Err("empty weight must be below the full weight");
        }
        result.empty_lbs = Some(lbs);
        Ok((Some(result), Effect::TareEmpty(record)))
    } else {
        if other_lbs(ctx.settings.tare.empty)
            .is_some_and(|empty| m.weight_lbs - empty < MIN_TARE_SPAN_LBS)
        {
            return Err("full weight must be above the empty weight");
        }
        result.full_lbs = Some(lbs);
        Ok((Some(result), Effect::TareFull(record)))
    }
}

fn calibrate(known_weight_lbs: f64, ctx: &Context<'_>) -> Result<Outcome, &'static str> {
    let current = ctx
        .settings
        .calibration
        .ok_or("no zero yet: start the scale with the platform empty")?;
    let m = steady(ctx)?;
    let outcome = current
        .calibrate(m.raw, known_weight_lbs, m.temp_c)
        .map_err(|_| "known weight reads no heavier than the empty platform")?;
    let result = ResponseResult {
        zero_offset: Some(outcome.calibration.zero_offset),
        scale_factor: Some(outcome.calibration.counts_per_lb),
        weight_lbs: Some(known_weight_lbs),
        // The contract bounds drift to ±100 %; anything beyond is reported as the bound.
        drift_pct: outcome.drift_pct.map(|d| d.clamp(-100.0, 100.0)),
        ..ResponseResult::default()
    };
    Ok((Some(result), Effect::Calibrate(outcome.calibration)))
}

fn reject(id: CommandId, reason: fmt::Arguments<'_>) -> Decision {
    Decision::Respond {
        response: Response {
            v: CONTRACT_VERSION,
            id,
            ok: false,
            result: None,
            error: Some(error_text(reason)),
        },
        effect: Effect::Nothing,
    }
}

/// Formats `reason` into the contract's bounded error string, cutting at a char boundary.
pub fn error_text(reason: fmt::Arguments<'_>) -> String<ERROR_LEN> {
    struct Truncating(String<ERROR_LEN>);
    impl Write for Truncating {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for c in s.chars() {
                if self.0.push(c).is_err() {
                    break;
                }
            }
            Ok(())
        }
    }
    let mut out = Truncating(String::new());
    // Cannot fail: the writer never reports an error.
    let _ = out.write_fmt(reason);
    out.0
}

/// The `id` of a payload that fails full decoding, so the rejection can still be addressed.
fn id_only(payload: &[u8]) -> Option<CommandId> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: CommandId,
    }
    serde_json_core::from_slice::<IdOnly>(payload)
        .ok()
        .map(|(x, _)| x.id)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::format;
    use std::string::String as StdString;

    use scalesense_proto::payload::ResponseResult;

    use super::*;

    const NOW: u64 = 1_773_835_200_000;

    fn command_json(id: &str, params: &str) -> StdString {
        format!(
            r#"{{"v":1,"id":"{id}","params":{params},"issued_at":{},"expires_at":{}}}"#,
            NOW - 60_000,
            NOW + 60_000
        )
    }

    fn calibrated() -> Settings {
        Settings {
            calibration: Some(Calibration {
                zero_offset: 10_000,
                counts_per_lb: 1_000.0,
                known_weight_lbs: Some(10.0),
                reference_temp_c: None,
            }),
            ..Settings::default()
        }
    }

    fn still(weight_lbs: f64) -> Measurement {
        Measurement {
            at_ms: 1_000,
            raw: 10_000.0 + weight_lbs * 1_000.0,
            weight_lbs,
            stable: true,
            temp_c: Some(4.0),
        }
    }

    fn ctx<'a>(settings: &'a Settings, m: Option<&'a Measurement>) -> Context<'a> {
        Context {
            now_ms: 1_000,
            epoch_ms: Some(NOW),
            settings,
            measurement: m,
        }
    }

    fn respond(d: Decision) -> (Response, Effect) {
        match d {
            Decision::Respond { response, effect } => (response, effect),
            Decision::Duplicate(id) => panic!("unexpected duplicate {id}"),
        }
    }

    fn error_of(d: Decision) -> StdString {
        let (r, effect) = respond(d);
        assert!(!r.ok);
        assert_eq!(effect, Effect::Nothing, "a rejected command has no effect");
        StdString::from(r.error.unwrap().as_str())
    }

    #[test]
    fn tare_empty_records_the_still_weight() {
        let s = calibrated();
        let m = still(22.0);
        let json = command_json("t-1", "{}");
        let (r, effect) =
            respond(handle(CommandName::TareEmpty, json.as_bytes(), &ctx(&s, Some(&m))).unwrap());
        assert!(r.ok);
        assert_eq!(r.id.as_str(), "t-1");
        assert_eq!(r.result.as_ref().unwrap().empty_lbs, Some(22.0));
        assert!(matches!(effect, Effect::TareEmpty(_)));
        let next = effect.apply_to(&s);
        assert_eq!(
            next.tare.empty,
            Some(TareRecord {
                raw: 32_000,
                lbs: 22.0
            })
        );
        assert_eq!(next.tare.full, None);
    }

    #[test]
    fn tare_full_must_be_above_empty() {
        let mut s = calibrated();
        s.tare.empty = Some(TareRecord {
            raw: 32_000,
            lbs: 22.0,
        });
        let heavy = still(87.0);
        let json = command_json("t-2", "{}");
        let (r, effect) = respond(
            handle(
                CommandName::TareFull,
                json.as_bytes(),
                &ctx(&s, Some(&heavy)),
            )
            .unwrap(),
        );
        assert_eq!(r.result.unwrap().full_lbs, Some(87.0));
        let next = effect.apply_to(&s);
        assert!(next.tare.full.is_some() && next.tare.empty.is_some());
        let light = still(22.5);
        let err = error_of(
            handle(
                CommandName::TareFull,
                json.as_bytes(),
                &ctx(&s, Some(&light)),
            )
            .unwrap(),
        );
        assert_eq!(err, "full weight must be above the empty weight");
    }

    #[test]
    fn tare_needs_a_still_load() {
        let s = calibrated();
        let json = command_json("t-3", "{}");
        let err =
            error_of(handle(CommandName::TareEmpty, json.as_bytes(), &ctx(&s, None)).unwrap());
        assert_eq!(err, "no weight measured yet");
        let moving = Measurement {
            stable: false,
            ..still(40.0)
        };
        let err = error_of(
            handle(
                CommandName::TareEmpty,
                json.as_bytes(),
                &ctx(&s, Some(&moving)),
            )
            .unwrap(),
        );
        assert!(err.starts_with("load not stable"), "{err}");
    }

    #[test]
    fn calibrate_reports_factor_and_drift() {
        let s = calibrated();
        // 20 lb reads 20 500 counts above zero: 1 025 counts/lb, 2.5 % above 1 000.
        let m = Measurement {
            raw: 30_500.0,
            ..still(20.5)
        };
        let json = command_json("c-1", r#"{"known_weight_lbs":20}"#);
        let (r, effect) =
            respond(handle(CommandName::Calibrate, json.as_bytes(), &ctx(&s, Some(&m))).unwrap());
        assert!(r.ok);
        let result = r.result.unwrap();
        assert_eq!(result.zero_offset, Some(10_000));
        assert_eq!(result.scale_factor, Some(1_025.0));
        assert_eq!(result.weight_lbs, Some(20.0));
        assert!((result.drift_pct.unwrap() - 2.5).abs() < 1e-9);
        assert!(matches!(effect, Effect::Calibrate(_)));
        let next = effect.apply_to(&s);
        let cal = next.calibration.unwrap();
        assert!((cal.counts_per_lb - 1_025.0).abs() < 1e-9);
        assert_eq!(cal.reference_temp_c, Some(4.0));
    }

    #[test]
    fn calibrate_without_zero_or_weight_is_refused() {
        let fresh = Settings::default();
        let m = still(20.0);
        let json = command_json("c-2", r#"{"known_weight_lbs":20}"#);
        let err = error_of(
            handle(
                CommandName::Calibrate,
                json.as_bytes(),
                &ctx(&fresh, Some(&m)),
            )
            .unwrap(),
        );
        assert!(err.starts_with("no zero yet"), "{err}");
        let s = calibrated();
        let json = command_json("c-3", "{}");
        let err =
            error_of(handle(CommandName::Calibrate, json.as_bytes(), &ctx(&s, Some(&m))).unwrap());
        assert!(err.contains("params.known_weight_lbs"), "{err}");
    }

    #[test]
    fn expired_commands_are_answered_and_never_run() {
        let s = calibrated();
        let m = still(22.0);
        let json = format!(
            r#"{{"v":1,"id":"old-1","params":{{"known_weight_lbs":20,"interval_s":30}},"issued_at":{},"expires_at":{}}}"#,
            NOW - 120_000,
            NOW - 1
        );
        for name in CommandName::ALL {
            let err = error_of(handle(name, json.as_bytes(), &ctx(&s, Some(&m))).unwrap());
            assert!(err.starts_with("expired at"), "{name}: {err}");
        }
        // Exactly at expires_at it still runs (expired means now > expires_at).
        let edge = format!(
            r#"{{"v":1,"id":"edge-1","issued_at":{},"expires_at":{NOW}}}"#,
            NOW - 1
        );
        let (r, _) =
            respond(handle(CommandName::Identify, edge.as_bytes(), &ctx(&s, None)).unwrap());
        assert!(r.ok);
    }

    #[test]
    fn without_a_clock_nothing_runs() {
        let s = calibrated();
        let json = command_json("n-1", "{}");
        let c = Context {
            epoch_ms: None,
            ..ctx(&s, None)
        };
        let err = error_of(handle(CommandName::Reboot, json.as_bytes(), &c).unwrap());
        assert!(err.starts_with("clock not set"), "{err}");
    }

    #[test]
    fn seen_ids_are_duplicates_before_anything_else() {
        let mut s = calibrated();
        s.remember(CommandId::try_from("d-1").unwrap());
        // Even expired or malformed, a seen id is silently ignored.
        let json = format!(
            r#"{{"v":1,"id":"d-1","issued_at":{},"expires_at":{}}}"#,
            NOW - 9,
            NOW - 5
        );
        assert_eq!(
            handle(CommandName::Reboot, json.as_bytes(), &ctx(&s, None)).unwrap(),
            Decision::Duplicate(CommandId::try_from("d-1").unwrap())
        );
        assert!(matches!(
            handle(CommandName::Reboot, br#"{"id":"d-1"}"#, &ctx(&s, None)).unwrap(),
            Decision::Duplicate(_)
        ));
    }

    #[test]
    fn malformed_commands_are_answered_when_they_name_an_id() {
        let s = calibrated();
        let err = error_of(
            handle(
                CommandName::Identify,
                br#"{"v":1,"id":"m-1","issued_at":"soon"}"#,
                &ctx(&s, None),
            )
            .unwrap(),
        );
        assert!(err.starts_with("issued_at"), "{err}");
        assert!(handle(CommandName::Identify, b"not json", &ctx(&s, None)).is_err());
        assert!(
            handle(
                CommandName::Identify,
                br#"{"v":1,"id":"bad id!"}"#,
                &ctx(&s, None)
            )
            .is_err()
        );
    }

    #[test]
    fn identify_maintenance_and_reboot_effects() {
        let s = calibrated();
        let c = ctx(&s, None);
        let (r, e) = respond(
            handle(
                CommandName::Identify,
                command_json("i-1", "{}").as_bytes(),
                &c,
            )
            .unwrap(),
        );
        assert!(r.ok && r.result.is_none());
        assert_eq!(
            e,
            Effect::Identify {
                until_ms: 1_000 + 10_000
            }
        );
        let (_, e) = respond(
            handle(
                CommandName::Identify,
                command_json("i-2", r#"{"duration_s":30}"#).as_bytes(),
                &c,
            )
            .unwrap(),
        );
        assert_eq!(e, Effect::Identify { until_ms: 31_000 });
        let (_, e) = respond(
            handle(
                CommandName::MaintenanceEnter,
                command_json("m-1", "{}").as_bytes(),
                &c,
            )
            .unwrap(),
        );
        assert_eq!(e, Effect::MaintenanceEnter { until_ms: None });
        let (_, e) = respond(
            handle(
                CommandName::MaintenanceEnter,
                command_json("m-2", r#"{"duration_s":600}"#).as_bytes(),
                &c,
            )
            .unwrap(),
        );
        assert_eq!(
            e,
            Effect::MaintenanceEnter {
                until_ms: Some(601_000)
            }
        );
        let (_, e) = respond(
            handle(
                CommandName::MaintenanceExit,
                command_json("m-3", "{}").as_bytes(),
                &c,
            )
            .unwrap(),
        );
        assert_eq!(e, Effect::MaintenanceExit);
        let (_, e) = respond(
            handle(
                CommandName::Reboot,
                command_json("r-1", "{}").as_bytes(),
                &c,
            )
            .unwrap(),
        );
        assert_eq!(e, Effect::Reboot);
        let err = error_of(
            handle(
                CommandName::Identify,
                command_json("i-3", r#"{"duration_s":601}"#).as_bytes(),
                &c,
            )
            .unwrap(),
        );
        assert!(err.starts_with("params.duration_s"), "{err}");
    }

    #[test]
    fn set_config_changes_only_what_it_names() {
        let s = calibrated();
        let c = ctx(&s, None);
        let (r, e) = respond(
            handle(
                CommandName::SetConfig,
                command_json("s-1", r#"{"interval_s":30}"#).as_bytes(),
                &c,
            )
            .unwrap(),
        );
        assert!(r.ok);
        let next = e.apply_to(&s);
        assert_eq!(next.interval_s, 30);
        assert!(next.temp_coeff.abs() < f64::EPSILON);
        assert_eq!(next.calibration, s.calibration);
        let (_, e) = respond(
            handle(
                CommandName::SetConfig,
                command_json("s-2", r#"{"temp_coeff":0.0005}"#).as_bytes(),
                &c,
            )
            .unwrap(),
        );
        let next = e.apply_to(&s);
        assert_eq!(next.interval_s, 60);
        assert!((next.temp_coeff - 0.0005).abs() < f64::EPSILON);
        let err = error_of(
            handle(
                CommandName::SetConfig,
                command_json("s-3", "{}").as_bytes(),
                &c,
            )
            .unwrap(),
        );
        assert!(err.starts_with("params"), "{err}");
    }

    #[test]
    fn error_text_is_cut_to_the_contract_limit() {
        let long = error_text(format_args!("{}", "é".repeat(100)));
        assert!(long.len() <= ERROR_LEN);
        assert_eq!(long.chars().count(), ERROR_LEN / 2);
        assert_eq!(error_text(format_args!("short")).as_str(), "short");
    }

    #[test]
    fn responses_encode_within_the_contract() {
        let r = Response {
            v: CONTRACT_VERSION,
            id: CommandId::try_from("x-1").unwrap(),
            ok: true,
            result: Some(ResponseResult {
                weight_lbs: Some(1.0),
                ..ResponseResult::default()
            }),
            error: None,
        };
        let mut buf = [0u8; 256];
        let n = scalesense_proto::encode(&r, &mut buf).unwrap();
        assert_eq!(scalesense_proto::decode_response(&buf[..n]).unwrap(), r);
    }
}
