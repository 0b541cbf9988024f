//! `server_identity`: who this server is (id, key fingerprint) and what it supports.

use serde_json::json;

use super::{ArgReader, CallCtx, Reply, SyncTool};
use crate::envelope::CallError;
use crate::json::{Json, Object};
use crate::store::BoxFuture;

pub struct ServerIdentity;

impl SyncTool for ServerIdentity {
    fn name(&self) -> &'static str {
        "server_identity"
    }
    fn description(&self) -> &'static str {
        "Returns the server id, the fingerprint of its signing key (first 16 hex of sha256) and its capabilities."
    }
    fn input_schema(&self) -> serde_json::Value {
        json!({"type": "object", "properties": {}, "additionalProperties": false})
    }
    fn call<'a>(
        &'a self,
        ctx: CallCtx<'a>,
        args: &'a Object,
    ) -> BoxFuture<'a, Result<Reply, CallError>> {
        Box::pin(async move {
            ArgReader::new(args, &[])?;
            Ok(Reply::ok(Object::from_pairs([
                ("server_id".to_string(), Json::str(&ctx.server.server_id)),
                (
                    "fingerprint".to_string(),
                    Json::str(&ctx.server.fingerprint),
                ),
                (
                    "capabilities".to_string(),
                    Json::Object(ctx.server.capabilities.clone()),
                ),
            ])))
        })
    }
}
