//! What a delivery sends: the payload of an outbox event and its Standard Webhooks
//! signature (`webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one per
//! live secret, space-separated).
//!
//! Pure: it must not send anything or read the clock.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::config::Secret;
use crate::store::outbox::OutboxEvent;

/// The JSON body of an event: `{type, timestamp, data}` as Standard Webhooks recommends.
pub fn payload(e: &OutboxEvent) -> String {
    let parse = |s: &Option<String>| {
        s.as_deref()
            .map(|t| serde_json::from_str::<Value>(t).unwrap_or_else(|_| Value::String(t.into())))
    };
    let mut data = json!({
        "job_id": e.job_id.0,
        "client_id": e.client_id.0,
        "tool": e.tool,
        "state": e.state,
        "attempt": e.attempt,
    });
    if let Some(r) = parse(&e.result) {
        data["result"] = r;
    }
    if let Some(err) = &e.error {
        data["error"] = Value::String(err.clone());
    }
    if let Some(q) = parse(&e.input_requests) {
        data["input_requests"] = q;
    }
    let at = chrono::DateTime::from_timestamp_millis(e.at)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    json!({"type": format!("job.{}", e.state), "timestamp": at, "data": data}).to_string()
}

/// The `webhook-signature` header: `v1,<sig>` for each key, space-separated.
pub fn signature(keys: &[Secret], id: &str, timestamp: i64, body: &str) -> String {
    keys.iter()
        .map(|k| {
            let mut mac =
                Hmac::<Sha256>::new_from_slice(k.expose()).expect("HMAC takes a key of any size");
            mac.update(format!("{id}.{timestamp}.").as_bytes());
            mac.update(body.as_bytes());
            let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
            format!("v1,{sig}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_as_the_standard_webhooks_reference() {
        // The Standard Webhooks specification's example (whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw).
        let key = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        let body = r#"{"test": 2432232314}"#;
        let sig = signature(
            &[Secret::new(key)],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
