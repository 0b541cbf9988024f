//! The Streamable HTTP side of `/mcp`: which requests get in (method, Host and Origin
//! against DNS rebinding, bearer token, content type, accepted response types, protocol
//! version header) and the streaming body used for server-sent events.
//!
//! It must not interpret JSON-RPC: `mcp::methods` does.

use std::net::SocketAddr;

use hyper::header::{HeaderMap, ACCEPT, AUTHORIZATION, HOST, ORIGIN};

use super::error::McpError;
use crate::http::{strip_port, LOOPBACK_NAMES};

/// Who may reach `/mcp` from a browser's point of view.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    /// Host names (without port) a request may name; empty: any.
    pub hosts: Vec<String>,
    /// Origins (`scheme://host[:port]`) a browser page may call from; a request without
    /// `Origin` (not a browser) is not affected.
    pub origins: Vec<String>,
}

impl OriginPolicy {
    /// The configured lists, or, when none are configured and the daemon listens on
    /// loopback, loopback names only: a page on another site that rebinds its DNS name
    /// to 127.0.0.1 still sends its own name as Host and Origin, and is refused.
    pub fn new(hosts: &[String], origins: &[String], listen: SocketAddr) -> OriginPolicy {
        let hosts = if hosts.is_empty() && listen.ip().is_loopback() {
            LOOPBACK_NAMES.iter().map(|s| s.to_string()).collect()
        } else {
            hosts.iter().map(|h| h.to_ascii_lowercase()).collect()
        };
        let origins = if origins.is_empty() && listen.ip().is_loopback() {
            let mut v = Vec::new();
            for scheme in ["http", "https"] {
                for h in ["localhost", "127.0.0.1", "[::1]"] {
                    v.push(format!("{scheme}://{h}"));
                }
            }
            v
        } else {
            origins.iter().map(|o| o.to_ascii_lowercase()).collect()
        };
        OriginPolicy { hosts, origins }
    }

    pub fn check(&self, headers: &HeaderMap) -> Result<(), McpError> {
        if !self.hosts.is_empty() {
            let host = headers
                .get(HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_ascii_lowercase();
            if !self.hosts.iter().any(|h| *h == strip_port(&host)) {
                return Err(McpError::ForbiddenOrigin(format!(
                    "Host {host:?} is not allowed"
                )));
            }
        }
        if let Some(origin) = headers.get(ORIGIN) {
            let origin = origin.to_str().unwrap_or("").to_ascii_lowercase();
            // An allowed origin matches with any port: the port is the server's, not a site.
            let without_port = match origin.rsplit_once(':') {
                Some((head, port))
                    if port.chars().all(|c| c.is_ascii_digit()) && head.contains("://") =>
                {
                    head.to_string()
                }
                _ => origin.clone(),
            };
            if !self
                .origins
                .iter()
                .any(|o| *o == origin || *o == without_port)
            {
                return Err(McpError::ForbiddenOrigin(format!(
                    "Origin {origin:?} is not allowed"
                )));
            }
        }
        Ok(())
    }
}

/// The token of `Authorization: Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// What the client accepts back.
#[derive(Debug, Clone, Copy)]
pub struct Accepts {
    pub sse: bool,
}

pub fn accepts(headers: &HeaderMap) -> Result<Accepts, McpError> {
    let Some(v) = headers.get(ACCEPT).and_then(|v| v.to_str().ok()) else {
        // No Accept header: anything goes; answer JSON.
        return Ok(Accepts { sse: false });
    };
    let types: Vec<String> = v
        .split(',')
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .collect();
    let any = types.iter().any(|t| t == "*/*" || t == "application/*");
    let json = any || types.iter().any(|t| t == "application/json");
    let sse = types.iter().any(|t| t == "text/event-stream");
    if !json && !sse {
        return Err(McpError::NotAcceptable(
            "Accept must include application/json or text/event-stream".into(),
        ));
    }
    Ok(Accepts { sse })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn loopback_daemons_refuse_rebound_names_and_foreign_origins() {
        let p = OriginPolicy::new(&[], &[], "127.0.0.1:8787".parse().unwrap());
        assert!(p.check(&headers(&[("host", "127.0.0.1:8787")])).is_ok());
        assert!(p.check(&headers(&[("host", "localhost:8787")])).is_ok());
        assert!(p.check(&headers(&[("host", "[::1]:8787")])).is_ok());
        assert!(p.check(&headers(&[("host", "evil.example:8787")])).is_err());
        assert!(p
            .check(&headers(&[
                ("host", "localhost:8787"),
                ("origin", "http://localhost:3000")
            ]))
            .is_ok());
        assert!(p
            .check(&headers(&[
                ("host", "localhost:8787"),
                ("origin", "http://evil.example")
            ]))
            .is_err());
    }

    #[test]
    fn configured_lists_replace_the_loopback_defaults() {
        let p = OriginPolicy::new(
            &["mcp.internal".into()],
            &["https://app.internal".into()],
            "0.0.0.0:8787".parse().unwrap(),
        );
        assert!(p.check(&headers(&[("host", "mcp.internal")])).is_ok());
        assert!(p.check(&headers(&[("host", "localhost")])).is_err());
        assert!(p
            .check(&headers(&[
                ("host", "mcp.internal"),
                ("origin", "https://app.internal")
            ]))
            .is_ok());
    }

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        assert_eq!(
            bearer(&headers(&[("authorization", "Bearer abc")])),
            Some("abc")
        );
        assert_eq!(
            bearer(&headers(&[("authorization", "bearer abc")])),
            Some("abc")
        );
        assert_eq!(bearer(&headers(&[("authorization", "Basic abc")])), None);
        assert_eq!(bearer(&headers(&[("authorization", "Bearer ")])), None);
    }
}
