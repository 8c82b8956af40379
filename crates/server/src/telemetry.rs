//! Prometheus metrics: the names the server records and the one process-wide recorder that
//! `GET /metrics` renders.
//!
//! Metric names live here so the pipeline, the brokers and the HTTP layer cannot drift apart and
//! operators' dashboards keep working. Labels are always from a small fixed set (a dead-letter
//! kind, a broker drop reason), never a device id or a payload, so the series count stays bounded.
//! Recording a metric must never block or fail ingest: the `metrics` facade is lock-free and a
//! missing recorder simply discards.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Readings newly stored.
pub const READINGS_INGESTED: &str = "scalesense_readings_ingested_total";
/// Readings already stored (QoS-1 redelivery, gateway resend).
pub const READINGS_DUPLICATE: &str = "scalesense_readings_duplicate_total";
/// Group commits run.
pub const BATCHES: &str = "scalesense_ingest_batches_total";
/// Messages per group commit (histogram).
pub const BATCH_SIZE: &str = "scalesense_ingest_batch_size";
/// Milliseconds from receipt to commit (histogram).
pub const INGEST_LAG_MS: &str = "scalesense_ingest_lag_milliseconds";
/// Messages answered `Unavailable` because the database failed (nothing acknowledged).
pub const INGEST_UNAVAILABLE: &str = "scalesense_ingest_unavailable_total";
/// Messages stored as dead letters, label `reason` = the error kind.
pub const DEAD_LETTERS: &str = "scalesense_dead_letters_total";
/// Device statuses recorded.
pub const STATUSES: &str = "scalesense_device_statuses_total";
/// Command responses recorded.
pub const RESPONSES: &str = "scalesense_command_responses_total";
/// Answered commands whose retained message could not be queued for clearing.
pub const RETAINED_CLEAR_DROPPED: &str = "scalesense_retained_clear_dropped_total";
/// Gateway statuses received.
pub const GATEWAY_STATUSES: &str = "scalesense_gateway_statuses_total";
/// Queue depth each gateway last reported (gauge, label `gateway`: gateways are few and known).
pub const GATEWAY_QUEUE_DEPTH: &str = "scalesense_gateway_queue_depth";
/// `gw/ack` confirmations published.
pub const GATEWAY_ACKS: &str = "scalesense_gateway_acks_total";
/// `gw/ack` confirmations that could not be queued for publishing (the gateway resends).
pub const GATEWAY_ACKS_FAILED: &str = "scalesense_gateway_acks_failed_total";
/// Whether the server's own MQTT client is connected (gauge 0/1).
pub const BROKER_CONNECTED: &str = "scalesense_broker_connected";
/// MQTT clients connected to the embedded broker (gauge).
pub const BROKER_CONNECTIONS: &str = "scalesense_broker_connections";
/// Messages the embedded broker dropped, label `reason`.
pub const BROKER_DROPPED: &str = "scalesense_broker_dropped_messages_total";
/// Events a slow subscriber missed (it lagged behind its bounded channel).
pub const EVENT_BUS_DROPPED: &str = "scalesense_event_bus_dropped_total";
/// Events published on the bus.
pub const EVENTS_PUBLISHED: &str = "scalesense_events_published_total";

/// Batch size buckets: a group commit takes up to the pipeline's cap (2,048 by default).
const BATCH_SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0,
];
/// Lag buckets in milliseconds: a healthy commit is a few ms; seconds mean back-pressure.
const LAG_MS_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use: every component that records
/// metrics calls this when it starts, so nothing is recorded before the recorder exists. A
/// process has one global recorder; tests that start several servers in one process share it. If another recorder was
/// installed first, this one still renders (empty) rather than failing the server.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), BATCH_SIZE_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(INGEST_LAG_MS.into()), LAG_MS_BUCKETS));
        let builder = match builder {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "metric buckets refused; histograms render as summaries");
                PrometheusBuilder::new()
            }
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if let Err(e) = metrics::set_global_recorder(recorder) {
            tracing::warn!(error = %e, "a metrics recorder was already installed");
        }
        handle
    })
}

/// Renders every metric in the Prometheus text format.
pub fn render() -> String {
    let handle = handle();
    handle.run_upkeep();
    handle.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_metrics_render_in_prometheus_text() {
        handle();
        metrics::counter!(DEAD_LETTERS, "reason" => "malformed").increment(2);
        metrics::histogram!(BATCH_SIZE).record(3.0);
        let text = render();
        assert!(
            text.contains("scalesense_dead_letters_total{reason=\"malformed\"}"),
            "{text}"
        );
        assert!(
            text.contains("scalesense_ingest_batch_size_bucket{le=\"4\"}"),
            "{text}"
        );
    }
}
