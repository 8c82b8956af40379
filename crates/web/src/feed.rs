//! Where a WebSocket gets its events from: [`LiveFeed`] hands out one location's committed
//! changes as already-serialised JSON texts, so an event is turned into text once, not once per
//! connected client.
//!
//! The server implements [`LiveFeed`] over its event bus; [`LiveHub`] is a ready-made one (a
//! bounded broadcast channel per location) for a server that publishes serialised events, and for
//! tests. A feed must never make its publisher wait for a subscriber: a subscriber that falls
//! behind loses the oldest events and is told so ([`LiveItem::Lagged`]), which the WebSocket
//! turns into a disconnect (the client then resyncs from the REST API).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures_util::Stream;
use futures_util::stream::{BoxStream, StreamExt};
use scalesense_proto::LocationId;
use tokio::sync::broadcast;

/// One thing a subscription yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveItem {
    /// An event as the JSON text sent to clients, e.g. `{"type":"reading",…}`.
    Event(Arc<str>),
    /// This many events were dropped because the subscriber fell behind.
    Lagged(u64),
}

/// One location's events from the moment of subscribing; ends when the feed goes away.
pub struct LiveSubscription {
    stream: BoxStream<'static, LiveItem>,
}

impl fmt::Debug for LiveSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveSubscription").finish_non_exhaustive()
    }
}

impl LiveSubscription {
    /// A subscription over any stream of items.
    pub fn from_stream(stream: impl Stream<Item = LiveItem> + Send + 'static) -> Self {
        Self {
            stream: stream.boxed(),
        }
    }

    /// A subscription driven by an async function over a state (the state is typically the
    /// server's own subscription handle): `next(state)` yields the next item and the state, or
    /// `None` when the feed is gone.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use scalesense_web::{LiveItem, LiveSubscription};
    /// // Over a channel of already-serialised events:
    /// let (tx, rx) = tokio::sync::mpsc::channel::<Arc<str>>(16);
    /// let sub = LiveSubscription::unfold(rx, |mut rx| async move {
    ///     let text = rx.recv().await?;
    ///     Some((LiveItem::Event(text), rx))
    /// });
    /// # drop((tx, sub));
    /// ```
    pub fn unfold<S, F, Fut>(state: S, next: F) -> Self
    where
        S: Send + 'static,
        F: FnMut(S) -> Fut + Send + 'static,
        Fut: Future<Output = Option<(LiveItem, S)>> + Send + 'static,
    {
        Self::from_stream(futures_util::stream::unfold(state, next))
    }

    /// A subscription over a broadcast channel of serialised events; lag is reported.
    pub fn from_broadcast(receiver: broadcast::Receiver<Arc<str>>) -> Self {
        Self::unfold(receiver, |mut receiver| async move {
            let item = match receiver.recv().await {
                Ok(text) => LiveItem::Event(text),
                Err(broadcast::error::RecvError::Lagged(missed)) => LiveItem::Lagged(missed),
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((item, receiver))
        })
    }
}

impl Stream for LiveSubscription {
    type Item = LiveItem;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LiveItem>> {
        self.stream.poll_next_unpin(cx)
    }
}

/// A source of live events per location.
pub trait LiveFeed: Send + Sync + fmt::Debug + 'static {
    /// Subscribes to `location`'s events from now on.
    fn subscribe(&self, location: &LocationId) -> LiveSubscription;
}

/// Events kept per location for a subscriber that is momentarily behind.
pub const DEFAULT_HUB_CAPACITY: usize = 256;

/// A [`LiveFeed`] of serialised events: one bounded broadcast channel per location, created on
/// the first subscription and dropped once nobody listens. Publishing never waits.
#[derive(Debug)]
pub struct LiveHub {
    channels: Mutex<HashMap<LocationId, broadcast::Sender<Arc<str>>>>,
    capacity: usize,
}

impl Default for LiveHub {
    fn default() -> Self {
        Self::new(DEFAULT_HUB_CAPACITY)
    }
}

impl LiveHub {
    /// A hub keeping up to `capacity` events per location for subscribers that are behind.
    pub fn new(capacity: usize) -> Self {
        Self {
            channels: Mutex::default(),
            capacity: capacity.max(1),
        }
    }

    /// Publishes an event's JSON text to `location`'s subscribers; returns how many there were.
    pub fn publish(&self, location: &LocationId, text: Arc<str>) -> usize {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(sender) = channels.get(location) else {
            return 0;
        };
        if let Ok(receivers) = sender.send(text) {
            receivers
        } else {
            // Every subscriber of this location is gone: forget the channel.
            channels.remove(location);
            0
        }
    }
}

impl LiveFeed for LiveHub {
    fn subscribe(&self, location: &LocationId) -> LiveSubscription {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        let receiver = channels
            .entry(location.clone())
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .subscribe();
        LiveSubscription::from_broadcast(receiver)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(s: &str) -> LocationId {
        LocationId::try_from(s).unwrap()
    }

    #[tokio::test]
    async fn a_hub_delivers_per_location_and_reports_lag() {
        let hub = LiveHub::new(2);
        let mut one = hub.subscribe(&loc("loc-001"));
        let mut two = hub.subscribe(&loc("loc-002"));
        assert_eq!(hub.publish(&loc("loc-001"), "a".into()), 1);
        assert_eq!(hub.publish(&loc("loc-003"), "nobody".into()), 0);
        assert_eq!(one.next().await, Some(LiveItem::Event("a".into())));
        for text in ["b", "c", "d", "e"] {
            hub.publish(&loc("loc-001"), text.into());
        }
        // Capacity 2: "b" and "c" were overwritten before this subscriber read them.
        assert_eq!(one.next().await, Some(LiveItem::Lagged(2)));
        assert_eq!(one.next().await, Some(LiveItem::Event("d".into())));
        hub.publish(&loc("loc-002"), "x".into());
        assert_eq!(two.next().await, Some(LiveItem::Event("x".into())));
    }

    #[tokio::test]
    async fn a_channel_without_subscribers_is_forgotten() {
        let hub = LiveHub::default();
        let sub = hub.subscribe(&loc("loc-001"));
        drop(sub);
        assert_eq!(hub.publish(&loc("loc-001"), "a".into()), 0);
        assert!(hub.channels.lock().unwrap().is_empty());
    }
}
