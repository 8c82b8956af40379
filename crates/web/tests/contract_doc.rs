//! `docs/contract.md`, "WebSocket events", is the prose twin of `scalesense_web::ws`: every event
//! of seed 001's list has an example that parses with its `type`, every close code the code uses
//! is in the table, and the timings it states are the code's defaults.
#![allow(clippy::unwrap_used)]

use scalesense_web::{WsConfig, close_code};

/// Seed 001's events, plus what this server adds (`hello`, `command_completed`).
const EVENTS: [&str; 12] = [
    "hello",
    "ping",
    "reading",
    "alert_fired",
    "alert_cleared",
    "device_status",
    "maintenance_entered",
    "maintenance_exited",
    "tare_updated",
    "calibration_updated",
    "tap_updated",
    "command_completed",
];

fn section() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/contract.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let start = doc
        .find("\n## WebSocket events\n")
        .expect("docs/contract.md has a WebSocket events section");
    let rest = &doc[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
    rest[..end].to_owned()
}

/// `(type, json)` of every `<!-- ws-example: TYPE -->` block.
fn examples(section: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = section.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(kind) = line
            .trim()
            .strip_prefix("<!-- ws-example:")
            .and_then(|m| m.strip_suffix("-->"))
        else {
            continue;
        };
        assert_eq!(
            lines[i + 1].trim(),
            "```jsonc",
            "line after the marker for {kind}"
        );
        let end = lines[i + 2..]
            .iter()
            .position(|l| l.trim() == "```")
            .unwrap()
            + i
            + 2;
        out.push((kind.trim().to_owned(), lines[i + 2..end].join("\n")));
    }
    out
}

#[test]
fn every_event_has_an_example_that_parses_with_its_type() {
    let found = examples(&section());
    for event in EVENTS {
        assert!(
            found.iter().any(|(kind, _)| kind == event),
            "no example for {event}"
        );
    }
    for (kind, json) in &found {
        let value: serde_json::Value =
            serde_json::from_str(json).unwrap_or_else(|e| panic!("{kind}: {e}\n{json}"));
        assert_eq!(value["type"], kind.as_str(), "{json}");
        if !matches!(kind.as_str(), "hello" | "ping") {
            assert!(
                value["location_id"].is_string(),
                "{kind} names its location_id"
            );
        }
    }
}

#[test]
fn every_close_code_is_in_the_table() {
    let text = section();
    for code in [
        close_code::GOING_AWAY,
        close_code::BAD_MESSAGE,
        close_code::UNAUTHENTICATED,
        close_code::ACCESS_CHANGED,
        close_code::UNKNOWN_LOCATION,
        close_code::NO_PONG,
        close_code::TOO_SLOW,
    ] {
        assert!(
            text.contains(&format!("| `{code}` |")),
            "close code {code} is not in the table"
        );
    }
}

#[test]
fn the_stated_limits_are_the_defaults() {
    let text = section();
    let c = WsConfig::default();
    for stated in [
        format!("within **{} s**", c.auth_timeout.as_secs()),
        format!("Every **{} s**", c.ping_interval.as_secs()),
        format!("**bounded queue** ({} messages)", c.queue_capacity),
        format!("**{} s write timeout**", c.write_timeout.as_secs()),
        format!("every {} minutes", c.revalidate_interval.as_secs() / 60),
        "At most 10,000 connections".to_owned(),
    ] {
        assert!(
            text.contains(&stated),
            "the section does not say {stated:?}"
        );
    }
    assert_eq!(c.max_connections, 10_000);
}
