//! `GET /api/v1/events`: server-sent events, one `change` per state change of any request.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use tokio::sync::broadcast;
use tokio_stream::wrappers::ReceiverStream;

use crate::http::AppState;
use crate::http::extract::Caller;

pub(super) async fn events(State(s): State<AppState>, _c: Caller) -> impl IntoResponse {
    stream(&s)
}

/// The change stream, for whoever the route has authenticated (bearer token or UI
/// session). A task forwards the broadcast until the client goes or the server stops.
pub(crate) fn stream(s: &AppState) -> impl IntoResponse + use<> {
    let mut rx = s.engine.changes.subscribe();
    let mut stop = s.shutdown.clone();
    let (tx, out) = tokio::sync::mpsc::channel::<Result<Event, std::convert::Infallible>>(64);
    tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                m = rx.recv() => match m {
                    Ok(c) => Event::default().event("change").json_data(&c).unwrap_or_else(|_| Event::default().comment("skipped")),
                    Err(broadcast::error::RecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = stop.changed() => return,
            };
            if tx.send(Ok(ev)).await.is_err() {
                return;
            }
        }
    });
    Sse::new(ReceiverStream::new(out)).keep_alive(KeepAlive::default())
}
