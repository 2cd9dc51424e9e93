//! `GET /api/v1/events`: server-sent events, one `change` per state change of a request
//! the caller may read (every request for auditors and admins).

use axum::extract::State;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use tokio::sync::broadcast;
use tokio_stream::wrappers::ReceiverStream;

use crate::auth::Principal;
use crate::http::AppState;
use crate::http::extract::Caller;
use crate::service::{Change, Engine};

pub(super) async fn events(State(s): State<AppState>, Caller(who): Caller) -> impl IntoResponse {
    stream(&s, who)
}

/// The change stream, for whoever the route has authenticated (bearer token or UI
/// session). A task forwards the broadcast until the client goes or the server stops;
/// changes of requests `who` may not read are left out (each is checked when it comes,
/// since who may read a request grows as it escalates and is voted on).
pub(crate) fn stream(s: &AppState, who: Principal) -> impl IntoResponse + use<> {
    let mut rx = s.engine.changes.subscribe();
    let mut stop = s.shutdown.clone();
    let engine = s.engine.clone();
    let everything = engine.reads_everything(&who);
    let (tx, out) = tokio::sync::mpsc::channel::<Result<Event, std::convert::Infallible>>(64);
    tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                m = rx.recv() => match m {
                    Ok(c) if !everything && !readable(&engine, &who, &c).await => continue,
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

/// Whether `who` may read the request of change `c`; a request that cannot be read from
/// the store now is left out.
async fn readable(engine: &Engine, who: &Principal, c: &Change) -> bool {
    engine.load_for(who, &c.id).await.is_ok()
}
