//! `/mcp` as an OAuth 2.1 resource server, against the real binary: an authorization
//! server's metadata and JWKS served by the test (keys generated here, published and
//! rotated at will, fetches counted), and every way an access token is refused, with the
//! status and `WWW-Authenticate` a client sees. Then the whole flow with a real
//! authorization server (`oidc-provider`, tests/fixtures/oidc, installed by .ci/run) and the
//! Python `mcp` SDK's OAuth client (tests/oauth_flow.py), from the 401 to a tools/call.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};

const RESOURCE: &str = "http://mcpq.test/mcp";
const STATIC_TOKEN: &str = "dev-only-mcp-token-00000000000000000000000000000000";
const TASKS: &str = "io.modelcontextprotocol/tasks";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An Ed25519 signing key and its public JWK.
struct Key {
    kid: String,
    pkcs8: Vec<u8>,
    public: Vec<u8>,
}

impl Key {
    fn new(kid: &str) -> Key {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .unwrap()
            .as_ref()
            .to_vec();
        let public = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .unwrap()
            .public_key()
            .as_ref()
            .to_vec();
        Key {
            kid: kid.into(),
            pkcs8,
            public,
        }
    }

    fn jwk(&self) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&self.public), "kid": self.kid,
               "alg": "EdDSA", "use": "sig"})
    }

    fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(self.kid.clone());
        h.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&h, claims, &EncodingKey::from_ed_der(&self.pkcs8)).unwrap()
    }
}

/// The test's authorization server: RFC 8414 metadata, a JWKS that the test changes, and
/// an RFC 7662 introspection endpoint answering from a table of opaque tokens.
struct AuthServer {
    issuer: String,
    jwks: Arc<Mutex<Value>>,
    jwks_fetches: Arc<AtomicUsize>,
    /// Opaque token → the introspection answer (inactive when absent).
    opaque: Arc<Mutex<HashMap<String, Value>>>,
    introspections: Arc<AtomicUsize>,
}

/// The credentials mcpq introspects with (HTTP Basic).
const INTROSPECTION_BASIC: &str = "Basic bWNwcTppbnRyb3NwZWN0aW9uLXNlY3JldA=="; // mcpq:introspection-secret

#[derive(Clone)]
struct AsState {
    iss: String,
    jwks: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    opaque: Arc<Mutex<HashMap<String, Value>>>,
    introspections: Arc<AtomicUsize>,
}

async fn as_answer(st: AsState, req: hyper::Request<hyper::body::Incoming>) -> (u16, Value) {
    use http_body_util::BodyExt;
    let iss = &st.iss;
    match req.uri().path() {
        "/.well-known/oauth-authorization-server" => (
            200,
            json!({"issuer": iss, "jwks_uri": format!("{iss}/jwks"),
                   "introspection_endpoint": format!("{iss}/introspect")}),
        ),
        "/jwks" => {
            st.fetches.fetch_add(1, Ordering::SeqCst);
            (200, st.jwks.lock().unwrap().clone())
        }
        "/introspect" => {
            st.introspections.fetch_add(1, Ordering::SeqCst);
            let basic = req
                .headers()
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_string());
            if basic.as_deref() != Some(INTROSPECTION_BASIC) {
                return (401, json!({"error": "invalid_client"}));
            }
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let form: HashMap<String, String> =
                reqwest::Url::parse(&format!("http://x/?{}", String::from_utf8_lossy(&body)))
                    .unwrap()
                    .query_pairs()
                    .into_owned()
                    .collect();
            let token = form.get("token").cloned().unwrap_or_default();
            let answer = st.opaque.lock().unwrap().get(&token).cloned();
            (200, answer.unwrap_or_else(|| json!({"active": false})))
        }
        _ => (404, Value::Null),
    }
}

async fn auth_server() -> AuthServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let st = AsState {
        iss: issuer.clone(),
        jwks: Arc::new(Mutex::new(json!({"keys": []}))),
        fetches: Arc::new(AtomicUsize::new(0)),
        opaque: Arc::new(Mutex::new(HashMap::new())),
        introspections: Arc::new(AtomicUsize::new(0)),
    };
    let server = AuthServer {
        issuer,
        jwks: st.jwks.clone(),
        jwks_fetches: st.fetches.clone(),
        opaque: st.opaque.clone(),
        introspections: st.introspections.clone(),
    };
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let st = st.clone();
            let svc = hyper::service::service_fn(move |req| {
                let st = st.clone();
                async move {
                    let (status, body) = as_answer(st, req).await;
                    Ok::<_, Infallible>(
                        hyper::Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body.to_string())))
                            .unwrap(),
                    )
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc),
            );
        }
    });
    server
}

impl AuthServer {
    fn publish(&self, keys: &[&Key]) {
        *self.jwks.lock().unwrap() =
            json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
    }
    fn fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }
    /// Claims of a token for mcpq from this issuer, valid for an hour.
    fn claims(&self, sub: &str, scope: &str) -> Value {
        let now = now_ms() / 1000;
        json!({"iss": self.issuer, "aud": RESOURCE, "sub": sub, "scope": scope,
               "iat": now, "exp": now + 3600, "client_id": "test-client", "jti": uuid::Uuid::new_v4().to_string()})
    }
}

fn env(auth: &AuthServer, mode: &str) -> TestEnv {
    TestEnv::new(&format!(
        "[oauth]\nmcp_auth = \"{mode}\"\nresource = \"{RESOURCE}\"\nissuers = [\"{}\"]\n\
         clock_skew_secs = 5\njwks_min_refresh_secs = 1\n\n\
         [tools.job]\ndescription = \"A job that answers at once\"\n\
         command = [\"/bin/sh\", \"-c\", \"cat > /dev/null; echo '{{\\\"done\\\": true}}'\"]\n",
        auth.issuer
    ))
}

struct Answer {
    status: u16,
    challenge: String,
    body: Value,
}

async fn mcp(d: &Daemon, token: Option<&str>, method: &str, params: Value) -> Answer {
    let caps = json!({"extensions": {TASKS: {}}});
    let (headers, body) = modern_request(token.unwrap_or(""), method, params, caps);
    let mut req = reqwest::Client::new()
        .post(format!("{}/mcp", d.url()))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body);
    for (k, v) in headers {
        if k != "Authorization" || token.is_some() {
            req = req.header(k, v);
        }
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        challenge,
        body,
    }
}

fn tool_names(a: &Answer) -> Vec<String> {
    a.body["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", a.body))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn metadata_and_challenges_point_clients_to_the_authorization_server() {
    let auth = auth_server().await;
    let env = env(&auth, "both");
    let d = env.spawn_daemon().await;
    let meta_url = "http://mcpq.test/.well-known/oauth-protected-resource/mcp";
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let r = reqwest::get(format!("{}{path}", d.url())).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let m: Value = r.json().await.unwrap();
        assert_eq!(m["resource"], RESOURCE);
        assert_eq!(m["authorization_servers"], json!([auth.issuer]));
        let scopes = m["scopes_supported"].as_array().unwrap();
        assert!(scopes.contains(&json!("tools:call:batch_sum")), "{m}");
        assert!(scopes.contains(&json!("tools:tasks")), "{m}");
    }
    let r = mcp(&d, None, "tools/list", json!({})).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.challenge,
        format!(r#"Bearer resource_metadata="{meta_url}""#)
    );
    // Static tokens keep working beside OAuth ("both"), seeing every tool.
    let r = mcp(&d, Some(STATIC_TOKEN), "tools/list", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(tool_names(&r).contains(&"batch_sum".to_string()));
}

#[tokio::test]
async fn every_bad_token_is_refused_with_its_reason_and_the_metadata_url() {
    let auth = auth_server().await;
    let key = Key::new("k1");
    auth.publish(&[&key]);
    let env = env(&auth, "oauth");
    let d = env.spawn_daemon().await;
    let now = now_ms() / 1000;
    let good = auth.claims("alice", "tools:call:batch_sum");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        f(&mut c);
        key.sign(&c)
    };
    let impostor = Key {
        kid: "k1".into(),
        ..Key::new("k1")
    };
    let header_none = b64(br#"{"alg":"none","typ":"at+jwt","kid":"k1"}"#);
    let payload = b64(good.to_string().as_bytes());
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("k1".into());
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            with(&|c| c["exp"] = json!(now - 60)),
            "token expired",
        ),
        (
            "not yet valid",
            with(&|c| c["nbf"] = json!(now + 600)),
            "token not yet valid",
        ),
        (
            "wrong issuer",
            with(&|c| c["iss"] = json!("http://evil.test")),
            "issuer not trusted",
        ),
        (
            "another resource",
            with(&|c| c["aud"] = json!("http://other.test/mcp")),
            "token is for another resource",
        ),
        (
            "no audience",
            with(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
            "a required claim",
        ),
        ("bad signature", impostor.sign(&good), "bad signature"),
        (
            "alg none",
            format!("{header_none}.{payload}."),
            "not a JWS access token",
        ),
        (
            "HS256 keyed with the public key",
            jsonwebtoken::encode(&hs, &good, &EncodingKey::from_secret(&key.public)).unwrap(),
            "signing algorithm not accepted",
        ),
        (
            "HS256 keyed with the public JWK",
            jsonwebtoken::encode(
                &hs,
                &good,
                &EncodingKey::from_secret(key.jwk().to_string().as_bytes()),
            )
            .unwrap(),
            "signing algorithm not accepted",
        ),
        (
            "not a JWT",
            "opaque-token-value".into(),
            "not a JWS access token",
        ),
        (
            "static token when OAuth only",
            STATIC_TOKEN.into(),
            "not a JWS access token",
        ),
    ];
    for (what, token, why) in cases {
        let r = mcp(&d, Some(&token), "tools/list", json!({})).await;
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        assert!(
            r.challenge.starts_with(r#"Bearer error="invalid_token""#)
                && r.challenge.contains(why)
                && r.challenge.contains(
                    r#"resource_metadata="http://mcpq.test/.well-known/oauth-protected-resource/mcp""#
                ),
            "{what}: {}",
            r.challenge
        );
        assert!(
            r.body["error"]["message"].as_str().unwrap().contains(why),
            "{what}: {}",
            r.body
        );
    }
    // The good token gets in.
    let r = mcp(&d, Some(&key.sign(&good)), "tools/list", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn scopes_decide_which_tools_a_token_sees_and_calls_and_tasks_stay_their_clients() {
    let auth = auth_server().await;
    let key = Key::new("k1");
    auth.publish(&[&key]);
    let env = env(&auth, "both");
    let d = env.spawn_daemon().await;
    let alice = key.sign(&auth.claims("alice", "openid tools:call:job tools:tasks"));
    let bob = key.sign(&auth.claims("bob", "tools:call:batch_* tools:tasks"));
    let bob_no_tasks = key.sign(&auth.claims("bob", "tools:call:batch_*"));
    // tools/list hides what the token cannot call.
    let r = mcp(&d, Some(&alice), "tools/list", json!({})).await;
    assert_eq!(tool_names(&r), vec!["job"]);
    assert_eq!(r.body["result"]["cacheScope"], "private");
    let r = mcp(&d, Some(&bob), "tools/list", json!({})).await;
    assert_eq!(tool_names(&r), vec!["batch_sum"]);
    // A call outside the scopes: 403 naming the scope needed.
    let r = mcp(
        &d,
        Some(&bob),
        "tools/call",
        json!({"name": "job", "arguments": {}}),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.challenge
            .starts_with(r#"Bearer error="insufficient_scope", scope="tools:call:job""#),
        "{}",
        r.challenge
    );
    let r = mcp(
        &d,
        Some(&bob),
        "tools/call",
        json!({"name": "batch_sum", "arguments": {"numbers": [1, 2.5]}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["result"]["structuredContent"]["total"], 3.5,
        "{}",
        r.body
    );
    // Alice's task is hers: Bob's token finds no such task; without the tasks scope, 403.
    let r = mcp(
        &d,
        Some(&alice),
        "tools/call",
        json!({"name": "job", "arguments": {}}),
    )
    .await;
    assert_eq!(r.body["result"]["resultType"], "task", "{}", r.body);
    let task = r.body["result"]["taskId"].as_str().unwrap().to_string();
    let r = mcp(&d, Some(&bob), "tasks/get", json!({"taskId": task})).await;
    assert_eq!(r.body["error"]["code"], -32602, "{}", r.body);
    let r = mcp(
        &d,
        Some(&bob_no_tasks),
        "tasks/get",
        json!({"taskId": task}),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.challenge.contains(r#"scope="tools:tasks""#),
        "{}",
        r.challenge
    );
    let r = mcp(&d, Some(&alice), "tasks/get", json!({"taskId": task})).await;
    assert_eq!(r.body["result"]["taskId"], task.as_str(), "{}", r.body);
    // The static client of the same daemon does not see Alice's task either.
    let r = mcp(&d, Some(STATIC_TOKEN), "tasks/get", json!({"taskId": task})).await;
    assert_eq!(r.body["error"]["code"], -32602, "{}", r.body);
}

#[tokio::test]
async fn an_unknown_key_refetches_once_and_a_rotation_is_picked_up_without_restart() {
    let auth = auth_server().await;
    let old = Key::new("k1");
    auth.publish(&[&old]);
    let env = env(&auth, "oauth");
    let d = env.spawn_daemon().await;
    let r = mcp(
        &d,
        Some(&old.sign(&auth.claims("a", "tools:call:*"))),
        "tools/list",
        json!({}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let new = Key::new("k2");
    let token = new.sign(&auth.claims("a", "tools:call:*"));
    // The interval between refreshes (jwks_min_refresh_secs = 1) passes: an unknown kid may
    // then cause one fetch, and the next one within the interval none.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = auth.fetches();
    for _ in 0..5 {
        let r = mcp(&d, Some(&token), "tools/list", json!({})).await;
        assert_eq!(r.status, 401);
        assert!(
            r.challenge.contains("unknown signing key"),
            "{}",
            r.challenge
        );
    }
    assert_eq!(
        auth.fetches(),
        before + 1,
        "one fetch for five unknown-kid tokens"
    );
    // The provider rotates: the new key is published, the old withdrawn.
    auth.publish(&[&new]);
    eventually(
        Duration::from_secs(10),
        "the rotated key is accepted",
        || {
            let (d, token) = (&d, &token);
            async move { mcp(d, Some(token), "tools/list", json!({})).await.status == 200 }
        },
    )
    .await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `oidc-provider` on `port`, granting `granted` for `resource`; killed on drop.
async fn oidc_provider(
    port: u16,
    resource: &str,
    granted: &str,
    supported: &str,
) -> tokio::process::Child {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oidc");
    assert!(
        dir.join("node_modules/oidc-provider").exists(),
        "the OAuth flow test needs oidc-provider: (cd tests/fixtures/oidc && npm ci), as .ci/run does"
    );
    let mut child = tokio::process::Command::new("node")
        .arg("provider.mjs")
        .current_dir(&dir)
        .env("PORT", port.to_string())
        .env("MCPQ_RESOURCE", resource)
        .env("MCPQ_SCOPES", granted)
        .env("MCPQ_SCOPES_SUPPORTED", supported)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node (Node.js 20+) runs tests/fixtures/oidc/provider.mjs");
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the provider started in time")
        .unwrap()
        .expect("the provider printed its issuer");
    assert_eq!(line, format!("issuer http://127.0.0.1:{port}"));
    // Keep reading: a provider writing to a closed pipe would die.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

#[tokio::test]
async fn an_sdk_client_signs_in_at_a_real_authorization_server() {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3");
    assert!(
        python.exists(),
        "the OAuth flow test needs .venv with mcp==2.3.0 (bash .ci/run creates it)"
    );
    let (mcp_port, as_port) = (free_port(), free_port());
    let resource = format!("http://127.0.0.1:{mcp_port}/mcp");
    let issuer = format!("http://127.0.0.1:{as_port}");
    let env = TestEnv::new(&format!(
        "[oauth]\nmcp_auth = \"oauth\"\nresource = \"{resource}\"\nissuers = [\"{issuer}\"]\n"
    ))
    .set("MCPQ__SERVER__LISTEN", &format!("127.0.0.1:{mcp_port}"));
    let d = env.spawn_daemon().await;
    // The provider lets clients ask for what mcpq advertises, and grants one tool and tasks.
    let meta: Value = reqwest::get(format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        d.url()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let supported: Vec<&str> = meta["scopes_supported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let _provider = oidc_provider(
        as_port,
        &resource,
        "tools:call:batch_sum tools:tasks",
        &supported.join(" "),
    )
    .await;
    // mcpq started first, so its first key fetches failed; it keeps trying in the
    // background. Wait for its keys, as an operator's readiness check would, rather than
    // race the SDK's first token against that back-off.
    let metrics = d.metrics.expect("the daemon serves metrics");
    eventually(
        Duration::from_secs(60),
        "mcpq fetched the provider's keys",
        || async {
            let (_, text) = raw_http(
                metrics,
                b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            )
            .await;
            text.contains(r#"mcpq_oauth_jwks_fetches_total{outcome="ok"}"#)
        },
    )
    .await;
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(&python)
            .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oauth_flow.py"))
            .arg(&resource)
            .arg("alice")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the flow finished in time")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.proc.logs()
    );
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap();
    // The SDK asked for mcpq's resource (RFC 8707) with PKCE ...
    assert_eq!(
        seen["steps"][0]["authorize"]["resource"],
        resource.as_str(),
        "{seen}"
    );
    assert_eq!(
        seen["steps"][0]["authorize"]["code_challenge_method"],
        "S256"
    );
    // ... got a JWT access token for it, and mcpq let it see and call only what was granted.
    let claims = &seen["token_claims"];
    assert_eq!(claims["aud"], resource.as_str(), "{seen}");
    assert_eq!(claims["iss"], issuer.as_str());
    assert_eq!(claims["sub"], "alice");
    assert_eq!(seen["tools"], json!(["batch_sum"]), "{seen}");
    assert_eq!(seen["batch_sum"], json!({"count": 3, "total": 6.5}));
}

#[tokio::test]
async fn opaque_tokens_are_introspected_and_the_answers_cached() {
    let auth = auth_server().await;
    let now = now_ms() / 1000;
    {
        let mut t = auth.opaque.lock().unwrap();
        t.insert(
            "opaque-alice".into(),
            json!({"active": true, "iss": auth.issuer, "aud": RESOURCE, "sub": "alice",
                   "scope": "tools:call:batch_sum", "exp": now + 600, "client_id": "c"}),
        );
        t.insert(
            "opaque-elsewhere".into(),
            json!({"active": true, "iss": auth.issuer, "aud": "http://other.test/mcp",
                   "sub": "alice", "scope": "tools:call:*", "exp": now + 600}),
        );
    }
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("introspection.secret");
    std::fs::write(&secret, "introspection-secret\n").unwrap();
    let env = TestEnv::new(&format!(
        "[oauth]\nmcp_auth = \"oauth\"\nresource = \"{RESOURCE}\"\nissuers = [\"{iss}\"]\n\
         introspection_url = \"{iss}/introspect\"\nintrospection_client_id = \"mcpq\"\n\
         introspection_secret_file = \"{secret}\"\n",
        iss = auth.issuer,
        secret = secret.display(),
    ));
    let d = env.spawn_daemon().await;
    let r = mcp(&d, Some("opaque-alice"), "tools/list", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(tool_names(&r), vec!["batch_sum"]);
    let asked = auth.introspections.load(Ordering::SeqCst);
    assert_eq!(asked, 1);
    // Cached: the next call asks nothing.
    let r = mcp(
        &d,
        Some("opaque-alice"),
        "tools/call",
        json!({"name": "batch_sum", "arguments": {"numbers": [2]}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(auth.introspections.load(Ordering::SeqCst), asked);
    // Inactive (unknown, revoked) and other resources' tokens are refused; a refusal is
    // cached as well, so repeating a bad token does not reach the server again.
    for (token, why) in [
        ("opaque-revoked", "token not active"),
        ("opaque-elsewhere", "token is for another resource"),
    ] {
        for _ in 0..3 {
            let r = mcp(&d, Some(token), "tools/list", json!({})).await;
            assert_eq!(r.status, 401, "{token}");
            assert!(r.challenge.contains(why), "{token}: {}", r.challenge);
        }
    }
    assert_eq!(auth.introspections.load(Ordering::SeqCst), asked + 2);
}
