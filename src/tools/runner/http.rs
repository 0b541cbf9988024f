//! The HTTP runner: one call or attempt of an HTTP tool as a POST to its configured URL
//! (docs/TOOLS.md, "The HTTP contract").
//!
//! Owns the request (the args as a JSON body; `Idempotency-Key` = the job id so a service
//! can drop a duplicate delivery; `Mcpq-Job-Id`, `Mcpq-Attempt`, `Mcpq-Tool`,
//! `Mcpq-Client-Id`; the configured static headers), its timeouts (connect, total), the
//! cap on the response body, and the classification of a response: 2xx with a JSON object
//! succeeds; 408, 425, 429, 5xx, connection errors and timeouts are retryable, honouring
//! `Retry-After`; any other status is fatal. Redirects are never followed, proxies from
//! the environment are ignored, and the URL only ever comes from the configuration.
//!
//! It must not log request or response bodies or header values (they may be secrets).

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;

use super::{tail_text, Invocation};
use crate::config::tool_table::Target;
use crate::config::ConfigError;
use crate::json::{self, Json, Object};
use crate::tools::JobError;

/// The longest `Retry-After` honoured; a larger one is taken as this.
const MAX_RETRY_AFTER_MS: i64 = 3_600_000;
/// How much of an error response's body is kept for the error history.
const ERROR_BODY_TAIL: usize = 1024;

#[derive(Debug, Clone)]
pub struct HttpRunner {
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    max_body: usize,
}

impl HttpRunner {
    pub fn new(tool: &str, target: &Target, max_body: usize) -> Result<HttpRunner, ConfigError> {
        let invalid = |msg: String| ConfigError::Invalid(format!("tools.{tool}: {msg}"));
        let Target::Http {
            url,
            headers,
            connect_timeout,
        } = target
        else {
            return Err(invalid("not an HTTP tool".into()));
        };
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| invalid(format!("header {k:?}: {e}")))?;
            let mut value = HeaderValue::from_bytes(v.expose())
                .map_err(|_| invalid(format!("header {k:?} has an invalid value")))?;
            value.set_sensitive(true);
            // The `Mcpq-*` headers are the daemon's, set on every call: a configured one
            // of the same name would arrive twice.
            if !name.as_str().starts_with("mcpq-") {
                map.insert(name, value);
            }
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(*connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| invalid(format!("HTTP client: {e}")))?;
        Ok(HttpRunner {
            client,
            url: reqwest::Url::parse(url).map_err(|e| invalid(format!("url: {e}")))?,
            headers: map,
            max_body,
        })
    }

    pub async fn run(&self, inv: &Invocation<'_>) -> Result<Object, JobError> {
        let mut req = self
            .client
            .post(self.url.clone())
            .timeout(inv.timeout)
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("Mcpq-Tool", inv.tool)
            .header("Mcpq-Client-Id", inv.client_id)
            .header("Mcpq-Attempt", inv.attempt.to_string())
            .body(inv.args_json.to_string());
        if let Some(id) = inv.job_id {
            req = req.header("Idempotency-Key", id).header("Mcpq-Job-Id", id);
        }
        if let Some(t) = &inv.trace {
            req = req.header("traceparent", t.traceparent.as_str());
            if let Some(s) = &t.tracestate {
                req = req.header("tracestate", s.as_str());
            }
        }
        if let Some(round) = inv.input {
            // JSON may hold any Unicode; header values travel as base64 of its UTF-8.
            use base64::Engine;
            let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
            if let Some(c) = &round.client_capabilities {
                req = req.header("Mcpq-Client-Capabilities", b64(c));
            }
            if let Some(r) = &round.input_responses {
                req = req.header("Mcpq-Input-Responses", b64(r));
            }
            if let Some(s) = &round.request_state {
                req = req.header("Mcpq-Request-State", b64(s));
            }
        }
        tokio::select! {
            r = self.exchange(req) => r,
            _ = inv.ctx.cancel.cancelled() => Err(JobError::Fatal("cancelled".into())),
        }
    }

    async fn exchange(&self, req: reqwest::RequestBuilder) -> Result<Object, JobError> {
        let mut resp = req
            .send()
            .await
            .map_err(|e| transport_error(&self.url, e))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let mut body = Vec::new();
        let mut over = false;
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if body.len() + c.len() > self.max_body {
                        over = true;
                        break;
                    }
                    body.extend_from_slice(&c);
                }
                Ok(None) => break,
                Err(e) => return Err(transport_error(&self.url, e)),
            }
        }
        classify(status, retry_after, &body, over, self.max_body)
    }
}

/// The caller gets a stable message that names the kind of failure only: the tool's URL
/// is configuration and may carry credentials (`?api_key=…`). The operator's log gets the
/// whole error chain and the URL with its query and password redacted.
fn transport_error(url: &reqwest::Url, e: reqwest::Error) -> JobError {
    let (what, message) = if e.is_timeout() {
        ("timeout", "the tool's endpoint did not answer in time")
    } else if e.is_connect() {
        ("connect_failed", "the tool's endpoint could not be reached")
    } else {
        ("http_error", "the exchange with the tool's endpoint failed")
    };
    tracing::warn!(
        url = %redacted(url),
        error = %error_chain(&e.without_url()),
        "HTTP tool transport error ({what})"
    );
    JobError::Retryable(format!("{what}: {message}"))
}

/// `url` fit for a log line: no password, and the query's values replaced.
fn redacted(url: &reqwest::Url) -> reqwest::Url {
    let mut u = url.clone();
    let _ = u.set_password(None);
    if u.query().is_some() {
        u.set_query(Some("<redacted>"));
    }
    u
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Seconds, or an HTTP date; in milliseconds from now, capped.
fn parse_retry_after(v: &str) -> Option<i64> {
    let v = v.trim();
    let ms = if let Ok(secs) = v.parse::<u64>() {
        (secs.min(MAX_RETRY_AFTER_MS as u64 / 1000) * 1000) as i64
    } else {
        let at = httpdate::parse_http_date(v).ok()?;
        at.duration_since(std::time::SystemTime::now())
            .map(|d| d.as_millis().min(MAX_RETRY_AFTER_MS as u128) as i64)
            .unwrap_or(0)
    };
    Some(ms)
}

fn classify(
    status: StatusCode,
    retry_after_ms: Option<i64>,
    body: &[u8],
    over_cap: bool,
    max_body: usize,
) -> Result<Object, JobError> {
    let tail = || {
        let start = body.len().saturating_sub(ERROR_BODY_TAIL);
        let t = tail_text(&body[start..]);
        if t.is_empty() {
            String::new()
        } else {
            format!(": {t}")
        }
    };
    let code = status.as_u16();
    if status.is_success() {
        if over_cap {
            return Err(JobError::Fatal(format!(
                "output_too_large: the response body exceeded {max_body} bytes"
            )));
        }
        return match json::parse(body) {
            Ok(Json::Object(o)) => Ok(o),
            Ok(other) => Err(JobError::Fatal(format!(
                "invalid_output: HTTP {code} body must be one JSON object, got {}",
                other.type_name()
            ))),
            Err(e) => Err(JobError::Fatal(format!(
                "invalid_output: HTTP {code} body is not one JSON object ({e})"
            ))),
        };
    }
    let msg = format!("http {code}{}", tail());
    if matches!(code, 408 | 425 | 429) || status.is_server_error() {
        return Err(match retry_after_ms {
            Some(ms) => JobError::RetryAfter(msg, ms),
            None => JobError::Retryable(msg),
        });
    }
    Err(JobError::Fatal(msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(code: u16, retry_after: Option<i64>, body: &str) -> Result<Object, JobError> {
        classify(
            StatusCode::from_u16(code).unwrap(),
            retry_after,
            body.as_bytes(),
            false,
            1 << 20,
        )
    }

    #[test]
    fn statuses_are_classified_as_documented() {
        assert!(class(200, None, r#"{"ok":1}"#).is_ok());
        assert!(class(201, None, r#"{"ok":1}"#).is_ok());
        assert!(
            matches!(class(200, None, "[1]"), Err(JobError::Fatal(m)) if m.starts_with("invalid_output"))
        );
        assert!(matches!(class(200, None, "nope"), Err(JobError::Fatal(_))));
        for code in [408, 425, 429, 500, 502, 503, 504] {
            assert!(
                matches!(class(code, None, ""), Err(JobError::Retryable(_))),
                "{code}"
            );
        }
        assert_eq!(
            class(429, Some(7000), "slow down"),
            Err(JobError::RetryAfter("http 429: slow down".into(), 7000))
        );
        for code in [301, 400, 401, 403, 404, 409, 422] {
            assert!(
                matches!(class(code, None, ""), Err(JobError::Fatal(_))),
                "{code}"
            );
        }
        assert!(matches!(
            classify(StatusCode::OK, None, b"{}", true, 10),
            Err(JobError::Fatal(m)) if m.starts_with("output_too_large")
        ));
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date_and_is_capped() {
        assert_eq!(parse_retry_after("3"), Some(3000));
        assert_eq!(parse_retry_after("999999"), Some(MAX_RETRY_AFTER_MS));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(0));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
