//! `GET /events` without a queue, in a cluster. On one node the gateway
//! answers every `/events` request itself; a cluster's router cannot know
//! which node a new queue belongs on before the caller is authenticated,
//! so it sends this one request here, and the queue is made on the user's
//! node through the bus.

use crate::api::messages::client_name;
use crate::users::User;
use crate::App;
use serde_json::{Map, Value};
use squall_proto::api::{ApiRequest, Params};
use squall_proto::bus::BusError;
use squall_proto::error::{ApiError, ApiResult};
use squall_proto::queue_spec::queue_spec;

/// Creates a queue (`dont_block` required, as Zulip) and answers with its
/// id and the events it already holds.
pub async fn create_queue(app: &App, user: &User, req: &ApiRequest, p: &mut Params) -> ApiResult {
    if p.has("queue_id") {
        // The router sends polls of existing queues to their node.
        return Err(ApiError::bad_request("Polls of an event queue go to its gateway node"));
    }
    let client = client_name(req, p);
    let spec = queue_spec(&user.authed(), client, req.header("user-agent"), None, p, false)?;
    if !p.bool("dont_block")?.unwrap_or(false) {
        return Err(ApiError::bad_request("Missing 'queue_id' argument"));
    }
    let unavailable = |e: BusError| {
        tracing::warn!(error = %e, "creating a queue on its gateway node failed");
        ApiError::busy("The event system is unavailable; try again")
    };
    let queue_id = app.bus.allocate_queue(spec).await.map_err(unavailable)?;
    let events = app.bus.peek_events(user.id, queue_id.clone()).await.map_err(unavailable)?;
    let mut m = Map::new();
    m.insert("events".into(), Value::Array(events));
    m.insert("queue_id".into(), queue_id.into());
    Ok(m)
}
