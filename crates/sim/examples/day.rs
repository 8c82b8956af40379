//! One keg through one simulated day, hour by hour: the true level, the level the firmware
//! reported, the pours and what else happened. No broker needed.
//!
//! `cargo run -p scalesense-sim --example day -- --seed 1 --tap 1`

use std::fmt::Write as _;

use clap::Parser;
use jiff::Timestamp;
use scalesense_firmware_core::Action;
use scalesense_proto::{LocationId, Topic};
use scalesense_sim::device::{RunOutcome, VirtualScale};
use scalesense_sim::plan::ScalePlan;
use scalesense_sim::world::{WorldConfig, WorldEvent};

/// Print a day of one tap.
#[derive(Debug, Parser)]
struct Args {
    /// Fleet seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Tap number (1 is the fleet's first scale).
    #[arg(long, default_value_t = 1)]
    tap: u32,
    /// Start of the day (UTC, the bar's time zone here).
    #[arg(long, default_value = "2026-03-18T12:00:00Z")]
    start: Timestamp,
    /// Hours to simulate.
    #[arg(long, default_value_t = 24)]
    hours: u64,
}

#[derive(Default)]
struct Hour {
    pours: u32,
    litres: f64,
    notes: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let location = LocationId::try_from("loc-001")?;
    let index = args.tap.checked_sub(1).ok_or("taps count from 1")?;
    let plan = ScalePlan::new(args.seed, index, args.tap, &location)?;
    let start_ms = u64::try_from(args.start.as_millisecond())?;
    println!(
        "{} on {}: {} ({}), {:.0} % full at the start, seed {}",
        plan.device_id,
        plan.tap_id,
        plan.beer.name,
        plan.keg.kind.name(),
        plan.initial_level * 100.0,
        args.seed
    );
    let mut vs = VirtualScale::new(plan, &WorldConfig::default(), start_ms);
    vs.scale_mut().on_connected(start_ms);
    println!();
    println!(
        "| hour (UTC) | true level % at the end | last reading's level_pct | stable | pours | litres drawn | events |"
    );
    println!("|---|---|---|---|---|---|---|");
    for h in 0..args.hours {
        let end = start_ms + (h + 1) * 3_600_000;
        let mut hour = Hour::default();
        let mut last_reading = None;
        loop {
            let outcome = vs.run_until(end, |_, event| match event {
                WorldEvent::PourStarted { .. } => hour.pours += 1,
                WorldEvent::PourFinished { litres } => hour.litres += litres,
                WorldEvent::Kicked => hour.notes.push_str("kicked; "),
                WorldEvent::KegPlaced { full_lbs } => {
                    let _ = write!(hour.notes, "new keg {full_lbs:.1} lb; ");
                }
                WorldEvent::LinkDown => hour.notes.push_str("Wi-Fi down; "),
                WorldEvent::LinkUp => hour.notes.push_str("Wi-Fi up; "),
                WorldEvent::Recharged => hour.notes.push_str("battery recharged; "),
                WorldEvent::KegRemoved => {}
            });
            let now = vs.now_ms();
            match outcome {
                RunOutcome::LinkChanged { up: false } => vs.scale_mut().on_disconnected(now),
                RunOutcome::LinkChanged { up: true } => vs.scale_mut().on_connected(now),
                RunOutcome::Reached => {}
            }
            while let Some(action) = vs.scale_mut().poll() {
                if let Action::Publish(publish) = action {
                    if let Ok(Topic::Reading(_)) = Topic::parse(publish.topic.as_str()) {
                        last_reading = Some(scalesense_proto::decode_reading(&publish.payload)?);
                    }
                    if let Some(id) = publish.ack {
                        vs.scale_mut().on_puback(id);
                    }
                }
            }
            if outcome == RunOutcome::Reached {
                break;
            }
        }
        let at = Timestamp::from_millisecond(i64::try_from(end - 3_600_000)?)?;
        let (reported, stable) = last_reading.map_or(("–".to_owned(), "–"), |r| {
            (
                r.level_pct.map_or("–".to_owned(), |l| format!("{l:.1}")),
                if r.stable { "yes" } else { "no" },
            )
        });
        println!(
            "| {} | {:.1} | {reported} | {stable} | {} | {:.2} | {} |",
            at.strftime("%H:%M"),
            vs.model().keg().level() * 100.0,
            hour.pours,
            hour.litres,
            hour.notes.trim_end_matches("; ")
        );
    }
    Ok(())
}
