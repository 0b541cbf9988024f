//! Opaque access tokens, asked about at the authorization server's RFC 7662 introspection
//! endpoint as a confidential client. mcpq holds the answer to the same checks as a JWT's
//! claims: `active`, then `exp`/`nbf` with the skew, `iss` (when given) among the issuers, and
//! `aud` — required, so a token issued for another resource at the same server is refused.
//!
//! It must not cache (`oauth` does, answers and refusals alike, so a flood of made-up tokens
//! costs one question each per cache period, not one per request) or decide the grant.

use serde_json::{Map, Value};

use super::Refusal;
use crate::config::oauth::Introspection;

/// What the token's owner checks against: accepted issuers and audiences, and the skew.
pub struct Expect<'a> {
    pub issuers: &'a [String],
    pub audiences: &'a [String],
    pub skew: i64,
}

/// The claims of an active token meant for this resource.
pub async fn introspect(
    http: &reqwest::Client,
    cfg: &Introspection,
    token: &str,
    expect: &Expect<'_>,
    now_secs: i64,
) -> Result<Map<String, Value>, Refusal> {
    let failed = Refusal::Invalid("the token could not be introspected");
    let mut form = reqwest::Url::parse("http://form.invalid/").map_err(|_| failed.clone())?;
    form.query_pairs_mut()
        .append_pair("token", token)
        .append_pair("token_type_hint", "access_token");
    let r = http
        .post(&cfg.url)
        .basic_auth(
            &cfg.client_id,
            Some(String::from_utf8_lossy(cfg.secret.expose())),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(form.query().unwrap_or("").to_string())
        .send()
        .await
        .map_err(|e| {
            tracing::warn!(url = %cfg.url, error = %e, "token introspection failed");
            failed.clone()
        })?;
    if !r.status().is_success() {
        tracing::warn!(url = %cfg.url, status = %r.status(), "token introspection refused");
        return Err(failed);
    }
    let claims: Map<String, Value> = r.json().await.map_err(|_| failed.clone())?;
    check(&claims, expect, now_secs)?;
    Ok(claims)
}

fn check(c: &Map<String, Value>, expect: &Expect<'_>, now: i64) -> Result<(), Refusal> {
    if c.get("active") != Some(&Value::Bool(true)) {
        return Err(Refusal::Invalid("token not active"));
    }
    if c.get("exp")
        .and_then(Value::as_i64)
        .is_some_and(|e| e + expect.skew <= now)
    {
        return Err(Refusal::Invalid("token expired"));
    }
    if c.get("nbf")
        .and_then(Value::as_i64)
        .is_some_and(|n| n - expect.skew > now)
    {
        return Err(Refusal::Invalid("token not yet valid"));
    }
    if let Some(iss) = c.get("iss") {
        if !iss
            .as_str()
            .is_some_and(|i| expect.issuers.iter().any(|x| x == i))
        {
            return Err(Refusal::Invalid("issuer not trusted"));
        }
    }
    let ours = |a: &Value| {
        a.as_str()
            .is_some_and(|a| expect.audiences.iter().any(|x| x == a))
    };
    let for_us = match c.get("aud") {
        Some(Value::Array(list)) => list.iter().any(ours),
        Some(a) => ours(a),
        None => false,
    };
    if !for_us {
        return Err(Refusal::Invalid("token is for another resource"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_answer_is_held_to_the_checks_of_a_jwt() {
        let (iss, aud) = (
            vec!["https://as".to_string()],
            vec!["https://rs/mcp".to_string()],
        );
        let e = Expect {
            issuers: &iss,
            audiences: &aud,
            skew: 5,
        };
        let ok = json!({"active": true, "iss": "https://as", "aud": ["x", "https://rs/mcp"], "exp": 100});
        let m = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(check(&m(ok.clone()), &e, 50), Ok(()));
        assert_eq!(
            check(&m(ok), &e, 105),
            Err(Refusal::Invalid("token expired"))
        );
        assert!(check(&m(json!({"active": false})), &e, 0).is_err());
        assert!(check(&m(json!({"active": true, "aud": "https://other"})), &e, 0).is_err());
        assert!(check(&m(json!({"active": true})), &e, 0).is_err());
        assert!(check(
            &m(json!({"active": true, "aud": "https://rs/mcp", "iss": "https://evil"})),
            &e,
            0
        )
        .is_err());
        assert!(check(
            &m(json!({"active": true, "aud": "https://rs/mcp", "nbf": 100})),
            &e,
            50
        )
        .is_err());
    }
}
