//! The dashboard (BRIEF §9, issue 6): the static web app in `web/`, embedded in the binary and
//! served at `/`, and the live-event WebSocket at `GET /api/v1/ws`.
//!
//! This crate never depends on the server: the server merges [`router`] into its own router and
//! reaches in through two small traits — [`WsAuth`] (who is on the other end of a socket, and
//! which locations may they see) and [`LiveFeed`] (one location's committed changes, already
//! serialised as JSON text). The crate holds no state of the product and never writes anything:
//! it only shows what the REST API and the event bus hand it.

pub mod assets;
pub mod feed;
pub mod ws;

pub use feed::{LiveFeed, LiveHub, LiveItem, LiveSubscription};
pub use ws::{Viewer, WsAuth, WsConfig, WsState, close_code};

/// Everything this crate serves: the dashboard's files ([`assets::router`]) and the WebSocket
/// ([`ws::router`]). Merge it into the server's router next to the REST API.
pub fn router(ws: WsState) -> axum::Router {
    assets::router().merge(ws::router(ws))
}
