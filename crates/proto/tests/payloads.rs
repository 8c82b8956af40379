//! The payload contract at its boundary: bytes in, typed values or field-naming errors out,
//! through both decoders (serde-json-core and serde_json), which must always agree.
#![cfg(feature = "std")]
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use scalesense_proto::payload::{LAST_WILL_PAYLOAD, MAX_SAFE_INTEGER, MIN_TIMESTAMP_MS};
use scalesense_proto::{
    CONTRACT_VERSION, Command, CommandName, CommandParams, ContractError, DeviceState, EncodeError,
    GatewayAck, GatewayId, GatewayStatus, IdError, Ota, Payload, Reading, Response, ResponseResult,
    Status, TareStatus, UplinkState, decode, encode, from_slice, to_vec,
};
use scalesense_proto::{Forwarding, append_forwarding, decode_forwarding};

/// Decode with both decoders, insist they agree, and return the result.
fn both<T: Payload + PartialEq + std::fmt::Debug>(json: &str) -> Result<T, ContractError> {
    let core = decode::<T>(json.as_bytes());
    let std = from_slice::<T>(json.as_bytes());
    assert_eq!(core, std, "decoders disagree on {json}");
    core
}

fn err<T: Payload + PartialEq + std::fmt::Debug>(json: &str) -> ContractError {
    both::<T>(json).expect_err(json)
}

/// Encode with both encoders, insist on identical bytes, and decode back with both decoders.
fn round_trip<T: Payload + PartialEq + std::fmt::Debug>(value: &T) -> String {
    let mut buf = vec![0u8; T::MAX_ENCODED_LEN];
    let n = encode(value, &mut buf).unwrap();
    let via_std = to_vec(value).unwrap();
    assert_eq!(&buf[..n], via_std.as_slice(), "encoders disagree");
    let text = std::str::from_utf8(&buf[..n]).unwrap().to_owned();
    assert_eq!(&both::<T>(&text).unwrap(), value, "round trip of {text}");
    text
}

const READING: &str = r#"{"v":1,"seq":17,"boot":3,"ts":1773830400000,"weight_lbs":87.3,"level_pct":54.1,"battery_v":3.94,"battery_pct":78,"rssi":-61,"stable":true,"tare_status":"complete"}"#;

fn reading() -> Reading {
    Reading {
        v: 1,
        seq: 17,
        boot: 3,
        ts: Some(1_773_830_400_000),
        weight_lbs: 87.3,
        level_pct: Some(54.1),
        battery_v: 3.94,
        battery_pct: 78.0,
        rssi: -61,
        stable: true,
        tare_status: TareStatus::Complete,
        gw: None,
        gseq: None,
    }
}

fn with_field(json: &str, field: &str, value: &str) -> String {
    let mut doc: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).unwrap();
    doc.insert(field.into(), serde_json::from_str(value).unwrap());
    serde_json::Value::Object(doc).to_string()
}

fn without_field(json: &str, field: &str) -> String {
    let mut doc: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).unwrap();
    assert!(doc.remove(field).is_some(), "{field} not in {json}");
    serde_json::Value::Object(doc).to_string()
}

#[test]
fn seed_reading_decodes() {
    assert_eq!(both::<Reading>(READING), Ok(reading()));
}

#[test]
fn every_payload_round_trips_through_both_encoders() {
    let mut forwarded = reading();
    forwarded.gw = Some(GatewayId::try_from("gw-loc-001").unwrap());
    forwarded.gseq = Some(42);
    let text = round_trip(&forwarded);
    assert!(text.ends_with(r#""gw":"gw-loc-001","gseq":42}"#), "{text}");
    round_trip(&reading());

    round_trip(&Status {
        v: 1,
        state: DeviceState::Online,
        fw: Some("1.4.2".try_into().unwrap()),
        maintenance: true,
        uptime_s: Some(86_400),
        battery_v: Some(3.9),
        battery_pct: Some(71.5),
        rssi: Some(-70),
        dropped_readings: Some(0),
        buffered_readings: Some(12),
        boot: Some(3),
    });
    round_trip(&Command {
        v: 1,
        id: "cmd-20260318-0001".try_into().unwrap(),
        params: CommandParams {
            known_weight_lbs: Some(20.0),
            ..CommandParams::default()
        },
        issued_at: 1_773_830_400_000,
        expires_at: 1_773_830_700_000,
    });
    round_trip(&Response {
        v: 1,
        id: "cmd-1".try_into().unwrap(),
        ok: true,
        result: Some(ResponseResult {
            zero_offset: Some(-83_112),
            scale_factor: Some(21_430.5),
            weight_lbs: Some(20.01),
            drift_pct: Some(0.4),
            empty_lbs: Some(29.0),
            full_lbs: Some(161.5),
        }),
        error: None,
    });
    round_trip(&Response {
        v: 1,
        id: "cmd-2".try_into().unwrap(),
        ok: false,
        result: None,
        error: Some("expired".try_into().unwrap()),
    });
    round_trip(&Ota {
        v: 1,
        job_id: "ota-7".try_into().unwrap(),
        version: "1.5.0".try_into().unwrap(),
        url: "http://192.168.4.1:8080/fw/1.5.0.bin".try_into().unwrap(),
        sha256: "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"
            .try_into()
            .unwrap(),
        size: 803_000,
    });
    round_trip(&GatewayStatus {
        v: 1,
        queue_depth: 1_204,
        oldest_age_s: 3_600,
        uplink: UplinkState::Replaying,
        forwarded: 99_000,
        dropped: 0,
        disk_bytes: 1 << 30,
        version: "0.1.0".try_into().unwrap(),
        oldest_gseq: Some(1_201),
    });
    round_trip(&GatewayAck {
        v: 1,
        ranges: [[1, 5], [9, MAX_SAFE_INTEGER]].into_iter().collect(),
    });
}

#[test]
fn sha256_is_stored_lowercase() {
    let ota = both::<Ota>(
        r#"{"v":1,"job_id":"j","version":"1","url":"https://x/fw.bin","sha256":"ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789","size":1}"#,
    )
    .unwrap();
    assert_eq!(
        ota.sha256.as_str(),
        "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
    );
}

#[test]
fn last_will_is_the_minimal_offline_status() {
    let mut buf = [0u8; 64];
    let n = encode(&Status::offline(), &mut buf).unwrap();
    assert_eq!(&buf[..n], LAST_WILL_PAYLOAD.as_bytes());
    let status = both::<Status>(LAST_WILL_PAYLOAD).unwrap();
    assert_eq!(status.state, DeviceState::Offline);
    assert!(!status.maintenance);
    assert_eq!(status.fw, None);
}

#[test]
fn unknown_fields_are_ignored_at_every_level() {
    let json = with_field(
        READING,
        "firmware_build",
        r#"{"nested":[1,{"x":null}],"y":"z"}"#,
    );
    assert_eq!(both::<Reading>(&json), Ok(reading()));
    let cmd = r#"{"v":1,"id":"c1","params":{"duration_s":30,"colour":"red"},"issued_at":1773830400000,"expires_at":1773830460000,"priority":9}"#;
    assert_eq!(both::<Command>(cmd).unwrap().params.duration_s, Some(30));
}

#[test]
fn missing_required_fields_are_named() {
    for field in [
        "v",
        "seq",
        "boot",
        "weight_lbs",
        "battery_v",
        "battery_pct",
        "rssi",
        "stable",
        "tare_status",
    ] {
        assert_eq!(
            err::<Reading>(&without_field(READING, field)),
            ContractError::Missing { field },
        );
    }
    // Optional ones may go.
    let bare = without_field(&without_field(READING, "ts"), "level_pct");
    let decoded = both::<Reading>(&bare).unwrap();
    assert_eq!((decoded.ts, decoded.level_pct), (None, None));
}

#[test]
fn wrong_types_are_named() {
    let cases = [
        ("seq", r#""17""#, "an integer"),
        ("seq", "17.5", "an integer"),
        ("seq", "null", "an integer"),
        ("boot", "true", "an integer"),
        ("weight_lbs", r#""87.3""#, "a number"),
        ("weight_lbs", "null", "a number"),
        ("weight_lbs", "[87.3]", "a number"),
        ("stable", "1", "a boolean"),
        ("tare_status", "3", "a string"),
        ("rssi", "-61.5", "an integer"),
        ("level_pct", r#"{"pct":1}"#, "a number"),
    ];
    for (field, value, expected) in cases {
        assert_eq!(
            err::<Reading>(&with_field(READING, field, value)),
            ContractError::WrongType { field, expected },
            "{field}={value}"
        );
    }
    // Whole numbers written as floats are integers.
    assert_eq!(
        both::<Reading>(&with_field(READING, "seq", "17.0")),
        Ok(reading())
    );
}

#[test]
fn out_of_range_values_are_named_with_their_bounds() {
    let cases = [
        ("weight_lbs", "-5.01", -5.0, 500.0),
        ("weight_lbs", "500.5", -5.0, 500.0),
        ("level_pct", "130", 0.0, 100.0),
        ("level_pct", "-0.6", 0.0, 100.0),
        ("battery_v", "5.2", 0.0, 5.0),
        ("battery_pct", "-1", 0.0, 100.0),
        ("rssi", "1", -127.0, 0.0),
        ("rssi", "-128", -127.0, 0.0),
        ("rssi", "40000", -32768.0, 32767.0),
        ("seq", "-1", 0.0, 4_294_967_295.0),
        ("seq", "4294967296", 0.0, 4_294_967_295.0),
        ("boot", "0", 1.0, 4_294_967_295.0),
        ("ts", "1000", 1_577_836_800_000.0, 4_102_444_800_000.0),
        ("gseq", "9007199254740992", 0.0, 9_007_199_254_740_991.0),
    ];
    for (field, value, min, max) in cases {
        let mut json = with_field(READING, field, value);
        if field == "gseq" {
            json = with_field(&json, "gw", r#""gw-1""#);
        }
        match err::<Reading>(&json) {
            ContractError::OutOfRange {
                field: f,
                min: lo,
                max: hi,
                ..
            } => assert_eq!((f, lo, hi), (field, min, max), "{field}={value}"),
            other => panic!("{field}={value}: {other}"),
        }
    }
    assert_eq!(
        err::<Reading>(&with_field(READING, "level_pct", "130")).to_string(),
        "level_pct: 130 is out of range 0–100"
    );
}

#[test]
fn level_pct_tolerates_half_a_percent_of_rounding() {
    for (value, clamped) in [("100.5", 100.0), ("-0.5", 0.0), ("100", 100.0), ("0", 0.0)] {
        let r = both::<Reading>(&with_field(READING, "level_pct", value)).unwrap();
        assert_eq!(r.level_pct_clamped(), Some(clamped), "{value}");
    }
}

#[test]
fn non_finite_numbers_are_rejected() {
    // A literal beyond f64 is no number at all, for both decoders.
    let json = READING.replace("87.3", "1e999");
    assert_eq!(err::<Reading>(&json), ContractError::Malformed);
    let mut r = reading();
    r.weight_lbs = f64::NAN;
    assert_eq!(
        r.validate(),
        Err(ContractError::NotFinite {
            field: "weight_lbs"
        })
    );
}

#[test]
fn versions() {
    assert_eq!(CONTRACT_VERSION, 1);
    assert_eq!(
        err::<Reading>(&with_field(READING, "v", "2")),
        ContractError::UnsupportedVersion {
            found: 2,
            supported: 1
        }
    );
    // A newer version wins over any other problem, wherever `v` is in the object.
    assert_eq!(
        err::<Reading>(r#"{"seq":"new-style","v":7}"#),
        ContractError::UnsupportedVersion {
            found: 7,
            supported: 1
        }
    );
    assert_eq!(
        err::<Reading>(&with_field(READING, "v", "70000")),
        ContractError::UnsupportedVersion {
            found: 70_000,
            supported: 1
        }
    );
    assert_eq!(
        err::<Reading>(&with_field(READING, "v", "0")),
        ContractError::Invalid {
            field: "v",
            reason: "must be at least 1"
        }
    );
    assert_eq!(
        err::<GatewayAck>(r#"{"ranges":[[1,1]]}"#),
        ContractError::Missing { field: "v" }
    );
    assert_eq!(
        err::<GatewayAck>(r#"{"v":"1","ranges":[[1,1]]}"#),
        ContractError::WrongType {
            field: "v",
            expected: "an integer"
        }
    );
}

#[test]
fn malformed_documents() {
    for bad in [
        "",
        "null",
        "[]",
        r#"[{"v":1}]"#,
        "{",
        r#"{"v":1,"seq":17"#,
        r#"{"v":1} trailing"#,
        r#"{"v":1,"x":undefined}"#,
        "\u{feff}{}",
    ] {
        assert_eq!(err::<Reading>(bad), ContractError::Malformed, "{bad:?}");
    }
}

#[test]
fn duplicate_known_fields_are_rejected() {
    let json = READING.replace(r#""seq":17,"#, r#""seq":17,"seq":18,"#);
    assert_eq!(
        err::<Reading>(&json),
        ContractError::Duplicate { field: "seq" }
    );
}

#[test]
fn strings_with_escapes_decode_alike() {
    let json = r#"{"v":1,"state":"online","fw":"1.4\u002e2-\"rc\""}"#;
    assert_eq!(
        both::<Status>(json).unwrap().fw.unwrap().as_str(),
        "1.4.2-\"rc\""
    );
}

#[test]
fn escapes_in_keys_and_long_unknown_strings() {
    let escaped_key = READING.replace(r#""seq""#, r#""s\u0065q""#);
    assert_eq!(both::<Reading>(&escaped_key), Ok(reading()));
    let long = format!(r#""{}""#, "\\n\\\"".repeat(400));
    assert_eq!(
        both::<Reading>(&with_field(READING, "note", &long)),
        Ok(reading())
    );
    let long_url = format!(r#""https://h/{}""#, "\\/".repeat(300));
    assert_eq!(
        err::<Ota>(&with_field(OTA, "url", &long_url)),
        ContractError::TooLong {
            field: "url",
            max: 160
        }
    );
}

#[test]
fn ids_and_enums_are_checked() {
    assert_eq!(
        err::<Reading>(&with_field(
            &with_field(READING, "gw", r#""gw/1""#),
            "gseq",
            "1"
        )),
        ContractError::BadId {
            field: "gw",
            source: IdError::BadChar {
                kind: "gateway id",
                found: '/'
            }
        }
    );
    assert_eq!(
        err::<Reading>(&with_field(READING, "tare_status", r#""done""#)).to_string(),
        "tare_status: must be one of none, pending, empty_set, full_set, complete"
    );
    assert_eq!(
        err::<Status>(r#"{"v":1,"state":"asleep"}"#).field(),
        Some("state")
    );
}

#[test]
fn forwarding_is_read_from_any_payload_and_added_to_raw_bytes() {
    let fwd = Forwarding {
        gw: GatewayId::try_from("gw-loc-001").unwrap(),
        gseq: 7,
    };
    let status = br#"{"v":1,"state":"online","fw":"1.4.2"}"#;
    assert_eq!(decode_forwarding(status), Ok(None));
    let mut out = [0u8; 128];
    let n = append_forwarding(status, &fwd, &mut out).unwrap();
    assert_eq!(
        &out[..n],
        br#"{"v":1,"state":"online","fw":"1.4.2","gw":"gw-loc-001","gseq":7}"#
    );
    assert_eq!(decode_forwarding(&out[..n]), Ok(Some(fwd.clone())));
    // The typed status still decodes; the pair is ignored there like any unknown field.
    assert_eq!(
        both::<Status>(std::str::from_utf8(&out[..n]).unwrap())
            .unwrap()
            .fw
            .unwrap()
            .as_str(),
        "1.4.2"
    );
    // A reading carries the pair as typed fields.
    assert_eq!(
        append_forwarding(READING.as_bytes(), &fwd, &mut out),
        Err(EncodeError::BufferTooSmall { capacity: 128 })
    );
    let mut big = [0u8; 512];
    let n2 = append_forwarding(READING.as_bytes(), &fwd, &mut big).unwrap();
    let r = both::<Reading>(std::str::from_utf8(&big[..n2]).unwrap()).unwrap();
    assert_eq!((r.gw, r.gseq), (Some(fwd.gw.clone()), Some(7)));

    // Whitespace and an empty object, invalid payloads are still forwarded verbatim.
    let n = append_forwarding(b" { } \n", &fwd, &mut out).unwrap();
    assert_eq!(&out[..n], br#" { "gw":"gw-loc-001","gseq":7}"#);
    let n = append_forwarding(br#"{"v":9,"seq":"x"}"#, &fwd, &mut out).unwrap();
    assert_eq!(
        &out[..n],
        br#"{"v":9,"seq":"x","gw":"gw-loc-001","gseq":7}"#
    );

    // Refusals.
    assert_eq!(
        append_forwarding(&big[..n2], &fwd, &mut out),
        Err(EncodeError::Invalid(ContractError::Invalid {
            field: "gw",
            reason: "already set by a gateway"
        }))
    );
    assert_eq!(
        append_forwarding(b"not json", &fwd, &mut out),
        Err(EncodeError::Invalid(ContractError::Malformed))
    );
    assert_eq!(
        append_forwarding(br#"{"gseq":3}"#, &fwd, &mut out),
        Err(EncodeError::Invalid(ContractError::Invalid {
            field: "gw",
            reason: "must be present when gseq is"
        }))
    );
    let zero = Forwarding { gseq: 0, ..fwd };
    assert!(matches!(
        append_forwarding(b"{}", &zero, &mut out),
        Err(EncodeError::Invalid(ContractError::OutOfRange {
            field: "gseq",
            ..
        }))
    ));
}

#[test]
fn gateway_fields_come_in_pairs() {
    assert_eq!(
        err::<Reading>(&with_field(READING, "gw", r#""gw-1""#)),
        ContractError::Invalid {
            field: "gseq",
            reason: "must be present when gw is"
        }
    );
    assert_eq!(
        err::<Reading>(&with_field(READING, "gseq", "5")),
        ContractError::Invalid {
            field: "gw",
            reason: "must be present when gseq is"
        }
    );
}

#[test]
fn status_limits() {
    assert_eq!(
        err::<Status>(r#"{"v":1,"state":"online","fw":"1.0.0-this-is-far-too-long-for-24"}"#),
        ContractError::TooLong {
            field: "fw",
            max: 24
        }
    );
    assert_eq!(
        err::<Status>(r#"{"v":1,"state":"online","fw":" "}"#),
        ContractError::Invalid {
            field: "fw",
            reason: "must not be empty"
        }
    );
    assert_eq!(
        err::<Status>(r#"{"v":1,"state":"online","battery_pct":101}"#).field(),
        Some("battery_pct")
    );
    assert_eq!(
        err::<Status>(r#"{"v":1,"state":"online","boot":0}"#).field(),
        Some("boot")
    );
    let s = both::<Status>(r#"{"v":1,"state":"online","maintenance":null}"#).unwrap();
    assert!(!s.maintenance);
}

const COMMAND: &str =
    r#"{"v":1,"id":"cmd-1","params":{},"issued_at":1773830400000,"expires_at":1773830700000}"#;

fn command(params: &str) -> Command {
    both::<Command>(&with_field(COMMAND, "params", params)).unwrap()
}

#[test]
fn command_rules() {
    let plain = both::<Command>(&without_field(COMMAND, "params")).unwrap();
    assert_eq!(plain.params, CommandParams::default());
    for name in [
        CommandName::TareEmpty,
        CommandName::TareFull,
        CommandName::MaintenanceEnter,
        CommandName::MaintenanceExit,
        CommandName::Reboot,
        CommandName::Identify,
    ] {
        assert_eq!(plain.validate_for(name), Ok(()), "{name}");
    }
    assert_eq!(
        plain.validate_for(CommandName::Calibrate),
        Err(ContractError::Missing {
            field: "params.known_weight_lbs"
        })
    );
    assert_eq!(
        plain.validate_for(CommandName::SetConfig),
        Err(ContractError::Invalid {
            field: "params",
            reason: "set_config needs interval_s or temp_coeff"
        })
    );
    assert_eq!(
        command(r#"{"known_weight_lbs":20}"#).validate_for(CommandName::Calibrate),
        Ok(())
    );
    assert_eq!(
        command(r#"{"interval_s":60}"#).validate_for(CommandName::SetConfig),
        Ok(())
    );
    assert_eq!(
        command(r#"{"temp_coeff":-0.0002}"#).validate_for(CommandName::SetConfig),
        Ok(())
    );
    // Identify is capped at 10 minutes; maintenance may last a day.
    let long = command(r#"{"duration_s":3600}"#);
    assert_eq!(long.validate_for(CommandName::MaintenanceEnter), Ok(()));
    assert_eq!(
        long.validate_for(CommandName::Identify)
            .unwrap_err()
            .to_string(),
        "params.duration_s: 3600 is out of range 1–600"
    );
    assert_eq!(
        scalesense_proto::decode_command_for(
            with_field(COMMAND, "params", r#"{"duration_s":3600}"#).as_bytes(),
            CommandName::Identify
        )
        .unwrap_err()
        .field(),
        Some("params.duration_s")
    );
}

#[test]
fn command_params_are_range_checked_whatever_the_command() {
    let cases = [
        (r#"{"known_weight_lbs":0}"#, "params.known_weight_lbs"),
        (r#"{"known_weight_lbs":-3}"#, "params.known_weight_lbs"),
        (r#"{"known_weight_lbs":501}"#, "params.known_weight_lbs"),
        (r#"{"interval_s":4}"#, "params.interval_s"),
        (r#"{"interval_s":3601}"#, "params.interval_s"),
        (r#"{"duration_s":0}"#, "params.duration_s"),
        (r#"{"temp_coeff":0.5}"#, "params.temp_coeff"),
        (r#"{"temp_coeff":"0.1"}"#, "params.temp_coeff"),
        (r#"{"duration_s":-1}"#, "params.duration_s"),
        ("[]", "params"),
        ("7", "params"),
    ];
    for (params, field) in cases {
        assert_eq!(
            err::<Command>(&with_field(COMMAND, "params", params)).field(),
            Some(field),
            "{params}"
        );
    }
}

#[test]
fn command_times() {
    assert_eq!(
        err::<Command>(&with_field(COMMAND, "expires_at", "1773830400000")),
        ContractError::Invalid {
            field: "expires_at",
            reason: "must be later than issued_at"
        }
    );
    assert_eq!(
        err::<Command>(&with_field(COMMAND, "issued_at", "0")).field(),
        Some("issued_at")
    );
    let c = both::<Command>(COMMAND).unwrap();
    assert!(!c.is_expired(1_773_830_700_000));
    assert!(c.is_expired(1_773_830_700_001));
}

#[test]
fn response_rules() {
    assert_eq!(
        err::<Response>(r#"{"v":1,"id":"c1","ok":false}"#),
        ContractError::Missing { field: "error" }
    );
    assert_eq!(
        err::<Response>(r#"{"v":1,"id":"c1","ok":false,"error":""}"#),
        ContractError::Invalid {
            field: "error",
            reason: "must not be empty"
        }
    );
    assert!(both::<Response>(r#"{"v":1,"id":"c1","ok":true}"#).is_ok());
    assert_eq!(
        err::<Response>(&format!(
            r#"{{"v":1,"id":"c1","ok":false,"error":"{}"}}"#,
            "x".repeat(65)
        )),
        ContractError::TooLong {
            field: "error",
            max: 64
        }
    );
    for (result, field) in [
        (r#"{"zero_offset":8388608}"#, "result.zero_offset"),
        (r#"{"scale_factor":0}"#, "result.scale_factor"),
        (r#"{"drift_pct":101}"#, "result.drift_pct"),
        (r#"{"empty_lbs":30,"full_lbs":29}"#, "result.full_lbs"),
        (r#"{"weight_lbs":"20"}"#, "result.weight_lbs"),
        (r#"{"empty_lbs":-1}"#, "result.empty_lbs"),
    ] {
        let json = format!(r#"{{"v":1,"id":"c1","ok":true,"result":{result}}}"#);
        assert_eq!(err::<Response>(&json).field(), Some(field), "{result}");
    }
    assert_eq!(
        err::<Response>(r#"{"v":1,"id":"","ok":true}"#),
        ContractError::BadId {
            field: "id",
            source: IdError::Empty { kind: "command id" }
        }
    );
}

const OTA: &str = r#"{"v":1,"job_id":"ota-7","version":"1.5.0","url":"http://192.168.4.1:8080/fw.bin","sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","size":803000}"#;

#[test]
fn ota_rules() {
    assert!(both::<Ota>(OTA).is_ok());
    for (field, value) in [
        ("sha256", r#""9f86d0""#),
        (
            "sha256",
            r#""zz86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08""#,
        ),
        ("url", r#""ftp://host/fw.bin""#),
        ("url", r#""http://""#),
        ("url", r#""http://host/fw 1.bin""#),
        ("size", "0"),
        ("size", "4194305"),
        ("version", r#""""#),
        ("job_id", r#""a b""#),
    ] {
        assert_eq!(
            err::<Ota>(&with_field(OTA, field, value)).field(),
            Some(field),
            "{field}={value}"
        );
    }
    let long_url = format!(r#""https://h/{}""#, "a".repeat(160));
    assert_eq!(
        err::<Ota>(&with_field(OTA, "url", &long_url)),
        ContractError::TooLong {
            field: "url",
            max: 160
        }
    );
}

#[test]
fn gateway_payloads() {
    let status = r#"{"v":1,"queue_depth":0,"oldest_age_s":0,"uplink":"connected","forwarded":10,"dropped":0,"disk_bytes":4096,"version":"0.1.0"}"#;
    assert_eq!(
        both::<GatewayStatus>(status).unwrap().uplink,
        UplinkState::Connected
    );
    assert_eq!(
        err::<GatewayStatus>(&with_field(status, "uplink", r#""up""#)).field(),
        Some("uplink")
    );
    assert_eq!(
        err::<GatewayStatus>(&without_field(status, "disk_bytes")),
        ContractError::Missing {
            field: "disk_bytes"
        }
    );
    assert_eq!(
        err::<GatewayStatus>(&with_field(status, "dropped", "-1")).field(),
        Some("dropped")
    );
    assert_eq!(
        both::<GatewayAck>(r#"{"v":1,"ranges":[[1201,1300],[1302,1302]]}"#),
        Ok(GatewayAck {
            v: 1,
            ranges: [[1201, 1300], [1302, 1302]].into_iter().collect(),
        })
    );
    let ack = both::<GatewayAck>(r#"{"v":1,"ranges":[[3,4]]}"#).unwrap();
    assert_eq!(ack.gseqs().collect::<Vec<_>>(), [3, 4]);
    assert!(ack.confirms(4) && !ack.confirms(5));
    for (json, field) in [
        (r#"{"v":1,"ranges":[]}"#, "ranges"),
        (r#"{"v":1,"ranges":[[5,4]]}"#, "ranges"),
        (r#"{"v":1,"ranges":[[0,4]]}"#, "ranges"),
        (r#"{"v":1,"ranges":[[1,2,3]]}"#, "ranges"),
        (r#"{"v":1,"ranges":[[1]]}"#, "ranges"),
        (r#"{"v":1,"ranges":[1,2]}"#, "ranges"),
        (r#"{"v":1,"ranges":7}"#, "ranges"),
    ] {
        assert_eq!(err::<GatewayAck>(json).field(), Some(field), "{json}");
    }
    let too_many = format!(r#"{{"v":1,"ranges":[{}]}}"#, vec!["[1,1]"; 33].join(","));
    assert_eq!(
        err::<GatewayAck>(&too_many),
        ContractError::TooLong {
            field: "ranges",
            max: 32
        }
    );
}

#[test]
fn encoding_refuses_invalid_payloads_and_small_buffers() {
    let mut bad = reading();
    bad.level_pct = Some(130.0);
    let mut buf = [0u8; 512];
    assert_eq!(
        encode(&bad, &mut buf),
        Err(EncodeError::Invalid(ContractError::OutOfRange {
            field: "level_pct",
            value: 130.0,
            min: 0.0,
            max: 100.0
        }))
    );
    assert!(to_vec(&bad).is_err());
    let mut small = [0u8; 16];
    assert_eq!(
        encode(&reading(), &mut small),
        Err(EncodeError::BufferTooSmall { capacity: 16 })
    );
}

/// The longest float text (ryu never writes more than 24 bytes), valid in every float field.
const TINY: f64 = 2.225_073_858_507_201_4e-308;
const ID40: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcd";

fn fits<T: Payload + PartialEq + std::fmt::Debug>(value: &T) -> usize {
    let mut buf = vec![0u8; T::MAX_ENCODED_LEN];
    let n = encode(value, &mut buf).unwrap();
    round_trip(value);
    n
}

#[test]
fn worst_case_payloads_fit_max_encoded_len() {
    let quotes24: heapless::String<24> = "\"".repeat(24).as_str().try_into().unwrap();
    let reading = Reading {
        v: 1,
        seq: u32::MAX,
        boot: u32::MAX,
        ts: Some(4_102_444_800_000),
        weight_lbs: -TINY,
        level_pct: Some(-TINY),
        battery_v: TINY,
        battery_pct: TINY,
        rssi: -127,
        stable: false,
        tare_status: TareStatus::Complete,
        gw: Some("ABCDEFGHIJKLMNOPQRSTUVWXYZ012345".try_into().unwrap()),
        gseq: Some(MAX_SAFE_INTEGER),
    };
    assert_eq!(fits(&reading), 326);
    let status = Status {
        v: 1,
        state: DeviceState::Offline,
        fw: Some(quotes24.clone()),
        maintenance: true,
        uptime_s: Some(u32::MAX),
        battery_v: Some(TINY),
        battery_pct: Some(TINY),
        rssi: Some(-127),
        dropped_readings: Some(u32::MAX),
        buffered_readings: Some(u32::MAX),
        boot: Some(u32::MAX),
    };
    assert_eq!(fits(&status), 287);
    let command = Command {
        v: 1,
        id: ID40.try_into().unwrap(),
        params: CommandParams {
            known_weight_lbs: Some(TINY),
            duration_s: Some(86_400),
            interval_s: Some(3_600),
            temp_coeff: Some(-TINY),
        },
        issued_at: 4_102_444_799_999,
        expires_at: 4_102_444_800_000,
    };
    assert_eq!(fits(&command), 237);
    let response = Response {
        v: 1,
        id: ID40.try_into().unwrap(),
        ok: false,
        result: Some(ResponseResult {
            zero_offset: Some(-8_388_608),
            scale_factor: Some(-TINY),
            weight_lbs: Some(-TINY),
            drift_pct: Some(-TINY),
            empty_lbs: Some(TINY),
            full_lbs: Some(2.225_073_858_507_202_4e-308),
        }),
        error: Some("\\".repeat(64).as_str().try_into().unwrap()),
    };
    assert_eq!(fits(&response), 425);
    let ota = Ota {
        v: 1,
        job_id: ID40.try_into().unwrap(),
        version: quotes24.clone(),
        url: format!("https://{}", "a".repeat(152))
            .as_str()
            .try_into()
            .unwrap(),
        sha256: "a".repeat(64).as_str().try_into().unwrap(),
        size: 4_194_304,
    };
    assert_eq!(fits(&ota), 380);
    let gateway = GatewayStatus {
        v: 1,
        queue_depth: MAX_SAFE_INTEGER,
        oldest_age_s: MAX_SAFE_INTEGER,
        uplink: UplinkState::Disconnected,
        forwarded: MAX_SAFE_INTEGER,
        dropped: MAX_SAFE_INTEGER,
        disk_bytes: MAX_SAFE_INTEGER,
        version: quotes24,
        oldest_gseq: Some(MAX_SAFE_INTEGER),
    };
    assert_eq!(fits(&gateway), 272);
    let ack = GatewayAck {
        v: 1,
        ranges: core::iter::repeat_n([MAX_SAFE_INTEGER; 2], 32).collect(),
    };
    assert_eq!(fits(&ack), 1_170);
}

#[test]
fn free_text_has_no_control_characters() {
    assert_eq!(
        err::<Status>(r#"{"v":1,"state":"online","fw":"1.0\n"}"#),
        ContractError::Invalid {
            field: "fw",
            reason: "must not contain control characters"
        }
    );
    assert_eq!(
        err::<Response>(r#"{"v":1,"id":"c","ok":false,"error":"bad\u0007"}"#).field(),
        Some("error")
    );
    assert_eq!(
        err::<Ota>(&with_field(OTA, "url", r#""http://h/a\"b""#)).field(),
        Some("url")
    );
    assert_eq!(
        both::<Status>(r#"{"v":1,"state":"online","fw":"1.0 — ünïcode"}"#)
            .unwrap()
            .fw
            .unwrap()
            .as_str(),
        "1.0 — ünïcode"
    );
}

#[test]
fn serde_deserialize_validates_too() {
    let ok: Reading = serde_json::from_str(READING).unwrap();
    assert_eq!(ok, reading());
    let e = serde_json::from_str::<Reading>(&with_field(READING, "level_pct", "130")).unwrap_err();
    assert_eq!(e.to_string(), "level_pct: 130 is out of range 0–100");
    let e = serde_json::from_str::<Reading>(&without_field(READING, "seq")).unwrap_err();
    assert_eq!(e.to_string(), "seq: required field is missing");
    let (ok, _) = serde_json_core::from_str::<Reading>(READING).unwrap();
    assert_eq!(ok, reading());
}

fn reading_strategy() -> impl Strategy<Value = Reading> {
    let tare = prop::sample::select(vec![
        TareStatus::None,
        TareStatus::Pending,
        TareStatus::EmptySet,
        TareStatus::FullSet,
        TareStatus::Complete,
    ]);
    let gateway = prop::option::of(("[a-z0-9-]{1,32}", 1..=MAX_SAFE_INTEGER));
    (
        (
            any::<u32>(),
            1..=u32::MAX,
            prop::option::of(MIN_TIMESTAMP_MS..4_102_444_800_000),
        ),
        (-500i32..=50_000, prop::option::of(-50i32..=10_050)),
        (0u32..=500, 0u32..=1_000, -127i16..=0),
        (any::<bool>(), tare, gateway),
    )
        .prop_map(
            |(
                (seq, boot, ts),
                (centi_lbs, level),
                (cv, pct, rssi),
                (stable, tare_status, gateway),
            )| Reading {
                v: CONTRACT_VERSION,
                seq,
                boot,
                ts,
                weight_lbs: f64::from(centi_lbs) / 100.0,
                level_pct: level.map(|l| f64::from(l) / 100.0),
                battery_v: f64::from(cv) / 100.0,
                battery_pct: f64::from(pct) / 10.0,
                rssi,
                stable,
                tare_status,
                gw: gateway
                    .as_ref()
                    .map(|(g, _)| GatewayId::try_from(g.as_str()).unwrap()),
                gseq: gateway.map(|(_, s)| s),
            },
        )
}

/// JSON snippets of every kind, including ones that break each rule.
const VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "17",
    "17.0",
    "17.5",
    "-61",
    "1e3",
    "2e-3",
    "3.94",
    "87.3",
    "130",
    "-0",
    "4294967296",
    "9007199254740992",
    "1773830400000",
    "1e308",
    "true",
    "false",
    "null",
    r#""""#,
    r#""complete""#,
    r#""online""#,
    r#""gw-1""#,
    r#""c-1""#,
    r#""a\"b""#,
    r#""\u00e9""#,
    r#""x y""#,
    "[]",
    "[1,2]",
    "{}",
    r#"{"duration_s":30}"#,
    r#"{"known_weight_lbs":20,"x":[{}]}"#,
    r#"{"zero_offset":1}"#,
];

/// Keys of every payload plus unknown ones.
const KEYS: &[&str] = &[
    "v",
    "v",
    "v",
    "seq",
    "boot",
    "ts",
    "weight_lbs",
    "level_pct",
    "battery_v",
    "battery_pct",
    "rssi",
    "stable",
    "tare_status",
    "gw",
    "gseq",
    "state",
    "fw",
    "maintenance",
    "id",
    "params",
    "issued_at",
    "expires_at",
    "ok",
    "result",
    "error",
    "ranges",
    "other",
    "s\\u0065q",
];

fn object_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (prop::sample::select(KEYS), prop::sample::select(VALUES)),
        0..14,
    )
    .prop_map(|pairs| {
        let body: Vec<String> = pairs.iter().map(|(k, v)| format!(r#""{k}":{v}"#)).collect();
        format!("{{{}}}", body.join(","))
    })
}

proptest! {
    #[test]
    fn random_objects_decode_alike_with_both_decoders(json in object_strategy()) {
        // `both` asserts agreement; the results themselves may be anything.
        let _ = both::<Reading>(&json);
        let _ = both::<Status>(&json);
        let _ = both::<Command>(&json);
        let _ = both::<Response>(&json);
        let _ = both::<GatewayAck>(&json);
    }

    #[test]
    fn valid_readings_round_trip(r in reading_strategy()) {
        prop_assert_eq!(r.validate(), Ok(()));
        let mut buf = [0u8; 512];
        let n = encode(&r, &mut buf).unwrap();
        let via_std = to_vec(&r).unwrap();
        prop_assert_eq!(&buf[..n], via_std.as_slice());
        prop_assert_eq!(decode::<Reading>(&buf[..n]), Ok(r.clone()));
        prop_assert_eq!(from_slice::<Reading>(&buf[..n]), Ok(r));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_both_decoders_agree(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        prop_assert_eq!(decode::<Reading>(&bytes), from_slice::<Reading>(&bytes));
        prop_assert_eq!(decode::<Command>(&bytes), from_slice::<Command>(&bytes));
        prop_assert_eq!(decode::<Status>(&bytes), from_slice::<Status>(&bytes));
    }

    #[test]
    fn mutated_readings_never_panic_and_both_decoders_agree(
        r in reading_strategy(),
        at in any::<prop::sample::Index>(),
        with in prop::sample::select(b"{}[]\",:-.0123456789eE truefalsnul\\".to_vec()),
    ) {
        let mut bytes = to_vec(&r).unwrap();
        let i = at.index(bytes.len());
        bytes[i] = with;
        prop_assert_eq!(decode::<Reading>(&bytes), from_slice::<Reading>(&bytes));
        bytes.truncate(i);
        prop_assert_eq!(decode::<Reading>(&bytes), from_slice::<Reading>(&bytes));
    }

    #[test]
    fn weights_outside_the_range_are_rejected(w in prop_oneof![-1.0e6..-5.000_001f64, 500.000_001f64..1.0e6]) {
        let mut r = reading();
        r.weight_lbs = w;
        let json = String::from_utf8(serde_json::to_vec(&r).unwrap()).unwrap();
        match both::<Reading>(&json) {
            Err(ContractError::OutOfRange { field: "weight_lbs", min, max, .. }) => {
                prop_assert_eq!((min, max), (-5.0, 500.0));
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn rssi_and_battery_ranges(rssi in any::<i16>(), pct in -200.0f64..200.0) {
        let mut r = reading();
        r.rssi = rssi;
        prop_assert_eq!(r.validate().is_ok(), (-127..=0).contains(&rssi));
        let mut r = reading();
        r.battery_pct = pct;
        prop_assert_eq!(r.validate().is_ok(), (0.0..=100.0).contains(&pct));
    }
}
