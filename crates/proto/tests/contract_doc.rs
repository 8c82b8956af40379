//! `docs/contract.md` is the prose twin of this crate: every ```json block in it is decoded
//! here, with both decoders, so the document cannot drift from the code.
//!
//! Convention: the line before each block is `<!-- example: KIND -->` (must decode and
//! round-trip) or `<!-- invalid: KIND FIELD -->` (must fail about FIELD, `-` for a malformed
//! payload), and an invalid block is followed by a line ``Error: `exact text` ``.
#![cfg(feature = "std")]
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fmt::Debug;

use scalesense_proto::{
    Command, CommandName, ContractError, GatewayAck, GatewayStatus, Ota, Payload, Reading,
    Response, Status, decode, from_slice, to_vec,
};

#[derive(Debug)]
struct Block {
    line: usize,
    kind: String,
    /// `None` for a valid example; the field (or `-`) and the error text for an invalid one.
    expect_error: Option<(String, String)>,
    json: String,
}

fn blocks(doc: &str) -> Vec<Block> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() != "```json" {
            continue;
        }
        let marker = i
            .checked_sub(1)
            .and_then(|p| lines[p].trim().strip_prefix("<!--"))
            .and_then(|m| m.strip_suffix("-->"))
            .unwrap_or_else(|| {
                panic!(
                    "line {}: json block without an example/invalid marker",
                    i + 1
                )
            })
            .trim();
        let end = lines[i + 1..]
            .iter()
            .position(|l| l.trim() == "```")
            .unwrap_or_else(|| panic!("line {}: unterminated json block", i + 1))
            + i
            + 1;
        let json = lines[i + 1..end].join("\n");
        let block = if let Some(kind) = marker.strip_prefix("example:") {
            Block {
                line: i + 1,
                kind: kind.trim().to_owned(),
                expect_error: None,
                json,
            }
        } else if let Some(rest) = marker.strip_prefix("invalid:") {
            let mut words = rest.split_whitespace();
            let (Some(kind), Some(field), None) = (words.next(), words.next(), words.next()) else {
                panic!("line {i}: expected `invalid: KIND FIELD`, got {marker:?}");
            };
            let text = lines
                .get(end + 1)
                .and_then(|l| l.strip_prefix("Error: `"))
                .and_then(|l| l.strip_suffix('`'))
                .unwrap_or_else(|| {
                    panic!("line {}: invalid block without an Error: line", end + 2)
                });
            Block {
                line: i + 1,
                kind: kind.to_owned(),
                expect_error: Some((field.to_owned(), text.to_owned())),
                json,
            }
        } else {
            panic!("line {i}: unknown marker {marker:?}");
        };
        out.push(block);
    }
    out
}

/// Decode with both decoders (they must agree), apply `rule`, and round-trip a valid value.
fn run<T: Payload + PartialEq + Debug>(
    json: &str,
    rule: impl Fn(&T) -> Result<(), ContractError>,
) -> Result<(), ContractError> {
    let core = decode::<T>(json.as_bytes()).and_then(|v| rule(&v).map(|()| v));
    let std = from_slice::<T>(json.as_bytes()).and_then(|v| rule(&v).map(|()| v));
    assert_eq!(core, std, "decoders disagree on {json}");
    let value = core?;
    let bytes = to_vec(&value).unwrap();
    assert_eq!(decode::<T>(&bytes).unwrap(), value, "round trip of {json}");
    Ok(())
}

/// No rule beyond the payload's own validation.
#[allow(clippy::unnecessary_wraps)]
fn none<T>(_: &T) -> Result<(), ContractError> {
    Ok(())
}

fn check(kind: &str, json: &str) -> Result<(), ContractError> {
    match kind {
        "reading" => run::<Reading>(json, none),
        "status" => run::<Status>(json, none),
        "command" => run::<Command>(json, none),
        "response" => run::<Response>(json, none),
        "ota" => run::<Ota>(json, none),
        "gateway_status" => run::<GatewayStatus>(json, none),
        "gateway_ack" => run::<GatewayAck>(json, none),
        other => {
            let name: CommandName = other
                .strip_prefix("command/")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unknown example kind {other:?}"));
            run::<Command>(json, |c| c.validate_for(name))
        }
    }
}

#[test]
fn every_json_block_in_the_contract_decodes_as_stated() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/contract.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let blocks = blocks(&doc);
    let mut valid_kinds = BTreeSet::new();
    let mut invalid = 0;
    for block in &blocks {
        let result = check(&block.kind, &block.json);
        match &block.expect_error {
            None => {
                assert_eq!(result, Ok(()), "line {}: {}", block.line, block.json);
                valid_kinds.insert(block.kind.split('/').next().unwrap().to_owned());
            }
            Some((field, text)) => {
                invalid += 1;
                let err = result.expect_err(&format!("line {} should be rejected", block.line));
                assert_eq!(
                    err.field().unwrap_or("-"),
                    field,
                    "line {}: {err}",
                    block.line
                );
                assert_eq!(&err.to_string(), text, "line {}", block.line);
            }
        }
    }
    let every_kind: BTreeSet<String> = [
        Reading::KIND,
        Status::KIND,
        Command::KIND,
        Response::KIND,
        Ota::KIND,
        GatewayStatus::KIND,
        GatewayAck::KIND,
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(
        valid_kinds, every_kind,
        "every payload needs a valid example"
    );
    assert!(invalid >= 25, "only {invalid} invalid examples");
}

#[test]
fn the_contract_keeps_its_sections() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/contract.md");
    let doc = std::fs::read_to_string(path).unwrap();
    for heading in [
        "## Topics",
        "## Encoding rules (all payloads)",
        "### Reading",
        "### Status",
        "### Command",
        "### Response",
        "### OTA",
        "### Gateway status",
        "### Gateway ack",
        "## Gateway forwarding: `gw`, `gseq` and `gw/ack`",
        "## Errors",
        "## WebSocket events",
    ] {
        assert!(
            doc.lines().any(|l| l == heading),
            "docs/contract.md lost {heading:?}"
        );
    }
    // Every command and topic filter the code knows is written down.
    for name in CommandName::ALL {
        assert!(doc.contains(&format!("`{name}`")), "{name} undocumented");
    }
    for filter in [
        scalesense_proto::topic::READINGS_FILTER,
        scalesense_proto::topic::STATUS_FILTER,
        scalesense_proto::topic::RESPONSE_FILTER,
        scalesense_proto::topic::COMMAND_FILTER,
        scalesense_proto::topic::OTA_FILTER,
        scalesense_proto::topic::GATEWAY_STATUS_FILTER,
        scalesense_proto::topic::GATEWAY_ACK_FILTER,
    ] {
        assert!(
            doc.contains(&format!("`{filter}`")),
            "{filter} undocumented"
        );
    }
    assert!(doc.contains(scalesense_proto::payload::LAST_WILL_PAYLOAD));
}
