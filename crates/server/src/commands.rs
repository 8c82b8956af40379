//! The API's way to a scale: commands are published retained with QoS 1 on
//! `keg/command/{device}/{name}` through the server's own MQTT client, so a scale that is
//! offline receives the command when it reconnects (if it has not expired by then — the scale
//! checks `expires_at` and refuses an expired command). The API records the command in the
//! store before it gets here; a failed publish leaves it pending and the caller is told.
//!
//! A command's retained message is cleared once it is answered (by the pipeline) or expired
//! (by the sweep here), so a scale is never handed a finished command again.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use scalesense_api::{CommandSink, CommandSinkError};
use scalesense_proto::{CommandName, DeviceId, topic::Topic};
use scalesense_store::{Millis, Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::pipeline::AckPublisher;
use crate::subscriber::LinkPublisher;
use crate::telemetry;

/// Publishes commands through the server's MQTT link.
#[derive(Debug, Clone)]
pub struct MqttCommandSink {
    publisher: LinkPublisher,
}

impl MqttCommandSink {
    pub fn new(publisher: LinkPublisher) -> Self {
        Self { publisher }
    }
}

#[async_trait]
impl CommandSink for MqttCommandSink {
    async fn publish_command(
        &self,
        device: &DeviceId,
        name: CommandName,
        command: &scalesense_proto::Command,
    ) -> Result<(), CommandSinkError> {
        let topic = Topic::Command {
            device: device.clone(),
            command: name,
        }
        .write_to();
        let payload = scalesense_proto::to_vec(command)
            .map_err(|e| CommandSinkError(format!("the command does not encode: {e}")))?;
        self.publisher
            .publish_retained(topic.as_str(), payload)
            .await
            .map_err(CommandSinkError)
    }
}

/// How often commands past their expiry are looked for.
pub const EXPIRY_SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Deletes a command's retained message (an empty retained publish on
/// `keg/command/{device}/{name}`), once it is answered or expired: a scale that reconnects later
/// is then not handed it again. A clear that cannot be queued is counted and logged; the scale
/// would answer a redelivered id as a duplicate without running it.
pub fn clear_retained_command(acks: &dyn AckPublisher, device: &DeviceId, name: &str) {
    let Ok(command) = name.parse::<CommandName>() else {
        tracing::warn!(device_id = %device, command = name, "command has an unknown name; its retained message is left");
        return;
    };
    let topic = Topic::Command {
        device: device.clone(),
        command,
    }
    .write_to();
    if !acks.clear_retained(topic.as_str()) {
        metrics::counter!(telemetry::RETAINED_CLEAR_DROPPED).increment(1);
        tracing::warn!(device_id = %device, topic = topic.as_str(), "could not queue the clearing of a retained command");
    }
}

/// Marks every command still pending or delivered at `now` past its expiry as expired and
/// clears its retained message. Returns how many expired. Idempotent, so every replica may run
/// it.
pub async fn expire_due(
    store: &dyn Store,
    acks: &dyn AckPublisher,
    now: Millis,
) -> Result<usize, StoreError> {
    let expired = store.expire_commands(now).await?;
    for command in &expired {
        clear_retained_command(acks, &command.device_id, &command.name);
    }
    Ok(expired.len())
}

/// Runs [`expire_due`] every [`EXPIRY_SWEEP_EVERY`] until `stop`.
pub async fn sweep_expired(
    store: Arc<dyn Store>,
    acks: Arc<dyn AckPublisher>,
    clock: Arc<dyn Clock>,
    stop: CancellationToken,
) {
    let mut every = tokio::time::interval(EXPIRY_SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        match expire_due(store.as_ref(), acks.as_ref(), clock.now_ms()).await {
            Ok(0) => {}
            Ok(expired) => tracing::info!(expired, "commands expired unanswered"),
            Err(e) => tracing::warn!(error = %e, "could not expire commands; trying again later"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use scalesense_store::{AccountId, NewCommand, SqliteStore};

    use super::*;

    /// Records the topics it is asked to clear.
    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl AckPublisher for Recorder {
        fn publish(&self, _topic: &str, _payload: Vec<u8>) -> bool {
            true
        }

        fn clear_retained(&self, topic: &str) -> bool {
            self.0.lock().unwrap().push(topic.to_owned());
            true
        }
    }

    #[tokio::test]
    async fn expired_commands_are_marked_and_their_retained_topics_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        crate::demo::ensure(&store, 2, Some("pw"), 1_700_000_000_000)
            .await
            .unwrap();
        let account = AccountId::try_from(crate::demo::ACCOUNT).unwrap();
        for (id, device, expires_at) in [
            ("cmd-old", "SCALE-0001", 1_000),
            ("cmd-new", "SCALE-0002", 5_000),
        ] {
            store
                .create_command(
                    &account,
                    &NewCommand {
                        id: id.try_into().unwrap(),
                        device_id: device.try_into().unwrap(),
                        name: "tare_empty".into(),
                        params: serde_json::json!({}),
                        issued_by: "test".into(),
                        issued_at: 0,
                        expires_at,
                    },
                )
                .await
                .unwrap();
        }
        let acks = Recorder::default();

        assert_eq!(expire_due(&store, &acks, 2_000).await.unwrap(), 1);
        assert_eq!(
            *acks.0.lock().unwrap(),
            ["keg/command/SCALE-0001/tare_empty"]
        );
        let old = store
            .command(&account, &"cmd-old".try_into().unwrap())
            .await
            .unwrap();
        assert_eq!(old.state, scalesense_store::CommandState::Expired);
        let new = store
            .command(&account, &"cmd-new".try_into().unwrap())
            .await
            .unwrap();
        assert_eq!(new.state, scalesense_store::CommandState::Pending);
        // A second sweep finds nothing more to do.
        assert_eq!(expire_due(&store, &acks, 2_000).await.unwrap(), 0);
        assert_eq!(acks.0.lock().unwrap().len(), 1);
    }
}
