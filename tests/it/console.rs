//! The operator's console (docs/CONSOLE.md): the real daemon serving `/ui/` on its metrics
//! address, a seeded database, and headless Chromium driven through chromedriver by
//! Selenium (tests/console_browser.py) doing what an operator does; then the store is checked
//! for what the clicks changed. Also the HTTP-level refusals, without a browser.
//!
//! Needs Debian's `chromium` and `chromium-driver` and Selenium in .venv (`.ci/run`
//! installs them); with `CI` set their absence fails the test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use serde_json::Value;
use sha2::Digest;

const RW_TOKEN: &str = "console-token-for-alice-0000000000000000000000";
const RO_TOKEN: &str = "console-token-for-bob-00000000000000000000000000";

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

fn sha(t: &str) -> String {
    hex::encode(sha2::Sha256::digest(t.as_bytes()))
}

fn config() -> String {
    format!(
        r#"
[console]
enabled = true
refresh_ms = 700
[operators.alice]
token_sha256 = "{}"
role = "read-write"
[operators.bob]
token_sha256 = "{}"
role = "read-only"
[tools.flaky_ui]
description = "fails once with markup on stderr"
command = ["{}"]
env = {{ PATH = "/usr/bin:/bin" }}
max_attempts = 1
[tools.hold]
description = "holds its only slot"
command = ["{}"]
env = {{ PATH = "/usr/bin:/bin" }}
concurrency = 1
timeout_secs = 600
"#,
        sha(RW_TOKEN),
        sha(RO_TOKEN),
        fixture("console_tool.sh"),
        fixture("console_hold.sh")
    )
}

/// One request, the whole response (status line, headers and body) as text.
async fn http(addr: std::net::SocketAddr, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Signs in with `token` over plain HTTP: the session cookie (`name=value`).
async fn sign_in(addr: std::net::SocketAddr, token: &str) -> String {
    let body = format!("token={token}");
    let login = format!(
        "POST /ui/login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, text) = http(addr, &login).await;
    assert_eq!(status, 303, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string()
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

async fn state(env: &TestEnv, id: &str) -> Value {
    let (_, out, _) = env.run(&["jobs", "show", id, "--json"]).await;
    json(&out)
}

/// The browser's tools, or `None` (a local run without them skips; CI fails).
fn browser_tools() -> Option<PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3");
    let have = Path::new("/usr/bin/chromium").exists()
        && Path::new("/usr/bin/chromedriver").exists()
        && std::process::Command::new(&python)
            .args(["-c", "import selenium"])
            .status()
            .is_ok_and(|s| s.success());
    if !have {
        assert!(
            std::env::var("CI").is_err(),
            "CI: chromium, chromium-driver or selenium (.venv) is missing; .ci/run installs them"
        );
        eprintln!("notice: chromium/chromedriver/selenium missing; skipping the browser test");
        return None;
    }
    Some(python)
}

async fn seed(env: &TestEnv, d: &Daemon) -> (String, String, Vec<String>, String) {
    let mut c1 = env.client(d).await;
    let mut c2 = mcpq::client::Client::connect(env.client2_settings(d, CLIENT2_CURRENT))
        .await
        .unwrap();
    let r = c1
        .call(
            "flaky_ui",
            args(r#"{"note":"<script>window.__pwned = 1</script>"}"#),
        )
        .await
        .unwrap();
    let failed = job_id(&r);
    let done = poll_until_finished(&mut c1, &failed, Duration::from_secs(30)).await;
    assert_eq!(done.error_code(), Some("job_failed"), "{}", done.raw);
    let running = job_id(&c1.call("hold", args("{}")).await.unwrap());
    eventually(
        Duration::from_secs(30),
        "the first hold job runs",
        || async { state(env, &running).await["state"] == "running" },
    )
    .await;
    let mut queued2 = Vec::new();
    for _ in 0..3 {
        queued2.push(job_id(&c2.call("hold", args("{}")).await.unwrap()));
    }
    let queued1 = job_id(&c1.call("hold", args("{}")).await.unwrap());
    (failed, running, queued2, queued1)
}

async fn operators_use_the_console_in_a_browser(env: TestEnv, shots: &str) {
    let Some(python) = browser_tools() else {
        return;
    };
    let d = env.spawn_daemon().await;
    let metrics = d.metrics.expect("the metrics (console) address");
    let (failed, running, queued2, queued1) = seed(&env, &d).await;
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join(shots);
    let out = tokio::process::Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console_browser.py"))
        .env(
            "CONSOLE",
            format!("http://127.0.0.1:{}/ui/", metrics.port()),
        )
        .env("RW_TOKEN", RW_TOKEN)
        .env("RO_TOKEN", RO_TOKEN)
        .env("FAILED", &failed)
        .env("SHOTS", &shots)
        .env("SE_OFFLINE", "true")
        .kill_on_drop(true)
        .output()
        .await
        .expect("run the browser script");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "browser script failed (screenshots in {}):\n{stdout}\n{stderr}\ndaemon log tail:\n{}",
        shots.display(),
        d.proc
            .logs()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
    // What the clicks did, as the store has it.
    let f = state(&env, &failed).await;
    assert_eq!(f["state"], "succeeded", "{f}");
    for id in &queued2 {
        let j = state(&env, id).await;
        assert_eq!(j["state"], "cancelled", "{j}");
        let h = j["history"].to_string();
        assert!(h.contains("cancelled by alice (console)"), "{h}");
    }
    // The read-only operator's forged POST changed nothing.
    assert!(stdout.contains(&format!("QUEUED {queued1}")), "{stdout}");
    assert_eq!(state(&env, &queued1).await["state"], "queued");
    assert_eq!(state(&env, &running).await["state"], "running");
}

#[tokio::test]
async fn operators_use_the_console_in_a_browser_on_sqlite() {
    operators_use_the_console_in_a_browser(TestEnv::new(&config()), "target/console-shots").await;
}

#[tokio::test]
async fn operators_use_the_console_in_a_browser_on_postgres() {
    let Some(env) = TestEnv::postgres(&config()) else {
        return;
    };
    operators_use_the_console_in_a_browser(env, "target/console-shots/postgres").await;
}

/// Without a browser: the console is off by default, refuses the unsigned, forged and
/// cross-site, and sends its security headers.
#[tokio::test]
async fn the_console_refuses_what_it_must() {
    let off = TestEnv::new("");
    let d = off.spawn_daemon().await;
    let m = d.metrics.unwrap();
    let (status, _) = http(
        m,
        "GET /ui/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 404, "off unless configured");
    drop(d);

    let env = TestEnv::new(&config());
    let d = env.spawn_daemon().await;
    let m = d.metrics.unwrap();
    let get =
        |path: &str| format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let (status, text) = http(m, &get("/ui/jobs")).await;
    assert_eq!(status, 303, "{text}");
    let (status, text) = http(m, &get("/ui/login")).await;
    assert_eq!(status, 200);
    let lower = text.to_lowercase();
    assert!(
        lower.contains("content-security-policy: default-src 'self'"),
        "{text}"
    );
    assert!(lower.contains("x-frame-options: deny"), "{text}");
    let post = |path: &str, body: &str, extra: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let (status, _) = http(m, &post("/ui/act", "action=purge:all&older_than=0s", "")).await;
    assert_eq!(status, 403, "no session: refused");
    let cross = "Origin: http://evil.example\r\n";
    let body = format!("token={RW_TOKEN}");
    let (status, _) = http(m, &post("/ui/login", &body, cross)).await;
    assert_eq!(status, 403, "a sign-in from another site is refused");
    let (status, text) = http(m, &post("/ui/login", &body, "")).await;
    assert_eq!(status, 303, "{text}");
    let cookie = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .expect("a session cookie")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP on loopback: {cookie}"
    );
    let session = cookie.split(';').next().unwrap();
    let with = format!("Cookie: {session}\r\n");
    let (status, text) = http(m, &post("/ui/act", "action=purge:all&older_than=0s", &with)).await;
    assert_eq!(status, 403, "signed in, but no CSRF token: {text}");
    assert!(text.contains("csrf_failed"), "{text}");
    let bad = format!(
        "GET /ui/jobs?state=done HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{with}\r\n"
    );
    let (status, text) = http(m, &bad).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("bad_request: state"), "{text}");
}

/// Typos in the console's settings stop the command, like every other key.
#[tokio::test]
async fn console_settings_are_strict() {
    let env = TestEnv::new("[operators.carol]\ntoken_sha256 = \"00\"\nrol = \"read-only\"\n");
    let (code, _, err) = env.run(&["config", "check"]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("operators.carol.rol") && err.contains("did you mean"),
        "{err}"
    );
    let env = TestEnv::new("[console]\nenabled = true\n");
    let (code, _, err) = env.run(&["config", "check"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("at least one [operators.NAME]"), "{err}");
}

/// `mcpq ui --listen` serves the console alone, on the same store as the daemon.
#[tokio::test]
async fn mcpq_ui_serves_the_console_alone() {
    use tokio::io::AsyncBufReadExt;
    let env = TestEnv::new(&config());
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let failed = job_id(&c.call("flaky_ui", args("{}")).await.unwrap());
    poll_until_finished(&mut c, &failed, Duration::from_secs(30)).await;
    let mut ui = tokio::process::Command::new(BIN)
        .arg("--config")
        .arg(&env.config)
        .args(["ui", "--listen", "127.0.0.1:0"])
        .envs(env.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn mcpq ui");
    let mut lines = tokio::io::BufReader::new(ui.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("mcpq ui started in time")
        .unwrap()
        .expect("a line");
    let addr: std::net::SocketAddr = line
        .strip_prefix("console on http://")
        .and_then(|r| r.strip_suffix("/ui/"))
        .unwrap_or_else(|| panic!("unexpected {line:?}"))
        .parse()
        .unwrap();
    let session = sign_in(addr, RW_TOKEN).await;
    let get = format!(
        "GET /ui/jobs/{failed} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nCookie: {session}\r\n\r\n"
    );
    let (status, text) = http(addr, &get).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("the upstream exploded"), "{text}");
    assert!(
        text.contains("&lt;script&gt;window.__pwned = 2&lt;/script&gt;"),
        "escaped: {text}"
    );
    let (status, _) = http(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 404, "the console alone");
    ui.kill().await.ok();
}

/// The settings the test's processes run with (the file plus the environment's store).
fn store_settings(env: &TestEnv) -> mcpq::config::Settings {
    let mut s = env.settings();
    s.database.path = env.db_path();
    if let Some((url, schema)) = &env.pg {
        s.database.url = url.clone();
        s.postgres.schema = schema.clone();
    }
    s
}

/// The console's list pages through every matching job exactly once, in order, with either
/// sort and any filter (keyset: each page starts after the last row of the one before).
async fn pages_cover_every_job_once(env: TestEnv) {
    use mcpq::store::admin::{JobQuery, Sort};
    let d = env.spawn_daemon().await;
    let mut c1 = env.client(&d).await;
    let mut c2 = mcpq::client::Client::connect(env.client2_settings(&d, CLIENT2_CURRENT))
        .await
        .unwrap();
    let mut all = Vec::new();
    for i in 0..30 {
        let c = if i % 3 == 0 { &mut c2 } else { &mut c1 };
        let r = c
            .call("hold", args(&format!(r#"{{"n":"needle-{i}"}}"#)))
            .await
            .unwrap();
        all.push(job_id(&r));
    }
    // Some finished (cancelled while queued: `hold` runs one at a time), so lists merge
    // finished and unfinished jobs.
    let cancelled = [3, 6, 10, 20, 25];
    for i in cancelled {
        let c = if i % 3 == 0 { &mut c2 } else { &mut c1 };
        let r = c
            .call("cancel_job", args(&format!(r#"{{"job_id":"{}"}}"#, all[i])))
            .await
            .unwrap();
        assert!(r.ok, "cancel {i}: {r:?}");
    }
    let admin = mcpq::store::open::open(&store_settings(&env))
        .await
        .unwrap()
        .admin();
    let walk = |q: JobQuery| {
        let admin = admin.clone();
        async move {
            let mut q = q;
            let mut seen = Vec::new();
            loop {
                let page = admin.browse(&q).await.unwrap();
                seen.extend(page.iter().map(|r| r.job.id.0.clone()));
                match page.last() {
                    Some(last) if page.len() == q.limit => q.after = Some((last.key, last.seq)),
                    _ => return seen,
                }
            }
        }
    };
    let newest_first: Vec<String> = all.iter().rev().cloned().collect();
    for sort in [Sort::Created, Sort::Updated] {
        let q = JobQuery {
            tool: Some("hold".into()),
            sort,
            limit: 7,
            ..JobQuery::default()
        };
        let seen = walk(q.clone()).await;
        if sort == Sort::Updated {
            let mut all_rows = admin
                .browse(&JobQuery {
                    limit: 100,
                    ..q.clone()
                })
                .await
                .unwrap();
            let keys: Vec<(i64, i64)> = all_rows.iter().map(|r| (r.key, r.seq)).collect();
            all_rows.sort_by_key(|r| std::cmp::Reverse((r.key, r.seq)));
            let sorted_keys: Vec<(i64, i64)> = all_rows.iter().map(|r| (r.key, r.seq)).collect();
            assert_eq!(keys, sorted_keys, "newest change first");
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 30, "{sort:?}: every job once");
        if sort == Sort::Created {
            assert_eq!(seen, newest_first);
        }
        assert_eq!(admin.browse_count(&q).await.unwrap(), 30);
    }
    let client2: Vec<String> = newest_first
        .iter()
        .filter(|id| all.iter().position(|x| x == *id).unwrap() % 3 == 0)
        .cloned()
        .collect();
    let q = JobQuery {
        client: Some(CLIENT2.into()),
        limit: 4,
        ..JobQuery::default()
    };
    assert_eq!(walk(q.clone()).await, client2);
    assert_eq!(admin.browse_count(&q).await.unwrap(), 10);
    let q = JobQuery {
        state: Some(mcpq::jobs::JobState::Cancelled),
        ..q
    };
    assert_eq!(walk(q.clone()).await, vec![all[6].clone(), all[3].clone()]);
    assert_eq!(admin.browse_count(&q).await.unwrap(), 2);
    let q = JobQuery {
        sort: Sort::Updated,
        state: None,
        ..q
    };
    let mut seen = walk(q).await;
    seen.sort();
    let mut want = client2.clone();
    want.sort();
    assert_eq!(seen, want, "one client's jobs by last change, each once");
    let q = JobQuery {
        text: Some("needle-17\"".into()),
        limit: 4,
        ..JobQuery::default()
    };
    assert_eq!(walk(q).await, vec![all[17].clone()]);
    let q = JobQuery {
        id: Some(all[5].clone()),
        limit: 4,
        ..JobQuery::default()
    };
    assert_eq!(walk(q).await, vec![all[5].clone()]);
}

#[tokio::test]
async fn pages_cover_every_job_once_on_sqlite() {
    pages_cover_every_job_once(TestEnv::new(&config())).await;
}

#[tokio::test]
async fn pages_cover_every_job_once_on_postgres() {
    let Some(env) = TestEnv::postgres(&config()) else {
        return;
    };
    pages_cover_every_job_once(env).await;
}

/// A text search scans a slice of the table per request and links "Search older jobs" from
/// where it stopped; following the links finds every match, oldest included, each once.
async fn text_search_goes_on_to_the_oldest_job(env: TestEnv) {
    let d = env.spawn_daemon().await;
    let m = d.metrics.unwrap();
    let mut c = env.client(&d).await;
    let mut ids = Vec::new();
    for i in 0..30 {
        // Needles in the oldest job, one in the middle, one near the newest.
        let n = if [0, 13, 27].contains(&i) {
            "needle"
        } else {
            "hay"
        };
        let r = c
            .call("hold", args(&format!(r#"{{"n":"{n}-{i}"}}"#)))
            .await
            .unwrap();
        ids.push(job_id(&r));
    }
    let session = sign_in(m, RO_TOKEN).await;
    let mut path = "/ui/jobs?q=needle".to_string();
    let mut found = Vec::new();
    let mut requests = 0;
    loop {
        requests += 1;
        assert!(requests < 20, "the search never ended");
        let get = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nCookie: {session}\r\n\r\n"
        );
        let (status, text) = http(m, &get).await;
        assert_eq!(status, 200, "{text}");
        for id in &ids {
            if text.contains(&format!("data-id=\"{id}\"")) {
                found.push(id.clone());
            }
        }
        let Some(next) = text
            .split("id=\"older\" href=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
        else {
            assert!(!text.contains("not searched yet"), "{text}");
            break;
        };
        assert!(text.contains("are not searched yet"), "{text}");
        path = next.replace("&amp;", "&");
    }
    assert_eq!(
        found,
        vec![ids[27].clone(), ids[13].clone(), ids[0].clone()]
    );
    assert_eq!(requests, 8, "one slice of 4 per request");
}

/// One slice of 4 jobs per request: 30 jobs take 8 requests.
fn sliced_config() -> String {
    config().replace(
        "refresh_ms = 700\n",
        "refresh_ms = 700\nsearch_chunk = 4\nsearch_budget_ms = 0\n",
    )
}

#[tokio::test]
async fn text_search_goes_on_to_the_oldest_job_a_slice_at_a_time_on_sqlite() {
    text_search_goes_on_to_the_oldest_job(TestEnv::new(&sliced_config())).await;
}

#[tokio::test]
async fn text_search_goes_on_to_the_oldest_job_a_slice_at_a_time_on_postgres() {
    let Some(env) = TestEnv::postgres(&sliced_config()) else {
        return;
    };
    text_search_goes_on_to_the_oldest_job(env).await;
}
