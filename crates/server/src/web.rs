//! The dashboard's live side, wired to the server's parts: WebSocket credentials are resolved by
//! the REST API's own rules ([`ApiWsAuth`]: session cookie or API token, the user's locations),
//! and live events come from the event bus, serialised as the WebSocket sends them
//! ([`BusFeed`]). The REST API's tap writes go out on the bus as `tap_updated`
//! ([`BusChanges`]). None of them may block.

use async_trait::async_trait;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use scalesense_api::ApiState;
use scalesense_api::auth::{Caller, Principal};
use scalesense_proto::LocationId;
use scalesense_web::{LiveFeed, LiveItem, LiveSubscription, Viewer, WsAuth};

use crate::clock::Clock;
use crate::events::{Event, EventBus};

/// [`WsAuth`] over the REST API's credential rules.
#[derive(Debug, Clone)]
pub struct ApiWsAuth(pub ApiState);

impl ApiWsAuth {
    async fn viewer(&self, headers: &HeaderMap) -> Option<Viewer> {
        let caller = match Caller::resolve(&self.0, &Method::GET, headers).await {
            Ok(caller) => caller,
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket credentials refused");
                return None;
            }
        };
        let locations = match caller.allowed_locations {
            Some(locations) => locations,
            None => match self.0.store.locations(&caller.account).await {
                Ok(all) => all.into_iter().map(|l| l.id).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list the account's locations for a WebSocket");
                    return None;
                }
            },
        };
        let user = match &caller.principal {
            Principal::Session { user, .. } => user.to_string(),
            Principal::Token { id, .. } => format!("token:{id}"),
        };
        Some(Viewer {
            account: caller.account.to_string(),
            user,
            role: caller.role,
            locations,
        })
    }
}

#[async_trait]
impl WsAuth for ApiWsAuth {
    async fn authenticate_cookie(&self, cookie_header: &str) -> Option<Viewer> {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(cookie_header).ok()?);
        self.viewer(&headers).await
    }

    async fn authenticate_token(&self, token: &str) -> Option<Viewer> {
        let mut headers = HeaderMap::new();
        let bearer = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
        headers.insert(header::AUTHORIZATION, bearer);
        self.viewer(&headers).await
    }
}

/// [`LiveFeed`] over the event bus: each event as the JSON text clients receive
/// (`{"type":"reading",…}`, `Event`'s own serialisation).
#[derive(Debug, Clone)]
pub struct BusFeed(pub EventBus);

impl LiveFeed for BusFeed {
    fn subscribe(&self, location: &LocationId) -> LiveSubscription {
        LiveSubscription::unfold(self.0.subscribe(location), |mut subscription| async move {
            loop {
                let event = subscription.recv().await?;
                match serde_json::to_string(&*event) {
                    Ok(text) => return Some((LiveItem::Event(text.into()), subscription)),
                    Err(e) => {
                        tracing::error!(error = %e, kind = event.kind(), "event not serialisable");
                    }
                }
            }
        })
    }
}

/// The REST API's [`ChangeSink`](scalesense_api::state::ChangeSink): a tap write becomes a
/// `tap_updated` event; the dashboard reloads the tap from the API.
#[derive(Debug, Clone)]
pub struct BusChanges {
    events: EventBus,
    clock: std::sync::Arc<dyn Clock>,
}

impl BusChanges {
    pub fn new(events: EventBus, clock: std::sync::Arc<dyn Clock>) -> Self {
        Self { events, clock }
    }
}

impl scalesense_api::state::ChangeSink for BusChanges {
    fn tap_changed(&self, location: &LocationId, tap: &scalesense_proto::TapId, changed: &[&str]) {
        self.events.publish(Event::TapUpdated {
            location_id: location.clone(),
            tap_id: tap.clone(),
            changed: changed.iter().map(|&c| c.to_owned()).collect(),
            at: self.clock.now_ms(),
        });
    }
}
