//! The API's way to a scale: commands are published retained with QoS 1 on
//! `keg/command/{device}/{name}` through the server's own MQTT client, so a scale that is
//! offline receives the command when it reconnects (if it has not expired by then — the scale
//! checks `expires_at` and refuses an expired command). The API records the command in the
//! store before it gets here; a failed publish leaves it pending and the caller is told.

use async_trait::async_trait;
use scalesense_api::{CommandSink, CommandSinkError};
use scalesense_proto::{CommandName, DeviceId, topic::Topic};

use crate::subscriber::LinkPublisher;

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
