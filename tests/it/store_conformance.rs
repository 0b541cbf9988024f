//! The `Store` conformance suite: the behaviour every storage backend must have.
//!
//! Layout, so that a second backend (PostgreSQL) can reuse every case:
//! - [`Fixture`] is what a case needs from a backend: a store on a fresh, empty
//!   database, and (for the multi-process cases) another independent handle on
//!   the same database, as a second worker process would open it.
//! - [`cases`] holds the cases as plain `async fn(&dyn Fixture)`; they use only
//!   the [`Store`] trait, never a backend's internals.
//! - [`for_each_case!`] lists the cases once; `conformance!` turns that list
//!   into one `#[tokio::test]` per case for a given fixture factory. A new backend
//!   adds a module with its factory and `for_each_case!(conformance, factory)`.
//! - [`sqlite_only`] holds checks that are specific to the SQLite implementation
//!   (the query plan of the claim).
//!
//! Time is never read from the system clock: every `Store` method takes `now`, so cases pass
//! explicit instants (a [`ManualClock`] where a story spans several steps). No case
//! sleeps to win a race; concurrency is exercised by issuing operations together
//! (`tokio::join!`, `JoinSet`) and checking invariants that must hold in every interleaving.
//!
//! After every operation that may move a job, the observed change of state is checked
//! against [`mcpq::jobs::transition`] (see [`Observer`]), and each record is checked
//! for the invariants of its state (a running job has a lease, a finished one does not, ...).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use mcpq::auth::{NonceKey, NonceRecord};
use mcpq::clock::{Clock, ManualClock};
use mcpq::envelope::ClientId;
use mcpq::jobs::{transition, CrashPolicy, Event, JobId, JobState, RetryPolicy};
use mcpq::store::{
    AnswerOutcome, CancelOutcome, CappedTool, ClaimFilter, ClaimedJob, Completion, Enqueued,
    Heartbeat, JobRecord, NewJob, Outcome, Resolution, Store,
};

/// An instant far from zero, so that an implementation mixing up "unset" and 0 shows.
const T0: i64 = 1_700_000_000_000;
const LEASE: i64 = 30_000;
const NONCE_TTL: i64 = 300_000;

/// What a case needs from a backend. One fixture is one fresh, empty database.
pub trait Fixture: Send + Sync {
    /// The store under test.
    fn store(&self) -> Arc<dyn Store>;
    /// Another, independent handle on the same database (as a second process would open it).
    fn open_another(&self) -> LocalFuture<'_, Arc<dyn Store>>;
    /// The operator's access to the same database (`mcpq jobs …`).
    fn admin(&self) -> Arc<dyn mcpq::store::admin::AdminStore>;
}

/// Fixture futures are awaited by the test body itself, so they need not be `Send`
/// (opening a sqlx database is not provably `Send` to the compiler).
pub type LocalFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + 'a>>;

// ---------------------------------------------------------------------------------------------
// Helpers shared by the cases.
// ---------------------------------------------------------------------------------------------

fn client(name: &str) -> ClientId {
    ClientId(name.to_string())
}

fn nonce_at(client: &ClientId, expires_ms: i64) -> NonceRecord {
    NonceRecord {
        key: NonceKey::new(&client.0, &uuid::Uuid::new_v4().to_string()),
        expires_ms,
    }
}

fn new_job(client: &ClientId, created_at: i64, key: Option<&str>) -> NewJob {
    NewJob {
        id: JobId::generate(),
        client_id: client.clone(),
        tool: "start_long_task".to_string(),
        args: r#"{"steps":3}"#.to_string(),
        max_attempts: 3,
        idempotency_key: key.map(str::to_string),
        nonce: Some(nonce_at(client, created_at + NONCE_TTL)),
        created_at,
        def: DEF.to_string(),
        on_crash: CrashPolicy::Retry,
        capped: false,
        input_responses: None,
        priority: 0,
        boost_ms: 0,
        run_at: created_at,
        ckey: None,
        trace: None,
        callback: None,
        audit: None,
    }
}

/// The definition `new_job` records; [`any`] admits it.
const DEF: &str = "1";

/// A claim filter admitting `new_job`'s jobs (a worker that has their definition).
fn any() -> ClaimFilter {
    ClaimFilter {
        defs: vec![ClaimFilter::key("start_long_task", DEF)],
        capped: Vec::new(),
    }
}

/// A job of `tool` under definition `def` with crash policy `on_crash`.
fn job_of(client: &ClientId, at: i64, tool: &str, def: &str, on_crash: CrashPolicy) -> NewJob {
    NewJob {
        tool: tool.to_string(),
        def: def.to_string(),
        on_crash,
        capped: tool == "capped",
        ..new_job(client, at, None)
    }
}

fn ids(claimed: &[ClaimedJob]) -> Vec<JobId> {
    claimed.iter().map(|c| c.id.clone()).collect()
}

fn sorted(mut v: Vec<JobId>) -> Vec<JobId> {
    v.sort();
    v
}

fn done(c: &ClaimedJob, outcome: Outcome) -> Completion {
    Completion {
        id: c.id.clone(),
        fence: c.fence,
        hooked: c.hooked,
        outcome,
    }
}

fn succeeded(result: &str) -> Outcome {
    Outcome::Succeeded {
        result: result.to_string(),
    }
}

fn beat(c: &ClaimedJob, progress: Option<&str>) -> Heartbeat {
    Heartbeat {
        id: c.id.clone(),
        fence: c.fence,
        progress: progress.map(str::to_string),
    }
}

/// The errors history of a job: `(attempt, at, error)` per failed attempt, in order.
fn errors_of(r: &JobRecord) -> Vec<(u64, i64, String)> {
    let v: serde_json::Value = serde_json::from_str(&r.errors)
        .unwrap_or_else(|e| panic!("errors is not JSON ({e}): {:?}", r.errors));
    let arr = v
        .as_array()
        .unwrap_or_else(|| panic!("errors is not a JSON array: {:?}", r.errors));
    arr.iter()
        .map(|e| {
            let o = e
                .as_object()
                .unwrap_or_else(|| panic!("error entry is not an object: {e}"));
            // An attempt's outcome also names its worker (the console shows it).
            let worker_ok = o.get("worker").is_none_or(|w| w.is_string() || w.is_null());
            assert!(
                o.len() - usize::from(o.contains_key("worker")) == 3 && worker_ok,
                "error entry has exactly attempt, at, error (and maybe worker): {e}"
            );
            (
                o["attempt"].as_u64().expect("attempt is an integer"),
                o["at"].as_i64().expect("at is an integer"),
                o["error"].as_str().expect("error is a string").to_string(),
            )
        })
        .collect()
}

/// Invariants of a record that hold in every state, whatever operation produced it.
fn assert_record_invariants(r: &JobRecord) {
    let ctx = format!("{r:#?}");
    assert!(r.attempt <= r.max_attempts, "attempt > max_attempts: {ctx}");
    match r.state {
        JobState::Queued => {
            assert!(
                r.lease_owner.is_none(),
                "queued job has a lease owner: {ctx}"
            );
            assert!(
                r.lease_expires_at.is_none(),
                "queued job has a lease: {ctx}"
            );
            assert!(r.finished_at.is_none(), "queued job is finished: {ctx}");
        }
        JobState::Running => {
            assert!(
                r.lease_owner.is_some(),
                "running job has no lease owner: {ctx}"
            );
            assert!(
                r.lease_expires_at.is_some(),
                "running job has no lease: {ctx}"
            );
            assert!(r.attempt >= 1, "running job has attempt 0: {ctx}");
            assert!(r.fence >= 1, "running job was never fenced: {ctx}");
            assert!(
                r.started_at.is_some(),
                "running job has no started_at: {ctx}"
            );
            assert!(r.finished_at.is_none(), "running job is finished: {ctx}");
        }
        JobState::AwaitingInput => {
            assert!(
                r.lease_owner.is_none() && r.lease_expires_at.is_none(),
                "a job waiting for input keeps a lease: {ctx}"
            );
            assert!(r.finished_at.is_none(), "waiting job is finished: {ctx}");
            assert!(
                r.input_requests.is_some(),
                "waiting job has no requests: {ctx}"
            );
        }
        JobState::InDoubt => {
            assert!(
                r.lease_owner.is_none() && r.lease_expires_at.is_none(),
                "in-doubt job keeps a lease: {ctx}"
            );
            assert!(
                r.finished_at.is_none(),
                "in-doubt job counts as finished (retention would delete it): {ctx}"
            );
        }
        JobState::Succeeded | JobState::Failed | JobState::Cancelled => {
            assert!(
                r.lease_owner.is_none(),
                "finished job has a lease owner: {ctx}"
            );
            assert!(
                r.lease_expires_at.is_none(),
                "finished job has a lease: {ctx}"
            );
            assert!(
                r.finished_at.is_some(),
                "finished job has no finished_at: {ctx}"
            );
        }
    }
    if r.state == JobState::Succeeded {
        assert!(r.result.is_some(), "succeeded job has no result: {ctx}");
    }
}

/// Tracks the last state seen of each job and checks every observed change against
/// the state machine in [`mcpq::jobs`]: a change of state caused by an operation for
/// event `ev` must be exactly `transition(before, ev)`. No change is always allowed
/// (a rejected, fenced-off or no-op operation).
struct Observer {
    seen: HashMap<JobId, (ClientId, JobState)>,
}

impl Observer {
    fn new() -> Self {
        Observer {
            seen: HashMap::new(),
        }
    }

    /// Registers a job just enqueued; reads it back and checks it is queued.
    async fn created(&mut self, s: &dyn Store, client: &ClientId, id: &JobId) -> JobRecord {
        let r = s
            .get_job(client, id)
            .await
            .unwrap()
            .expect("an enqueued job is readable by its client");
        assert_eq!(r.state, JobState::Queued, "a new job is queued");
        assert_eq!(r.attempt, 0);
        assert_eq!(errors_of(&r).len(), 0);
        assert_record_invariants(&r);
        self.seen.insert(id.clone(), (client.clone(), r.state));
        r
    }

    /// Reads `id` after an operation for event `ev` and checks the state change is legal.
    async fn after(&mut self, s: &dyn Store, ev: Event, id: &JobId) -> JobRecord {
        let (client, before) = self
            .seen
            .get(id)
            .cloned()
            .unwrap_or_else(|| panic!("job {id} is not tracked"));
        let r = s
            .get_job(&client, id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("job {id} vanished after {ev:?}"));
        assert_record_invariants(&r);
        if r.state != before {
            assert_eq!(
                transition(before, ev),
                Some(r.state),
                "job {id} went {before:?} -> {:?} on {ev:?}, which the state machine does not allow",
                r.state
            );
        }
        self.seen.insert(id.clone(), (client, r.state));
        r
    }

    /// [`Observer::after`] for several jobs.
    async fn after_all(&mut self, s: &dyn Store, ev: Event, ids: &[JobId]) -> Vec<JobRecord> {
        let mut out = Vec::new();
        for id in ids {
            out.push(self.after(s, ev, id).await);
        }
        out
    }

    /// Reads `id` and checks it is in `want` (reached by `ev`).
    async fn expect(&mut self, s: &dyn Store, ev: Event, id: &JobId, want: JobState) -> JobRecord {
        let r = self.after(s, ev, id).await;
        assert_eq!(r.state, want, "job {id} after {ev:?}");
        r
    }
}

/// Enqueues a job and registers it with the observer; asserts it was created.
async fn enqueue_new(
    s: &dyn Store,
    obs: &mut Observer,
    client: &ClientId,
    created_at: i64,
) -> JobId {
    let job = new_job(client, created_at, None);
    let id = job.id.clone();
    assert_eq!(s.enqueue(job).await.unwrap(), Enqueued::Created(id.clone()));
    obs.created(s, client, &id).await;
    id
}

/// Claims exactly one job (the only due one) and checks the Claim transition.
async fn claim_one(s: &dyn Store, obs: &mut Observer, worker: &str, now: i64) -> ClaimedJob {
    let mut c = s.claim(worker, 10, now, LEASE, &any()).await.unwrap();
    assert_eq!(c.len(), 1, "exactly one job is due at {now}: {c:?}");
    let c = c.pop().unwrap();
    let r = obs.expect(s, Event::Claim, &c.id, JobState::Running).await;
    assert_eq!(r.fence, c.fence);
    assert_eq!(r.attempt, c.attempt);
    assert_eq!(r.lease_owner.as_deref(), Some(worker));
    assert_eq!(r.lease_expires_at, Some(now + LEASE));
    c
}

// ---------------------------------------------------------------------------------------------
// The cases. Each takes only a fixture and uses only the `Store` trait.
// ---------------------------------------------------------------------------------------------

pub mod cases {
    use super::*;

    pub async fn enqueue_creates_a_job_visible_only_to_its_client(fx: &dyn Fixture) {
        let s = fx.store();
        let s = &*s;
        s.ping().await.unwrap();
        let (alice, mallory) = (client("alice"), client("mallory"));
        let job = new_job(&alice, T0, None);
        let id = job.id.clone();
        let nonce = job.nonce.unwrap();
        assert_eq!(
            s.enqueue(job.clone()).await.unwrap(),
            Enqueued::Created(id.clone())
        );

        let mut obs = Observer::new();
        let r = obs.created(s, &alice, &id).await;
        assert_eq!(r.id, id);
        assert_eq!(r.client_id, alice);
        assert_eq!(r.tool, job.tool);
        assert_eq!(r.args, job.args);
        assert_eq!(r.max_attempts, 3);
        assert_eq!(r.run_at, T0, "a new job is due at once");
        assert_eq!(r.created_at, T0);
        assert_eq!(r.fence, 0);
        assert!(!r.cancel_requested);
        assert_eq!(r.progress, None);
        assert_eq!(r.result, None);
        assert_eq!(r.idempotency_key, None);
        assert_eq!(r.started_at, None);

        // The enqueue committed the call's nonce with the job.
        let live = s.live_nonces(T0).await.unwrap();
        assert!(live.contains(&nonce), "the job's nonce is stored with it");

        // Isolation: another client sees nothing and can change nothing.
        assert!(s.get_job(&mallory, &id).await.unwrap().is_none());
        assert_eq!(
            s.cancel(&mallory, &id, T0 + 1).await.unwrap(),
            CancelOutcome::NotFound
        );
        obs.expect(s, Event::Cancel, &id, JobState::Queued).await;

        // A missing job looks exactly like another client's.
        let missing = JobId::generate();
        assert!(s.get_job(&alice, &missing).await.unwrap().is_none());
        assert_eq!(
            s.cancel(&alice, &missing, T0 + 1).await.unwrap(),
            CancelOutcome::NotFound
        );
    }

    /// Lookups issued together (as concurrent polls are) each get exactly their own answer:
    /// a client's own jobs, nothing for another client's or a missing id, duplicates alike.
    pub async fn concurrent_lookups_each_get_their_own_answer(fx: &dyn Fixture) {
        let s = fx.store();
        let (alice, bob) = (client("alice"), client("bob"));
        let mut mine = Vec::new();
        for i in 0..50 {
            let owner = if i % 2 == 0 { &alice } else { &bob };
            let job = new_job(owner, T0 + i, None);
            let id = job.id.clone();
            assert_eq!(s.enqueue(job).await.unwrap(), Enqueued::Created(id.clone()));
            mine.push((owner.clone(), id));
        }
        let mut asks = Vec::new();
        for (owner, id) in &mine {
            let other = if *owner == alice { &bob } else { &alice };
            asks.push((owner.clone(), id.clone(), true));
            asks.push((other.clone(), id.clone(), false));
            asks.push((owner.clone(), id.clone(), true));
        }
        for _ in 0..20 {
            asks.push((alice.clone(), JobId::generate(), false));
        }
        let mut set = tokio::task::JoinSet::new();
        for (who, id, visible) in asks {
            let s = s.clone();
            set.spawn(async move {
                let got = s.get_job(&who, &id).await.unwrap();
                match got {
                    Some(r) => {
                        assert!(visible, "{who:?} must not see {id:?}");
                        assert_eq!(r.id, id);
                        assert_eq!(r.client_id, who);
                    }
                    None => assert!(!visible, "{who:?} must see its job {id:?}"),
                }
            });
        }
        let mut answered = 0;
        while let Some(r) = set.join_next().await {
            r.unwrap();
            answered += 1;
        }
        assert_eq!(answered, 50 * 3 + 20);
    }

    pub async fn idempotency_key_returns_the_existing_job_per_client(fx: &dyn Fixture) {
        let s = fx.store();
        let s = &*s;
        let (alice, bob) = (client("alice"), client("bob"));

        let first = new_job(&alice, T0, Some("k1"));
        let first_id = first.id.clone();
        assert_eq!(
            s.enqueue(first).await.unwrap(),
            Enqueued::Created(first_id.clone())
        );
        let again = new_job(&alice, T0 + 5, Some("k1"));
        let again_id = again.id.clone();
        assert_eq!(
            s.enqueue(again).await.unwrap(),
            Enqueued::Existing(first_id.clone())
        );
        assert!(
            s.get_job(&alice, &again_id).await.unwrap().is_none(),
            "the duplicate was not stored"
        );
        let r = s.get_job(&alice, &first_id).await.unwrap().unwrap();
        assert_eq!(r.idempotency_key.as_deref(), Some("k1"));
        assert_eq!(r.created_at, T0, "the existing job is untouched");

        // The same key from another client is another job.
        let bobs = new_job(&bob, T0 + 6, Some("k1"));
        let bobs_id = bobs.id.clone();
        assert_eq!(
            s.enqueue(bobs).await.unwrap(),
            Enqueued::Created(bobs_id.clone())
        );
        assert_ne!(bobs_id, first_id);

        // Another key of the same client is another job.
        let other = new_job(&alice, T0 + 7, Some("k2"));
        assert!(matches!(
            s.enqueue(other).await.unwrap(),
            Enqueued::Created(_)
        ));

        // The key still names the job once it has finished.
        let c = s.claim("w", 10, T0 + 10, LEASE, &any()).await.unwrap();
        assert_eq!(c.len(), 3);
        let applied = s
            .complete(
                c.iter().map(|c| done(c, succeeded("{}"))).collect(),
                T0 + 11,
            )
            .await
            .unwrap();
        assert_eq!(applied.len(), 3);
        assert_eq!(
            s.enqueue(new_job(&alice, T0 + 12, Some("k1")))
                .await
                .unwrap(),
            Enqueued::Existing(first_id)
        );
    }

    pub async fn idempotency_holds_for_concurrent_enqueues_in_one_batch(fx: &dyn Fixture) {
        let s = fx.store();
        let (alice, bob) = (client("alice"), client("bob"));

        // Two at once: they are queued together and normally share one commit batch.
        let a = new_job(&alice, T0, Some("same"));
        let b = new_job(&alice, T0, Some("same"));
        let (ra, rb) = tokio::join!(s.enqueue(a.clone()), s.enqueue(b.clone()));
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(
            ra.id(),
            rb.id(),
            "both enqueues name one job: {ra:?} {rb:?}"
        );
        let created = [&ra, &rb]
            .iter()
            .filter(|e| matches!(e, Enqueued::Created(_)))
            .count();
        assert_eq!(created, 1, "exactly one of them created it: {ra:?} {rb:?}");
        assert!(ra.id() == &a.id || ra.id() == &b.id);

        // Many at once, spread over keys and clients, all issued together so that most
        // share commit batches: per (client, key) exactly one Created and one id.
        let mut set = tokio::task::JoinSet::new();
        for i in 0..400 {
            let s = s.clone();
            let who = if i % 2 == 0 {
                alice.clone()
            } else {
                bob.clone()
            };
            let key = format!("k{}", i % 10);
            set.spawn(async move {
                let r = s.enqueue(new_job(&who, T0, Some(&key))).await.unwrap();
                (who, key, r)
            });
        }
        let mut by_key: HashMap<(ClientId, String), Vec<Enqueued>> = HashMap::new();
        while let Some(r) = set.join_next().await {
            let (who, key, e) = r.unwrap();
            by_key.entry((who, key)).or_default().push(e);
        }
        assert_eq!(
            by_key.len(),
            10,
            "5 keys per client (i%10 splits by parity)"
        );
        for ((who, key), results) in &by_key {
            let ids: HashSet<&JobId> = results.iter().map(Enqueued::id).collect();
            assert_eq!(ids.len(), 1, "{who}/{key} named several jobs: {results:?}");
            let created = results
                .iter()
                .filter(|e| matches!(e, Enqueued::Created(_)))
                .count();
            assert_eq!(created, 1, "{who}/{key}: {results:?}");
            let id = *ids.iter().next().unwrap();
            let r = s.get_job(who, id).await.unwrap().unwrap();
            assert_eq!(r.idempotency_key.as_deref(), Some(key.as_str()));
        }
        // 10 jobs from the loop plus the one from the pair; nothing else was stored.
        let claimed = s.claim("w", 100, T0, LEASE, &any()).await.unwrap();
        assert_eq!(claimed.len(), 11);
    }

    pub async fn concurrent_enqueues_all_commit_and_are_claimed_exactly_once(fx: &dyn Fixture) {
        const N: usize = 2000;
        let s = fx.store();
        let alice = client("alice");
        let mut set = tokio::task::JoinSet::new();
        for i in 0..N {
            let s = s.clone();
            let alice = alice.clone();
            set.spawn(async move {
                let job = new_job(&alice, T0 + (i % 7) as i64, None);
                let id = job.id.clone();
                let r = s.enqueue(job).await.unwrap();
                assert_eq!(r, Enqueued::Created(id.clone()));
                id
            });
        }
        let mut created = HashSet::new();
        while let Some(id) = set.join_next().await {
            assert!(created.insert(id.unwrap()), "duplicate id");
        }
        assert_eq!(created.len(), N);

        // Every committed job is readable (enqueue returned only after its commit).
        for id in created.iter().take(50) {
            assert!(s.get_job(&alice, id).await.unwrap().is_some());
        }

        let mut claimed = HashSet::new();
        loop {
            let c = s.claim("w", 333, T0 + 10, LEASE, &any()).await.unwrap();
            if c.is_empty() {
                break;
            }
            for j in c {
                assert_eq!(j.attempt, 1);
                assert!(claimed.insert(j.id), "a job was claimed twice");
            }
        }
        assert_eq!(claimed, created, "every job was claimed, once");
    }

    pub async fn claim_takes_due_jobs_oldest_first_up_to_the_limit(fx: &dyn Fixture) {
        let s = fx.store();
        let s = &*s;
        let mut obs = Observer::new();
        let alice = client("alice");
        // Five jobs created one ms apart, then two created at the same instant
        // (ties are broken by creation order), then one not yet due.
        let mut jobs = Vec::new();
        for i in 0..5 {
            jobs.push(enqueue_new(s, &mut obs, &alice, T0 + i).await);
        }
        let tie1 = enqueue_new(s, &mut obs, &alice, T0 + 10).await;
        let tie2 = enqueue_new(s, &mut obs, &alice, T0 + 10).await;
        let future = enqueue_new(s, &mut obs, &alice, T0 + 1000).await;

        // Nothing is due before the first job's run_at.
        assert!(s
            .claim("w1", 10, T0 - 1, LEASE, &any())
            .await
            .unwrap()
            .is_empty());

        // run_at <= now is due: at T0 exactly, the first job only.
        let now = T0;
        let c = s.claim("w1", 10, now, LEASE, &any()).await.unwrap();
        assert_eq!(ids(&c), vec![jobs[0].clone()]);

        // Oldest first, at most `limit`.
        let now = T0 + 20;
        let c = s.claim("w1", 2, now, LEASE, &any()).await.unwrap();
        assert_eq!(
            sorted(ids(&c)),
            sorted(vec![jobs[1].clone(), jobs[2].clone()])
        );
        for j in &c {
            assert_eq!(j.attempt, 1, "the claim counts the attempt");
            assert_eq!(j.fence, 1, "the claim bumps the fence");
            assert_eq!(j.max_attempts, 3);
            assert_eq!(j.tool, "start_long_task");
            assert_eq!(j.args, r#"{"steps":3}"#);
            let r = obs.expect(s, Event::Claim, &j.id, JobState::Running).await;
            assert_eq!(r.lease_owner.as_deref(), Some("w1"));
            assert_eq!(r.lease_expires_at, Some(now + LEASE));
            assert_eq!(r.started_at, Some(now));
            assert_eq!(r.attempt, 1);
            assert_eq!(r.fence, 1);
        }
        // A second claim does not hand out the same jobs again.
        let c2 = s.claim("w2", 3, now, LEASE, &any()).await.unwrap();
        assert_eq!(
            sorted(ids(&c2)),
            sorted(vec![jobs[3].clone(), jobs[4].clone(), tie1.clone()])
        );
        let c3 = s.claim("w2", 10, now, LEASE, &any()).await.unwrap();
        assert_eq!(ids(&c3), vec![tie2.clone()]);
        for j in c2.iter().chain(&c3) {
            let r = obs.expect(s, Event::Claim, &j.id, JobState::Running).await;
            assert_eq!(r.lease_owner.as_deref(), Some("w2"));
        }
        // Only the future job is left, and it is not due yet.
        assert!(s
            .claim("w2", 10, now, LEASE, &any())
            .await
            .unwrap()
            .is_empty());
        obs.expect(s, Event::Claim, &future, JobState::Queued).await;
        let c4 = s.claim("w3", 10, T0 + 1000, LEASE, &any()).await.unwrap();
        assert_eq!(ids(&c4), vec![future.clone()]);
        obs.expect(s, Event::Claim, &future, JobState::Running)
            .await;
        // Running jobs are never claimed again.
        assert!(s
            .claim("w3", 10, T0 + 10_000, LEASE, &any())
            .await
            .unwrap()
            .is_empty());
    }

    pub async fn concurrent_claimers_never_get_the_same_job(fx: &dyn Fixture) {
        const N: usize = 1000;
        let s = fx.store();
        let other = fx.open_another().await;
        let alice = client("alice");
        let mut set = tokio::task::JoinSet::new();
        for i in 0..N {
            let s = s.clone();
            let alice = alice.clone();
            set.spawn(async move { s.enqueue(new_job(&alice, T0 + i as i64, None)).await });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap().unwrap();
        }

        // Two stores on one database (two processes), four claim loops each, all at once.
        let mut set = tokio::task::JoinSet::new();
        for w in 0..8 {
            let s = if w % 2 == 0 { s.clone() } else { other.clone() };
            set.spawn(async move {
                let name = format!("worker-{w}");
                let mut mine = Vec::new();
                loop {
                    let c = s
                        .claim(&name, 7, T0 + N as i64, LEASE, &any())
                        .await
                        .unwrap();
                    if c.is_empty() {
                        return (name, mine);
                    }
                    mine.extend(c);
                }
            });
        }
        let mut owner: HashMap<JobId, String> = HashMap::new();
        while let Some(r) = set.join_next().await {
            let (name, mine) = r.unwrap();
            for c in mine {
                assert_eq!(c.attempt, 1, "claimed once means attempt 1");
                assert_eq!(c.fence, 1);
                if let Some(prev) = owner.insert(c.id.clone(), name.clone()) {
                    panic!("job {} claimed by {prev} and {name}", c.id);
                }
            }
        }
        assert_eq!(owner.len(), N, "every job was claimed");
        // The record names the claimer that got it.
        for (id, name) in owner.iter().take(50) {
            let r = s.get_job(&alice, id).await.unwrap().unwrap();
            assert_eq!(r.lease_owner.as_ref(), Some(name));
        }
    }

    pub async fn heartbeat_extends_only_current_leases_and_reports_cancel(fx: &dyn Fixture) {
        let s = fx.store();
        let s = &*s;
        let mut obs = Observer::new();
        let alice = client("alice");
        let id = enqueue_new(s, &mut obs, &alice, T0).await;
        let other = enqueue_new(s, &mut obs, &alice, T0 + 1000).await;
        let c = claim_one(s, &mut obs, "w", T0).await;
        assert_eq!(c.id, id);

        // The right fence: lease extended from the heartbeat's `now`, progress stored.
        let acks = s
            .heartbeat(vec![beat(&c, Some(r#"{"step":1}"#))], T0 + 100, LEASE)
            .await
            .unwrap();
        assert_eq!(acks.len(), 1);
        assert_eq!(acks[0].id, id);
        assert!(!acks[0].cancel_requested);
        let r = obs.expect(s, Event::Claim, &id, JobState::Running).await;
        assert_eq!(r.lease_expires_at, Some(T0 + 100 + LEASE));
        assert_eq!(r.progress.as_deref(), Some(r#"{"step":1}"#));
        assert_eq!(r.fence, c.fence, "a heartbeat does not change the fence");
        assert_eq!(r.attempt, 1, "a heartbeat does not count an attempt");

        // No progress this time: the last progress is kept.
        let acks = s
            .heartbeat(vec![beat(&c, None)], T0 + 200, LEASE)
            .await
            .unwrap();
        assert_eq!(acks.len(), 1);
        let r = obs.expect(s, Event::Claim, &id, JobState::Running).await;
        assert_eq!(r.lease_expires_at, Some(T0 + 200 + LEASE));
        assert_eq!(r.progress.as_deref(), Some(r#"{"step":1}"#));

        // A wrong fence is not acked and changes nothing.
        let stale = Heartbeat {
            id: id.clone(),
            fence: c.fence + 1,
            progress: Some(r#"{"step":99}"#.into()),
        };
        let acks = s.heartbeat(vec![stale], T0 + 300, LEASE).await.unwrap();
        assert!(acks.is_empty(), "wrong fence acked: {acks:?}");
        let r = obs.expect(s, Event::Claim, &id, JobState::Running).await;
        assert_eq!(r.lease_expires_at, Some(T0 + 200 + LEASE));
        assert_eq!(r.progress.as_deref(), Some(r#"{"step":1}"#));

        // A job that is not running is not acked (it has fence 0; so does the beat).
        let queued = Heartbeat {
            id: other.clone(),
            fence: 0,
            progress: None,
        };
        assert!(s
            .heartbeat(vec![queued], T0 + 300, LEASE)
            .await
            .unwrap()
            .is_empty());
        let r = obs.expect(s, Event::Claim, &other, JobState::Queued).await;
        assert!(r.lease_expires_at.is_none());

        // In one batch: only the current ones land.
        let mixed = vec![
            beat(&c, None),
            Heartbeat {
                id: JobId::generate(),
                fence: 1,
                progress: None,
            },
        ];
        let acks = s.heartbeat(mixed, T0 + 400, LEASE).await.unwrap();
        assert_eq!(acks.iter().map(|a| &a.id).collect::<Vec<_>>(), vec![&id]);

        // Cancel of a running job is a request the next heartbeat reports; the job keeps running.
        assert_eq!(
            s.cancel(&alice, &id, T0 + 500).await.unwrap(),
            CancelOutcome::Requested
        );
        let r = obs.expect(s, Event::Cancel, &id, JobState::Running).await;
        assert!(r.cancel_requested);
        let acks = s
            .heartbeat(vec![beat(&c, None)], T0 + 600, LEASE)
            .await
            .unwrap();
        assert_eq!(acks.len(), 1);
        assert!(acks[0].cancel_requested, "the heartbeat reports the cancel");
        // Asking again is still a request.
        assert_eq!(
            s.cancel(&alice, &id, T0 + 650).await.unwrap(),
            CancelOutcome::Requested
        );

        // The worker stops and reports Cancelled.
        let applied = s
            .complete(
                vec![done(
                    &c,
                    Outcome::Cancelled {
                        error: "cancelled".into(),
                    },
                )],
                T0 + 700,
            )
            .await
            .unwrap();
        assert_eq!(applied, vec![id.clone()]);
        let r = obs.expect(s, Event::Cancel, &id, JobState::Cancelled).await;
        assert_eq!(r.finished_at, Some(T0 + 700));
        // A finished job acks no heartbeat.
        assert!(s
            .heartbeat(vec![beat(&c, None)], T0 + 800, LEASE)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            s.cancel(&alice, &id, T0 + 900).await.unwrap(),
            CancelOutcome::AlreadyFinished(JobState::Cancelled)
        );
    }

    pub async fn cancel_cancels_queued_jobs_at_once_and_reports_finished_ones(fx: &dyn Fixture) {
        let s = fx.store();
        let s = &*s;
        let mut obs = Observer::new();
        let alice = client("alice");
        let queued = enqueue_new(s, &mut obs, &alice, T0).await;

        assert_eq!(
            s.cancel(&alice, &queued, T0 + 5).await.unwrap(),
            CancelOutcome::Cancelled
        );
        let r = obs
            .expect(s, Event::Cancel, &queued, JobState::Cancelled)
            .await;
        assert_eq!(r.finished_at, Some(T0 + 5));
        assert_eq!(r.attempt, 0);
        // A cancelled job is never claimed.
        assert!(s
            .claim("w", 10, T0 + 10, LEASE, &any())
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            s.cancel(&alice, &queued, T0 + 6).await.unwrap(),
            CancelOutcome::AlreadyFinished(JobState::Cancelled)
        );

        // Succeeded and failed jobs report their state.
        let ok = enqueue_new(s, &mut obs, &alice, T0 + 20).await;
        let c = claim_one(s, &mut obs, "w", T0 + 20).await;
        s.complete(vec![done(&c, succeeded("{}"))], T0 + 21)
            .await
            .unwrap();
        obs.expect(s, Event::Succeed, &ok, JobState::Succeeded)
            .await;
        assert_eq!(
            s.cancel(&alice, &ok, T0 + 22).await.unwrap(),
            CancelOutcome::AlreadyFinished(JobState::Succeeded)
        );
        obs.expect(s, Event::Cancel, &ok, JobState::Succeeded).await;

        let bad = enqueue_new(s, &mut obs, &alice, T0 + 30).await;
        let c = claim_one(s, &mut obs, "w", T0 + 30).await;
        s.complete(
            vec![done(
                &c,
                Outcome::Failed {
                    error: "boom".into(),
                },
            )],
            T0 + 31,
        )
        .await
        .unwrap();
        obs.expect(s, Event::Fail, &bad, JobState::Failed).await;
        assert_eq!(
            s.cancel(&alice, &bad, T0 + 32).await.unwrap(),
            CancelOutcome::AlreadyFinished(JobState::Failed)
        );
        let r = obs.expect(s, Event::Cancel, &bad, JobState::Failed).await;
        assert_eq!(
            r.finished_at,
            Some(T0 + 31),
            "a late cancel changes nothing"
        );
    }

    /// Several paths carry text inside JSON built or read by the store (SQLite's stores
    /// pack rows, claims, group reads, progress and results into JSON); whatever text goes
    /// in must come back byte for byte.
    pub async fn awkward_text_round_trips_through_every_path(fx: &dyn Fixture) {
        let s = fx.store();
        let s = &*s;
        let mut obs = Observer::new();
        let alice = client("alice");
        let awkward = concat!(
            r#"{"q":"\"quoted\" \\ back\\slash /","u":"\u0000\u001f","#,
            "\"raw\":\"tab\tnewline\ncr\r del\u{7f} é ß 中文 😀 \u{2028}\u{2029} \u{fffd}\"}"
        );
        let mut job = new_job(&alice, T0, None);
        job.args = awkward.to_string();
        let id = job.id.clone();
        assert_eq!(s.enqueue(job).await.unwrap(), Enqueued::Created(id.clone()));
        obs.created(s, &alice, &id).await;
        let r = s.get_job(&alice, &id).await.unwrap().unwrap();
        assert_eq!(r.args, awkward);

        let c = claim_one(s, &mut obs, "w", T0).await;
        assert_eq!(c.args, awkward, "claim");
        assert_eq!(c.tool, "start_long_task");

        s.heartbeat(vec![beat(&c, Some(awkward))], T0 + 1, LEASE)
            .await
            .unwrap();
        let r = s.get_job(&alice, &id).await.unwrap().unwrap();
        assert_eq!(r.progress.as_deref(), Some(awkward), "progress");

        let retry = Outcome::Retry {
            run_at: T0 + 2,
            error: awkward.to_string(),
        };
        s.complete(vec![done(&c, retry)], T0 + 2).await.unwrap();
        let r = obs.expect(s, Event::Retry, &id, JobState::Queued).await;
        assert_eq!(errors_of(&r)[0].2, awkward, "error history");

        let c = claim_one(s, &mut obs, "w", T0 + 2).await;
        assert_eq!(c.args, awkward, "second claim");
        s.complete(vec![done(&c, succeeded(awkward))], T0 + 3)
            .await
            .unwrap();
        let r = obs
            .expect(s, Event::Succeed, &id, JobState::Succeeded)
            .await;
        assert_eq!(r.result.as_deref(), Some(awkward), "result");
        assert_eq!(r.args, awkward, "args after it all");
    }

    pub async fn complete_applies_each_outcome_with_the_current_fence(fx: &dyn Fixture) {
        let s = fx.store();
        let s = &*s;
        let mut obs = Observer::new();
        let alice = client("alice");

        // Succeeded: result and finished_at, lease cleared.
        let a = enqueue_new(s, &mut obs, &alice, T0).await;
        let ca = claim_one(s, &mut obs, "w", T0).await;
        let applied = s
            .complete(vec![done(&ca, succeeded(r#"{"sum":6}"#))], T0 + 10)
            .await
            .unwrap();
        assert_eq!(applied, vec![a.clone()]);
        let r = obs.expect(s, Event::Succeed, &a, JobState::Succeeded).await;
        assert_eq!(r.result.as_deref(), Some(r#"{"sum":6}"#));
        assert_eq!(r.finished_at, Some(T0 + 10));
        assert_eq!(errors_of(&r).len(), 0);
        assert_eq!(r.attempt, 1);
        // Completing twice does nothing the second time.
        let again = s
            .complete(vec![done(&ca, succeeded(r#"{"sum":7}"#))], T0 + 11)
            .await
            .unwrap();
        assert!(again.is_empty());
        let r = obs.expect(s, Event::Succeed, &a, JobState::Succeeded).await;
        assert_eq!(r.result.as_deref(), Some(r#"{"sum":6}"#));
        assert_eq!(r.finished_at, Some(T0 + 10));

        // Retry: back to the queue at run_at, the attempt counted, the error recorded.
        let b = enqueue_new(s, &mut obs, &alice, T0 + 100).await;
        let cb = claim_one(s, &mut obs, "w", T0 + 100).await;
        let retry_at = T0 + 5_000;
        let applied = s
            .complete(
                vec![done(
                    &cb,
                    Outcome::Retry {
                        run_at: retry_at,
                        error: "flaky".into(),
                    },
                )],
                T0 + 110,
            )
            .await
            .unwrap();
        assert_eq!(applied, vec![b.clone()]);
        let r = obs.expect(s, Event::Retry, &b, JobState::Queued).await;
        assert_eq!(r.run_at, retry_at);
        assert_eq!(r.attempt, 1, "a retried attempt counts");
        assert_eq!(r.result, None);
        assert_eq!(errors_of(&r), vec![(1, T0 + 110, "flaky".to_string())]);
        // Not due before run_at.
        assert!(s
            .claim("w", 10, retry_at - 1, LEASE, &any())
            .await
            .unwrap()
            .is_empty());
        let cb2 = claim_one(s, &mut obs, "w", retry_at).await;
        assert_eq!(cb2.id, b);
        assert_eq!(cb2.attempt, 2);
        assert_eq!(cb2.fence, cb.fence + 1);
        let r = obs.after(s, Event::Claim, &b).await;
        assert_eq!(
            r.started_at,
            Some(T0 + 100),
            "started_at is the first start"
        );
        // The old attempt's completion is fenced off.
        let stale = s
            .complete(vec![done(&cb, succeeded("{}"))], retry_at + 1)
            .await
            .unwrap();
        assert!(stale.is_empty(), "a stale fence was applied: {stale:?}");
        obs.expect(s, Event::Succeed, &b, JobState::Running).await;

        // Failed: the error is appended to the history; no result.
        let applied = s
            .complete(
                vec![done(
                    &cb2,
                    Outcome::Failed {
                        error: "fatal".into(),
                    },
                )],
                retry_at + 10,
            )
            .await
            .unwrap();
        assert_eq!(applied, vec![b.clone()]);
        let r = obs.expect(s, Event::Fail, &b, JobState::Failed).await;
        assert_eq!(r.finished_at, Some(retry_at + 10));
        assert_eq!(r.result, None);
        assert_eq!(
            errors_of(&r),
            vec![
                (1, T0 + 110, "flaky".to_string()),
                (2, retry_at + 10, "fatal".to_string())
            ]
        );

        // Cancelled (the worker honoured a cancel request).
        let d = enqueue_new(s, &mut obs, &alice, T0 + 200).await;
        let cd = claim_one(s, &mut obs, "w", retry_at + 20).await;
        assert_eq!(cd.id, d);
        let applied = s
            .complete(
                vec![done(
                    &cd,
                    Outcome::Cancelled {
                        error: "cancelled by client".into(),
                    },
                )],
                retry_at + 30,
            )
            .await
            .unwrap();
        assert_eq!(applied, vec![d.clone()]);
        let r = obs.expect(s, Event::Cancel, &d, JobState::Cancelled).await;
        assert_eq!(r.finished_at, Some(retry_at + 30));
        assert_eq!(r.result, None);

        // A batch with current and stale entries, of mixed outcomes, applies only the
        // current ones, each with its own outcome.
        let e = enqueue_new(s, &mut obs, &alice, T0 + 300).await;
        let f = enqueue_new(s, &mut obs, &alice, T0 + 301).await;
        let g = enqueue_new(s, &mut obs, &alice, T0 + 302).await;
        let now = retry_at + 40;
        let cs = s.claim("w", 10, now, LEASE, &any()).await.unwrap();
        assert_eq!(
            sorted(ids(&cs)),
            sorted(vec![e.clone(), f.clone(), g.clone()])
        );
        obs.after_all(s, Event::Claim, &[e.clone(), f.clone(), g.clone()])
            .await;
        let claimed = |id: &JobId| cs.iter().find(|c| &c.id == id).unwrap();
        let (ce, cf, cg) = (claimed(&e), claimed(&f), claimed(&g));
        let batch = vec![
            done(cg, Outcome::Failed { error: "no".into() }),
            done(ce, succeeded(r#"{"e":1}"#)),
            Completion {
                id: f.clone(),
                fence: cf.fence - 1,
                hooked: false,
                outcome: succeeded(r#"{"f":1}"#),
            },
            Completion {
                id: JobId::generate(),
                fence: 1,
                hooked: false,
                outcome: succeeded("{}"),
            },
        ];
        let applied = s.complete(batch, now + 1).await.unwrap();
        assert_eq!(sorted(applied), sorted(vec![e.clone(), g.clone()]));
        let r = obs.expect(s, Event::Succeed, &e, JobState::Succeeded).await;
        assert_eq!(r.result.as_deref(), Some(r#"{"e":1}"#));
        obs.expect(s, Event::Succeed, &f, JobState::Running).await;
        let r = obs.expect(s, Event::Fail, &g, JobState::Failed).await;
        assert_eq!(r.result, None);
    }

    pub async fn stale_completion_after_rescue_and_reclaim_is_not_applied(fx: &dyn Fixture) {
        let s = fx.store();
        let s = &*s;
        let clock = ManualClock::new(T0);
        let policy = RetryPolicy {
            base_ms: 1000,
            max_ms: 1000,
        };
        let mut obs = Observer::new();
        let alice = client("alice");
        let id = enqueue_new(s, &mut obs, &alice, clock.now_ms()).await;
        let old = claim_one(s, &mut obs, "w-old", clock.now_ms()).await;

        // The old worker is partitioned away; its lease runs out and the rescuer requeues.
        clock.advance(LEASE + 1);
        let n = mcpq::worker::rescue_once(s, policy, clock.now_ms())
            .await
            .unwrap();
        assert_eq!(n, 1);
        obs.expect(s, Event::Rescue, &id, JobState::Queued).await;
        // Even before anyone re-claims it, the old worker cannot complete it.
        let stale = s
            .complete(vec![done(&old, succeeded("{}"))], clock.now_ms())
            .await
            .unwrap();
        assert!(stale.is_empty());
        obs.expect(s, Event::Succeed, &id, JobState::Queued).await;

        clock.advance(1000);
        let new = claim_one(s, &mut obs, "w-new", clock.now_ms()).await;
        assert_eq!(new.id, id);
        assert!(new.fence > old.fence);
        assert_eq!(new.attempt, 2);

        // The old worker comes back and reports: nothing is applied, no id returned.
        let stale = s
            .complete(
                vec![done(&old, succeeded(r#"{"old":true}"#))],
                clock.now_ms(),
            )
            .await
            .unwrap();
        assert!(stale.is_empty(), "stale completion applied: {stale:?}");
        assert!(s
            .heartbeat(vec![beat(&old, None)], clock.now_ms(), LEASE)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            s.release(vec![(id.clone(), old.fence)], clock.now_ms())
                .await
                .unwrap(),
            0
        );
        let r = obs.expect(s, Event::Succeed, &id, JobState::Running).await;
        assert_eq!(r.lease_owner.as_deref(), Some("w-new"));
        assert_eq!(r.result, None);

        // The current worker's completion lands.
        clock.advance(10);
        let applied = s
            .complete(
                vec![done(&new, succeeded(r#"{"new":true}"#))],
                clock.now_ms(),
            )
            .await
            .unwrap();
        assert_eq!(applied, vec![id.clone()]);
        let r = obs
            .expect(s, Event::Succeed, &id, JobState::Succeeded)
            .await;
        assert_eq!(r.result.as_deref(), Some(r#"{"new":true}"#));
        assert_eq!(errors_of(&r).len(), 1, "the rescued attempt left its error");
    }

    pub async fn rescue_requeues_expired_leases_and_fails_after_max_attempts(fx: &dyn Fixture) {
        let s = fx.store();
        let s = &*s;
        let clock = ManualClock::new(T0);
        let policy = RetryPolicy {
            base_ms: 1000,
            max_ms: 1000,
        };
        let mut obs = Observer::new();
        let alice = client("alice");
        let id = enqueue_new(s, &mut obs, &alice, clock.now_ms()).await;
        let mut rescued_at = Vec::new();

        for attempt in 1..=3u32 {
            let c = claim_one(s, &mut obs, "w", clock.now_ms()).await;
            assert_eq!(c.attempt, attempt);
            let lease_end = clock.now_ms() + LEASE;

            // Not expired while the lease runs, nor at its last instant.
            clock.set(lease_end);
            assert!(s
                .expired_leases(clock.now_ms(), 100)
                .await
                .unwrap()
                .is_empty());
            assert_eq!(
                mcpq::worker::rescue_once(s, policy, clock.now_ms())
                    .await
                    .unwrap(),
                0
            );
            obs.expect(s, Event::Rescue, &id, JobState::Running).await;

            // Expired: listed, then rescued.
            clock.advance(1);
            let expired = s.expired_leases(clock.now_ms(), 100).await.unwrap();
            assert_eq!(expired.len(), 1);
            assert_eq!(expired[0].id, id);
            assert_eq!(expired[0].fence, c.fence);
            assert_eq!(expired[0].attempt, attempt);
            assert_eq!(expired[0].max_attempts, 3);
            let n = mcpq::worker::rescue_once(s, policy, clock.now_ms())
                .await
                .unwrap();
            assert_eq!(n, 1);
            rescued_at.push(clock.now_ms());

            if attempt < 3 {
                let r = obs.expect(s, Event::Rescue, &id, JobState::Queued).await;
                assert_eq!(r.attempt, attempt, "a rescued attempt counts");
                // Back-off with jitter: between half and all of base_ms.
                let delay = r.run_at - clock.now_ms();
                assert!((500..=1000).contains(&delay), "retry delay {delay}");
                assert_eq!(errors_of(&r).len(), attempt as usize);
                // Rescued once only.
                assert_eq!(
                    mcpq::worker::rescue_once(s, policy, clock.now_ms())
                        .await
                        .unwrap(),
                    0
                );
                clock.advance(1000);
            } else {
                let r = obs.expect(s, Event::Fail, &id, JobState::Failed).await;
                assert_eq!(r.attempt, 3);
                assert_eq!(r.finished_at, Some(clock.now_ms()));
                let errors = errors_of(&r);
                assert_eq!(errors.len(), 3, "every attempt's error is kept: {errors:?}");
                for (i, (attempt, at, error)) in errors.iter().enumerate() {
                    assert_eq!(*attempt, i as u64 + 1);
                    assert_eq!(*at, rescued_at[i]);
                    assert!(error.starts_with("lease_expired"), "{error}");
                }
            }
        }
        assert!(s
            .expired_leases(clock.now_ms() + LEASE, 100)
            .await
            .unwrap()
            .is_empty());
        assert!(s
            .claim("w", 10, clock.now_ms() + 100_000, LEASE, &any())
            .await
            .unwrap()
            .is_empty());
    }

    pub async fn rescue_skips_leases_extended_by_a_heartbeat(fx: &dyn Fixture) {
        let s = fx.store();
        let s = &*s;
        let clock = ManualClock::new(T0);
        let policy = RetryPolicy {
            base_ms: 1000,
            max_ms: 1000,
        };
        let mut obs = Observer::new();
        let alice = client("alice");
        let a = enqueue_new(s, &mut obs, &alice, T0).await;
        let ca = claim_one(s, &mut obs, "w", clock.now_ms()).await;

        // The worker was slow: its lease ran out, but it heartbeats before the rescuer runs.
        clock.advance(LEASE + 5);
        let acks = s
            .heartbeat(vec![beat(&ca, None)], clock.now_ms(), LEASE)
            .await
            .unwrap();
        assert_eq!(acks.len(), 1);
        assert_eq!(
            mcpq::worker::rescue_once(s, policy, clock.now_ms())
                .await
                .unwrap(),
            0
        );
        let r = obs.expect(s, Event::Rescue, &a, JobState::Running).await;
        assert_eq!(r.attempt, 1);
        assert_eq!(errors_of(&r).len(), 0);

        // The race: the rescuer lists the expired lease, then the heartbeat lands, then the
        // rescuer applies its decision. The decision must not apply.
        clock.advance(LEASE + 5);
        let expired = s.expired_leases(clock.now_ms(), 100).await.unwrap();
        assert_eq!(expired.len(), 1);
        let acks = s
            .heartbeat(vec![beat(&ca, None)], clock.now_ms(), LEASE)
            .await
            .unwrap();
        assert_eq!(acks.len(), 1);
        let decisions = expired
            .iter()
            .map(|e| Completion {
                id: e.id.clone(),
                fence: e.fence,
                hooked: true,
                outcome: Outcome::Retry {
                    run_at: clock.now_ms() + 1000,
                    error: "lease_expired".into(),
                },
            })
            .collect();
        let applied = s.rescue(decisions, clock.now_ms()).await.unwrap();
        assert!(applied.is_empty(), "rescued a live lease: {applied:?}");
        let r = obs.expect(s, Event::Rescue, &a, JobState::Running).await;
        assert_eq!(r.lease_expires_at, Some(clock.now_ms() + LEASE));
        assert_eq!(errors_of(&r).len(), 0);

        // Rescue with a stale fence (the job was rescued and re-claimed meanwhile) does nothing.
        clock.advance(LEASE + 5);
        let expired = s.expired_leases(clock.now_ms(), 100).await.unwrap();
        assert_eq!(expired.len(), 1);
        assert_eq!(
            mcpq::worker::rescue_once(s, policy, clock.now_ms())
                .await
                .unwrap(),
            1
        );
        obs.expect(s, Event::Rescue, &a, JobState::Queued).await;
        clock.advance(1000);
        let c2 = claim_one(s, &mut obs, "w2", clock.now_ms()).await;
        clock.advance(LEASE + 5);
        let stale: Vec<Completion> = expired
            .iter()
            .map(|e| Completion {
                id: e.id.clone(),
                fence: e.fence,
                hooked: true,
                outcome: Outcome::Failed {
                    error: "stale decision".into(),
                },
            })
            .collect();
        assert!(s.rescue(stale, clock.now_ms()).await.unwrap().is_empty());
        let r = obs.expect(s, Event::Fail, &a, JobState::Running).await;
        assert_eq!(r.fence, c2.fence);

        // `rescue` never touches a job whose lease has not expired, whatever it is told.
        let b = enqueue_new(s, &mut obs, &alice, clock.now_ms()).await;
        let cb = claim_one(s, &mut obs, "w", clock.now_ms()).await;
        let live = vec![done(&cb, Outcome::Failed { error: "no".into() })];
        assert!(s.rescue(live, clock.now_ms() + 1).await.unwrap().is_empty());
        obs.expect(s, Event::Fail, &b, JobState::Running).await;
    }

    pub async fn an_attempts_kept_state_reaches_the_attempt_after_a_lost_worker(fx: &dyn Fixture) {
        let s = fx.store();
        let s = &*s;
        let policy = RetryPolicy {
            base_ms: 0,
            max_ms: 0,
        };
        let mut obs = Observer::new();
        let alice = client("alice");
        let id = enqueue_new(s, &mut obs, &alice, T0).await;
        let c = claim_one(s, &mut obs, "w", T0 + 10).await;
        assert_eq!(c.request_state, None);
        let kept = r#"{"io.mcpq/upstream_task":{"upstream":"u","task":"t-1"}}"#;

        // Only the attempt holding the job keeps anything.
        assert!(!s
            .save_attempt_state(&id, c.fence + 1, Some(kept))
            .await
            .unwrap());
        assert!(!s
            .save_attempt_state(&JobId::generate(), c.fence, Some(kept))
            .await
            .unwrap());
        assert!(s
            .save_attempt_state(&id, c.fence, Some(kept))
            .await
            .unwrap());
        let r = obs.expect(s, Event::Claim, &id, JobState::Running).await;
        assert_eq!(r.attempt, 1, "keeping state is not a transition");

        // The worker is lost: the rescued job's next attempt gets the state.
        let now = T0 + 11 + LEASE;
        assert_eq!(mcpq::worker::rescue_once(s, policy, now).await.unwrap(), 1);
        obs.expect(s, Event::Rescue, &id, JobState::Queued).await;
        let c2 = claim_one(s, &mut obs, "w2", now + 1).await;
        assert_eq!(c2.attempt, 2);
        assert_eq!(c2.request_state.as_deref(), Some(kept));

        // The old attempt's fence keeps nothing now; the new one can forget it.
        assert!(!s.save_attempt_state(&id, c.fence, None).await.unwrap());
        assert!(s.save_attempt_state(&id, c2.fence, None).await.unwrap());
        s.complete(vec![done(&c2, succeeded("{}"))], now + 2)
            .await
            .unwrap();
        obs.expect(s, Event::Succeed, &id, JobState::Succeeded)
            .await;
        assert!(!s
            .save_attempt_state(&id, c2.fence, Some(kept))
            .await
            .unwrap());
    }

    pub async fn release_requeues_without_counting_the_attempt(fx: &dyn Fixture) {
        let s = fx.store();
        let s = &*s;
        let mut obs = Observer::new();
        let alice = client("alice");
        let id = enqueue_new(s, &mut obs, &alice, T0).await;
        let c = claim_one(s, &mut obs, "w", T0 + 10).await;
        assert_eq!(c.attempt, 1);
        s.heartbeat(vec![beat(&c, Some(r#"{"p":1}"#))], T0 + 15, LEASE)
            .await
            .unwrap();

        // A wrong fence releases nothing.
        assert_eq!(
            s.release(vec![(id.clone(), c.fence + 1)], T0 + 20)
                .await
                .unwrap(),
            0
        );
        obs.expect(s, Event::Release, &id, JobState::Running).await;

        // The right fence: queued again, due now, attempt not counted, lease cleared.
        let unknown = (JobId::generate(), 1);
        assert_eq!(
            s.release(vec![(id.clone(), c.fence), unknown], T0 + 20)
                .await
                .unwrap(),
            1
        );
        let r = obs.expect(s, Event::Release, &id, JobState::Queued).await;
        assert_eq!(r.attempt, 0, "a released attempt does not count");
        assert_eq!(r.run_at, T0 + 20);
        assert_eq!(errors_of(&r).len(), 0);
        assert_eq!(r.finished_at, None);

        // Releasing again does nothing; nor do the old lease's heartbeats or completions.
        assert_eq!(
            s.release(vec![(id.clone(), c.fence)], T0 + 21)
                .await
                .unwrap(),
            0
        );
        assert!(s
            .heartbeat(vec![beat(&c, None)], T0 + 21, LEASE)
            .await
            .unwrap()
            .is_empty());
        assert!(s
            .complete(vec![done(&c, succeeded("{}"))], T0 + 21)
            .await
            .unwrap()
            .is_empty());
        obs.expect(s, Event::Succeed, &id, JobState::Queued).await;

        // Claimed again: the same attempt number, a new fence.
        let c2 = claim_one(s, &mut obs, "w2", T0 + 30).await;
        assert_eq!(c2.id, id);
        assert_eq!(c2.attempt, 1);
        assert!(c2.fence > c.fence);
        assert_eq!(
            s.release(vec![(id.clone(), c.fence)], T0 + 31)
                .await
                .unwrap(),
            0
        );
        obs.expect(s, Event::Release, &id, JobState::Running).await;
    }

    pub async fn cancel_request_survives_a_requeue(fx: &dyn Fixture) {
        // A client was told its running job is "cancelling" (CancelOutcome::Requested).
        // If that attempt goes back to the queue before a heartbeat carries the request
        // to the worker (the attempt failed and is retried, the worker crashed and the
        // lease is rescued, or the worker shut down and released it), the request must
        // not be forgotten: the next attempt's first heartbeat still reports it.
        let s = fx.store();
        let s = &*s;
        let clock = ManualClock::new(T0);
        let policy = RetryPolicy {
            base_ms: 1000,
            max_ms: 1000,
        };
        let mut obs = Observer::new();
        let alice = client("alice");
        let retried = enqueue_new(s, &mut obs, &alice, T0).await;
        let rescued = enqueue_new(s, &mut obs, &alice, T0).await;
        let released = enqueue_new(s, &mut obs, &alice, T0).await;
        let claimed = s
            .claim("w", 10, clock.now_ms(), LEASE, &any())
            .await
            .unwrap();
        assert_eq!(claimed.len(), 3);
        let by_id: HashMap<JobId, ClaimedJob> =
            claimed.into_iter().map(|c| (c.id.clone(), c)).collect();
        for id in [&retried, &rescued, &released] {
            obs.expect(s, Event::Claim, id, JobState::Running).await;
            assert_eq!(
                s.cancel(&alice, id, clock.now_ms() + 1).await.unwrap(),
                CancelOutcome::Requested
            );
        }

        clock.advance(10);
        let applied = s
            .complete(
                vec![done(
                    &by_id[&retried],
                    Outcome::Retry {
                        run_at: clock.now_ms(),
                        error: "flaky".into(),
                    },
                )],
                clock.now_ms(),
            )
            .await
            .unwrap();
        assert_eq!(applied.len(), 1);
        obs.expect(s, Event::Retry, &retried, JobState::Queued)
            .await;
        assert_eq!(
            s.release(
                vec![(released.clone(), by_id[&released].fence)],
                clock.now_ms()
            )
            .await
            .unwrap(),
            1
        );
        obs.expect(s, Event::Release, &released, JobState::Queued)
            .await;
        clock.advance(LEASE);
        assert_eq!(
            mcpq::worker::rescue_once(s, policy, clock.now_ms())
                .await
                .unwrap(),
            1
        );
        obs.expect(s, Event::Rescue, &rescued, JobState::Queued)
            .await;

        clock.advance(1000);
        let again = s
            .claim("w2", 10, clock.now_ms(), LEASE, &any())
            .await
            .unwrap();
        assert_eq!(again.len(), 3);
        obs.after_all(s, Event::Claim, &ids(&again)).await;
        let acks = s
            .heartbeat(
                again.iter().map(|c| beat(c, None)).collect(),
                clock.now_ms(),
                LEASE,
            )
            .await
            .unwrap();
        assert_eq!(acks.len(), 3);
        let lost: Vec<&str> = acks
            .iter()
            .filter(|a| !a.cancel_requested)
            .map(|a| {
                if a.id == retried {
                    "retried"
                } else if a.id == rescued {
                    "rescued"
                } else {
                    "released"
                }
            })
            .collect();
        assert!(
            lost.is_empty(),
            "cancel requests lost when the job was requeued: {lost:?}"
        );
    }

    pub async fn prune_deletes_only_jobs_finished_before_the_cutoff(fx: &dyn Fixture) {
        let s = fx.store();
        let s = &*s;
        let mut obs = Observer::new();
        let alice = client("alice");
        let cutoff = T0 + 1_000;

        // Finished before the cutoff: succeeded, failed, cancelled while queued.
        let old_ok = enqueue_new(s, &mut obs, &alice, T0).await;
        let c = claim_one(s, &mut obs, "w", T0).await;
        s.complete(vec![done(&c, succeeded("{}"))], T0 + 10)
            .await
            .unwrap();
        let old_failed = enqueue_new(s, &mut obs, &alice, T0 + 20).await;
        let c = claim_one(s, &mut obs, "w", T0 + 20).await;
        s.complete(
            vec![done(&c, Outcome::Failed { error: "x".into() })],
            T0 + 30,
        )
        .await
        .unwrap();
        let old_cancelled = enqueue_new(s, &mut obs, &alice, T0 + 40).await;
        assert_eq!(
            s.cancel(&alice, &old_cancelled, T0 + 50).await.unwrap(),
            CancelOutcome::Cancelled
        );
        // Old but unfinished: a retried job waiting in the queue (it had an error before the
        // cutoff), and a running job whose attempt started long ago.
        let retrying = enqueue_new(s, &mut obs, &alice, T0 + 60).await;
        let c = claim_one(s, &mut obs, "w", T0 + 60).await;
        s.complete(
            vec![done(
                &c,
                Outcome::Retry {
                    run_at: T0 + 1_000_000,
                    error: "later".into(),
                },
            )],
            T0 + 70,
        )
        .await
        .unwrap();
        let running = enqueue_new(s, &mut obs, &alice, T0 + 80).await;
        let c_running = claim_one(s, &mut obs, "w", T0 + 80).await;
        // Finished after the cutoff (it ran long).
        let recent = enqueue_new(s, &mut obs, &alice, T0 + 85).await;
        let c = claim_one(s, &mut obs, "w", T0 + 85).await;
        s.complete(vec![done(&c, succeeded("{}"))], T0 + 2_010)
            .await
            .unwrap();
        obs.expect(s, Event::Succeed, &recent, JobState::Succeeded)
            .await;
        let queued = enqueue_new(s, &mut obs, &alice, T0 + 90).await;
        // Finished exactly at the cutoff: not before it.
        let at_cutoff = enqueue_new(s, &mut obs, &alice, T0 + 95).await;
        assert_eq!(
            s.cancel(&alice, &at_cutoff, cutoff).await.unwrap(),
            CancelOutcome::Cancelled
        );

        let pruned = s.prune(cutoff, T0 + 3_000).await.unwrap();
        assert_eq!(
            pruned, 3,
            "exactly the three jobs finished before the cutoff"
        );
        for id in [&old_ok, &old_failed, &old_cancelled] {
            assert!(s.get_job(&alice, id).await.unwrap().is_none(), "{id} kept");
        }
        for (id, st) in [
            (&retrying, JobState::Queued),
            (&running, JobState::Running),
            (&queued, JobState::Queued),
            (&at_cutoff, JobState::Cancelled),
            (&recent, JobState::Succeeded),
        ] {
            let r = s
                .get_job(&alice, id)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{id} ({st:?}) was pruned"));
            assert_eq!(r.state, st);
        }
        // Pruning again finds nothing; the survivors still work.
        assert_eq!(s.prune(cutoff, T0 + 3_000).await.unwrap(), 0);
        let applied = s
            .complete(vec![done(&c_running, succeeded("{}"))], T0 + 3_001)
            .await
            .unwrap();
        assert_eq!(applied, vec![running.clone()]);
        obs.expect(s, Event::Succeed, &running, JobState::Succeeded)
            .await;
        let c = s.claim("w", 10, T0 + 3_002, LEASE, &any()).await.unwrap();
        assert_eq!(ids(&c), vec![queued.clone()]);

        // A pruned job's idempotency key is free again.
        let keyed = new_job(&alice, T0 + 4_000, Some("reuse"));
        let keyed_id = keyed.id.clone();
        s.enqueue(keyed).await.unwrap();
        assert_eq!(
            s.cancel(&alice, &keyed_id, T0 + 4_001).await.unwrap(),
            CancelOutcome::Cancelled
        );
        // at_cutoff, recent, running (finished at T0+3001) and this one.
        assert_eq!(s.prune(T0 + 5_000, T0 + 5_000).await.unwrap(), 4);
        let fresh = new_job(&alice, T0 + 6_000, Some("reuse"));
        let fresh_id = fresh.id.clone();
        assert_eq!(s.enqueue(fresh).await.unwrap(), Enqueued::Created(fresh_id));
    }

    /// A store shared by several daemons decides each nonce once for all of them: admitted
    /// through one handle, refused through another, for sync calls and job calls alike,
    /// and exactly one of several racing admissions wins. An expired copy may be reused.
    pub async fn shared_store_admits_each_nonce_once_across_handles(fx: &dyn Fixture) {
        let a = fx.store();
        if !a.shares_nonces() {
            // One daemon per store: its in-memory set decides; the store only records.
            let n = nonce_at(&client("alice"), T0 + NONCE_TTL);
            assert!(a.admit_nonce(n, T0).await.unwrap());
            return;
        }
        let b = fx.open_another().await;
        let alice = client("alice");
        let n = nonce_at(&alice, T0 + NONCE_TTL);
        assert!(a.admit_nonce(n, T0).await.unwrap(), "first admission");
        assert!(
            !b.admit_nonce(n, T0 + 1).await.unwrap(),
            "replay via another daemon"
        );
        assert!(
            !a.admit_nonce(n, T0 + 2).await.unwrap(),
            "replay via the same daemon"
        );

        // A job call whose nonce a sync call already used is refused and creates nothing.
        let mut job = new_job(&alice, T0 + 3, None);
        job.nonce = Some(n);
        let id = job.id.clone();
        assert!(matches!(
            b.enqueue(job).await,
            Err(mcpq::store::StoreError::Replayed)
        ));
        assert!(a.get_job(&alice, &id).await.unwrap().is_none());

        // And a sync call cannot reuse a job call's nonce.
        let job = new_job(&alice, T0 + 4, None);
        let jn = job.nonce.unwrap();
        let jid = job.id.clone();
        assert_eq!(a.enqueue(job).await.unwrap(), Enqueued::Created(jid));
        assert!(!b.admit_nonce(jn, T0 + 5).await.unwrap());

        // Racing admissions of one nonce (sync and job calls, two handles): one wins.
        for round in 0..5 {
            let n = nonce_at(&alice, T0 + NONCE_TTL + round);
            let mut set = tokio::task::JoinSet::new();
            for i in 0..8 {
                let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                set.spawn(async move {
                    if i % 3 == 0 {
                        let mut job = new_job(&client("alice"), T0 + 10, None);
                        job.nonce = Some(n);
                        match s.enqueue(job).await {
                            Ok(_) => true,
                            Err(mcpq::store::StoreError::Replayed) => false,
                            Err(e) => panic!("{e}"),
                        }
                    } else {
                        s.admit_nonce(n, T0 + 10).await.unwrap()
                    }
                });
            }
            let mut wins = 0;
            while let Some(r) = set.join_next().await {
                wins += r.unwrap() as usize;
            }
            assert_eq!(wins, 1, "round {round}: exactly one admission wins");
        }

        // Once expired, the nonce may be used again (its old envelope can no longer pass
        // the timestamp window); while live, never.
        let short = nonce_at(&alice, T0 + 100);
        assert!(a.admit_nonce(short, T0).await.unwrap());
        assert!(
            !b.admit_nonce(short, T0 + 100).await.unwrap(),
            "live at its expiry"
        );
        let again = NonceRecord {
            key: short.key,
            expires_ms: T0 + 101 + NONCE_TTL,
        };
        assert!(
            b.admit_nonce(again, T0 + 101).await.unwrap(),
            "expired copy reused"
        );
        assert!(!a.admit_nonce(again, T0 + 102).await.unwrap());
    }

    /// docs/TRACING.md: a traced call's context is committed with its job (in a batch with
    /// untraced and keyed jobs alike) and read back with the job's lease; an idempotent
    /// repeat keeps the first call's context.
    pub async fn trace_contexts_commit_with_their_jobs(fx: &dyn Fixture) {
        let s = fx.store();
        let alice = client("alice");
        let ctx = |n: u8| format!("00-4bf92f3577b34da6a3ce929d0e0e47{n:02x}-00f067aa0ba902b7-01");
        let traced = NewJob {
            trace: Some(format!("{}\nvendor=1", ctx(1))),
            ..new_job(&alice, T0, None)
        };
        let plain = new_job(&alice, T0, None);
        let keyed = NewJob {
            trace: Some(ctx(2)),
            ..new_job(&alice, T0, Some("k"))
        };
        let again = NewJob {
            trace: Some(ctx(3)),
            ..new_job(&alice, T0 + 1, Some("k"))
        };
        let ids = [traced.id.clone(), plain.id.clone(), keyed.id.clone()];
        let (a, b, c) = tokio::join!(s.enqueue(traced), s.enqueue(plain), s.enqueue(keyed));
        for r in [a, b, c] {
            assert!(matches!(r.unwrap(), Enqueued::Created(_)));
        }
        assert_eq!(
            s.enqueue(again).await.unwrap(),
            Enqueued::Existing(ids[2].clone())
        );
        let mut found = s.traced_jobs(&ids).await.unwrap();
        found.sort_by(|x, y| x.context.cmp(&y.context));
        let got: Vec<_> = found
            .iter()
            .map(|t| {
                (
                    t.id.clone(),
                    t.tool.as_str(),
                    t.context.clone(),
                    t.lease_expires_at,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    ids[0].clone(),
                    "start_long_task",
                    format!("{}\nvendor=1", ctx(1)),
                    None
                ),
                (ids[2].clone(), "start_long_task", ctx(2), None),
            ]
        );
        let claimed = s.claim("w", 10, T0 + 2, LEASE, &any()).await.unwrap();
        assert_eq!(claimed.len(), 3);
        let found = s.traced_jobs(&ids).await.unwrap();
        assert_eq!(found.len(), 2);
        assert!(found
            .iter()
            .all(|t| t.lease_expires_at == Some(T0 + 2 + LEASE)));
        assert!(s.traced_jobs(&[]).await.unwrap().is_empty());
    }

    pub async fn nonces_are_live_until_they_expire_and_then_pruned(fx: &dyn Fixture) {
        let s = fx.store();
        let s = &*s;
        let alice = client("alice");
        let minute = 60_000;
        let soon = nonce_at(&alice, T0 + 10);
        let later = nonce_at(&alice, T0 + 5 * minute);
        let much_later = nonce_at(&alice, T0 + 60 * minute);
        for n in [soon, later, much_later] {
            s.record_nonce(n).await.unwrap();
        }
        // Recording twice is harmless.
        s.record_nonce(later).await.unwrap();
        s.flush().await.unwrap();

        let set = |v: Vec<NonceRecord>| {
            v.into_iter()
                .map(|n| (n.key, n.expires_ms))
                .collect::<HashSet<_>>()
        };
        let live = set(s.live_nonces(T0).await.unwrap());
        assert_eq!(live, set(vec![soon, later, much_later]));
        // Live up to and including its expiry instant, then gone.
        assert!(
            s.live_nonces(T0 + 10).await.unwrap().contains(&soon),
            "live at expiry"
        );
        let live = set(s.live_nonces(T0 + 11).await.unwrap());
        assert_eq!(live, set(vec![later, much_later]));
        let live = set(s.live_nonces(T0 + 5 * minute + 1).await.unwrap());
        assert_eq!(live, set(vec![much_later]));

        // Pruning keeps every live nonce. An implementation may store nonces in groups
        // (SQLite keeps one row per group commit) and drop a group only once all of it
        // expired, so expired nonces may linger physically; they are never reported live.
        let now = T0 + 7 * minute;
        s.prune(T0, now).await.unwrap();
        assert_eq!(
            set(s.live_nonces(now).await.unwrap()),
            set(vec![much_later])
        );

        // Nonces written with an enqueue are pruned the same way.
        let job = new_job(&alice, now, None);
        let jn = job.nonce.unwrap();
        s.enqueue(job).await.unwrap();
        assert!(s.live_nonces(now).await.unwrap().contains(&jn));
        // Once everything expired, pruning leaves nothing behind.
        let far = much_later.expires_ms.max(jn.expires_ms) + 2 * minute;
        s.prune(T0, far).await.unwrap();
        assert!(
            s.live_nonces(T0).await.unwrap().is_empty(),
            "expired nonces were pruned"
        );
    }
    // -----------------------------------------------------------------------------------------
    // Tool definitions, concurrency limits, crash policies (config tools).
    // -----------------------------------------------------------------------------------------

    pub async fn claim_takes_only_jobs_whose_definition_the_worker_has(fx: &dyn Fixture) {
        let s = fx.store();
        let s = &*s;
        let mut obs = Observer::new();
        let alice = client("alice");
        let old = job_of(&alice, T0, "t", "old", CrashPolicy::Retry);
        let new = job_of(&alice, T0 + 1, "t", "new", CrashPolicy::Retry);
        let (old_id, new_id) = (old.id.clone(), new.id.clone());
        for j in [old, new] {
            s.enqueue(j).await.unwrap();
        }
        obs.created(s, &alice, &old_id).await;
        obs.created(s, &alice, &new_id).await;
        let only_new = ClaimFilter {
            defs: vec!["t:new".into()],
            capped: Vec::new(),
        };
        let c = s
            .claim("w-new", 10, T0 + 10, LEASE, &only_new)
            .await
            .unwrap();
        assert_eq!(ids(&c), vec![new_id.clone()], "only the known definition");
        assert_eq!(c[0].client_id, alice);
        obs.expect(s, Event::Claim, &new_id, JobState::Running)
            .await;
        obs.expect(s, Event::Claim, &old_id, JobState::Queued).await;
        // The worker can say which jobs it leaves to others.
        let unknown = s
            .unknown_definitions(&["t:new".to_string()], T0 + 10, 10)
            .await
            .unwrap();
        assert_eq!(unknown, vec![("t".to_string(), "old".to_string())]);
        // Not yet due: not reported.
        assert!(s
            .unknown_definitions(&["t:new".to_string()], T0 - 1, 10)
            .await
            .unwrap()
            .is_empty());
        // A worker with no definitions claims nothing; one with the old one gets it.
        assert!(s
            .claim("w-none", 10, T0 + 10, LEASE, &ClaimFilter::default())
            .await
            .unwrap()
            .is_empty());
        let only_old = ClaimFilter {
            defs: vec!["t:old".into()],
            capped: Vec::new(),
        };
        let c = s
            .claim("w-old", 10, T0 + 10, LEASE, &only_old)
            .await
            .unwrap();
        assert_eq!(ids(&c), vec![old_id.clone()]);
        obs.expect(s, Event::Claim, &old_id, JobState::Running)
            .await;
    }

    pub async fn capped_tool_never_runs_more_than_its_limit_across_claimers(fx: &dyn Fixture) {
        let s = fx.store();
        let other = fx.open_another().await;
        let alice = client("alice");
        for i in 0..20 {
            s.enqueue(job_of(&alice, T0 + i, "capped", "1", CrashPolicy::Retry))
                .await
                .unwrap();
            s.enqueue(job_of(&alice, T0 + i, "free", "1", CrashPolicy::Retry))
                .await
                .unwrap();
        }
        let filter = ClaimFilter {
            defs: vec!["free:1".into()],
            capped: vec![CappedTool {
                tool: "capped".into(),
                limit: 3,
                defs: vec!["1".into()],
                per_key: None,
                rate: None,
            }],
        };
        let now = T0 + 100;
        let count = |c: &[ClaimedJob], tool: &str| c.iter().filter(|j| j.tool == tool).count();
        // Several claimers at once, on two handles (two processes): never more than 3 capped.
        let (a, b, c, d) = tokio::join!(
            s.claim("w1", 4, now, LEASE, &filter),
            other.claim("w2", 4, now, LEASE, &filter),
            s.claim("w3", 4, now, LEASE, &filter),
            other.claim("w4", 30, now, LEASE, &filter),
        );
        let all: Vec<ClaimedJob> = [a, b, c, d].into_iter().flat_map(|r| r.unwrap()).collect();
        assert_eq!(count(&all, "capped"), 3, "the limit holds across claimers");
        assert_eq!(count(&all, "free"), 20, "uncapped tools are not held back");
        assert!(s
            .claim("w5", 10, now, LEASE, &filter)
            .await
            .unwrap()
            .is_empty());
        // One finishes: exactly one more may start.
        let first = all.iter().find(|j| j.tool == "capped").unwrap();
        s.complete(vec![done(first, succeeded("{}"))], now)
            .await
            .unwrap();
        let more = other.claim("w6", 10, now, LEASE, &filter).await.unwrap();
        assert_eq!(count(&more, "capped"), 1);
        assert_eq!(more.len(), 1);
        // Capped jobs come oldest first.
        let mut capped: Vec<&ClaimedJob> = all.iter().filter(|j| j.tool == "capped").collect();
        capped.push(&more[0]);
        let records = futures_records(s.as_ref(), &alice, &capped).await;
        let mut created: Vec<i64> = records.iter().map(|r| r.created_at).collect();
        created.sort();
        assert_eq!(created, vec![T0, T0 + 1, T0 + 2, T0 + 3]);
    }

    async fn futures_records(s: &dyn Store, c: &ClientId, jobs: &[&ClaimedJob]) -> Vec<JobRecord> {
        let mut out = Vec::new();
        for j in jobs {
            out.push(s.get_job(c, &j.id).await.unwrap().unwrap());
        }
        out
    }

    pub async fn rescue_applies_each_jobs_crash_policy(fx: &dyn Fixture) {
        let s = fx.store();
        let s = &*s;
        let mut obs = Observer::new();
        let alice = client("alice");
        let policy = RetryPolicy {
            base_ms: 1000,
            max_ms: 1000,
        };
        let mut ids_by = Vec::new();
        for (i, p) in [CrashPolicy::Retry, CrashPolicy::Fail, CrashPolicy::Hold]
            .into_iter()
            .enumerate()
        {
            let j = job_of(&alice, T0 + i as i64, "t", "1", p);
            ids_by.push((p, j.id.clone()));
            s.enqueue(j).await.unwrap();
            obs.created(s, &alice, &ids_by[i].1).await;
        }
        let filter = ClaimFilter {
            defs: vec!["t:1".into()],
            capped: Vec::new(),
        };
        let c = s.claim("w", 10, T0 + 10, LEASE, &filter).await.unwrap();
        assert_eq!(c.len(), 3);
        obs.after_all(s, Event::Claim, &ids(&c)).await;
        let expired = s.expired_leases(T0 + 11 + LEASE, 10).await.unwrap();
        let mut seen: Vec<CrashPolicy> = expired.iter().map(|e| e.on_crash).collect();
        seen.sort_by_key(|p| p.as_str());
        assert_eq!(
            seen,
            [CrashPolicy::Fail, CrashPolicy::Hold, CrashPolicy::Retry]
        );
        let now = T0 + 11 + LEASE;
        assert_eq!(mcpq::worker::rescue_once(s, policy, now).await.unwrap(), 3);
        for (p, id) in &ids_by {
            let r = match p {
                CrashPolicy::Retry | CrashPolicy::Resume => {
                    obs.expect(s, Event::Rescue, id, JobState::Queued).await
                }
                CrashPolicy::Fail => obs.expect(s, Event::Fail, id, JobState::Failed).await,
                CrashPolicy::Hold => obs.expect(s, Event::Hold, id, JobState::InDoubt).await,
            };
            let errors = errors_of(&r);
            assert_eq!(errors.len(), 1, "{p:?}");
            match p {
                CrashPolicy::Retry | CrashPolicy::Resume => {
                    assert!(errors[0].2.starts_with("lease_expired"))
                }
                _ => assert!(errors[0].2.starts_with("worker_lost"), "{p:?}: {errors:?}"),
            }
        }
        // An in-doubt job is never claimed, rescued or pruned.
        assert!(s
            .claim("w", 10, now + 10 * LEASE, LEASE, &filter)
            .await
            .unwrap()
            .iter()
            .all(|j| j.id != ids_by[2].1));
        s.prune(now + 100 * LEASE, now + 100 * LEASE).await.unwrap();
        obs.expect(s, Event::Rescue, &ids_by[2].1, JobState::InDoubt)
            .await;
    }

    pub async fn in_doubt_jobs_are_resolved_only_by_an_operator(fx: &dyn Fixture) {
        let s = fx.store();
        let s = &*s;
        let mut obs = Observer::new();
        let alice = client("alice");
        let filter = ClaimFilter {
            defs: vec!["pay:1".into()],
            capped: Vec::new(),
        };
        let mut held = Vec::new();
        for i in 0..2 {
            let mut j = job_of(&alice, T0 + i, "pay", "1", CrashPolicy::Hold);
            j.max_attempts = 1;
            held.push(j.id.clone());
            s.enqueue(j).await.unwrap();
            obs.created(s, &alice, &held[i as usize]).await;
        }
        let c = s.claim("w", 10, T0 + 10, LEASE, &filter).await.unwrap();
        obs.after_all(s, Event::Claim, &ids(&c)).await;
        let outcome = |c: &ClaimedJob| Completion {
            id: c.id.clone(),
            fence: c.fence,
            hooked: c.hooked,
            outcome: Outcome::InDoubt {
                error: "worker_lost: test".into(),
            },
        };
        s.complete(c.iter().map(outcome).collect(), T0 + 20)
            .await
            .unwrap();
        obs.expect(s, Event::Hold, &held[0], JobState::InDoubt)
            .await;
        obs.expect(s, Event::Hold, &held[1], JobState::InDoubt)
            .await;

        // A client cannot cancel it; it reads as in doubt.
        assert_eq!(
            s.cancel(&alice, &held[0], T0 + 30).await.unwrap(),
            CancelOutcome::AlreadyFinished(JobState::InDoubt)
        );
        // Retry: queued again, due at once, with one more attempt allowed.
        assert!(s
            .resolve_in_doubt(&held[0], Resolution::Retry, T0 + 40, "ops@host")
            .await
            .unwrap());
        let r = obs
            .expect(s, Event::OperatorRetry, &held[0], JobState::Queued)
            .await;
        assert_eq!((r.attempt, r.max_attempts, r.run_at), (1, 2, T0 + 40));
        let errors = errors_of(&r);
        assert_eq!(errors.len(), 2);
        assert!(errors[1].2.contains("retried by ops@host"), "{errors:?}");
        let again = s.claim("w2", 10, T0 + 40, LEASE, &filter).await.unwrap();
        assert_eq!(ids(&again), vec![held[0].clone()]);
        assert_eq!(again[0].attempt, 2);
        // Fail: failed for good, with who in the history.
        assert!(s
            .resolve_in_doubt(&held[1], Resolution::Fail, T0 + 50, "ops@host")
            .await
            .unwrap());
        let r = obs
            .expect(s, Event::OperatorFail, &held[1], JobState::Failed)
            .await;
        assert!(errors_of(&r)[1].2.contains("failed by ops@host"));
        // Only in-doubt jobs: a second decision, or one on a running job, does nothing.
        for id in &held {
            for res in [Resolution::Retry, Resolution::Fail] {
                assert!(!s.resolve_in_doubt(id, res, T0 + 60, "x").await.unwrap());
            }
        }
        assert!(!s
            .resolve_in_doubt(&JobId::generate(), Resolution::Fail, T0 + 60, "x")
            .await
            .unwrap());
    }
}

pub mod input_cases {
    use super::*;
    use serde_json::{json, Map, Value};

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn ask(requests: Value, state: Option<&str>) -> Outcome {
        Outcome::AwaitInput {
            requests: requests.to_string(),
            state: state.map(str::to_string),
        }
    }

    fn parsed(s: &Option<String>) -> Value {
        serde_json::from_str(s.as_deref().unwrap()).unwrap()
    }

    /// An attempt that asks parks the job (the attempt does not count); answers fill the
    /// requests one by one; the last one queues the job, whose next attempt gets every
    /// answer and the tool's state.
    pub async fn a_job_that_asks_for_input_waits_until_every_request_is_answered(fx: &dyn Fixture) {
        let s = fx.store();
        let s = &*s;
        let mut obs = Observer::new();
        let alice = client("alice");
        let id = enqueue_new(s, &mut obs, &alice, T0).await;
        let c = claim_one(s, &mut obs, "w", T0).await;
        let requests = json!({
            "name": {"method": "elicitation/create", "params": {"message": "Name? ünï \"q\""}},
            "roots": {"method": "roots/list", "params": {}},
        });
        let applied = s
            .complete(vec![done(&c, ask(requests.clone(), Some("s1")))], T0 + 5)
            .await
            .unwrap();
        assert_eq!(applied, vec![id.clone()]);
        let r = obs
            .expect(s, Event::AskInput, &id, JobState::AwaitingInput)
            .await;
        assert_eq!(r.attempt, 0, "asking is not a failed attempt");
        assert_eq!(parsed(&r.input_requests), requests);
        assert_eq!(r.request_state.as_deref(), Some("s1"));
        assert!(errors_of(&r).is_empty());
        // Waiting: nobody claims it, and a second completion of that attempt is fenced off.
        assert!(!s.has_due_jobs(T0 + 10).await.unwrap());
        assert!(s
            .claim("w", 10, T0 + 10, LEASE, &any())
            .await
            .unwrap()
            .is_empty());
        assert!(s
            .complete(vec![done(&c, succeeded("{}"))], T0 + 11)
            .await
            .unwrap()
            .is_empty());

        // Another client's answers find nothing.
        let one =
            obj(json!({"name": {"action": "accept", "content": {"name": "Ada"}}, "extra": {}}));
        assert_eq!(
            s.answer_input(&client("mallory"), &id, &one, T0 + 12)
                .await
                .unwrap(),
            AnswerOutcome::NotFound
        );
        assert_eq!(
            s.answer_input(&alice, &id, &one, T0 + 13).await.unwrap(),
            AnswerOutcome::Waiting(1)
        );
        let r = obs
            .expect(s, Event::Answer, &id, JobState::AwaitingInput)
            .await;
        assert_eq!(
            parsed(&r.input_requests),
            json!({"roots": {"method": "roots/list", "params": {}}})
        );
        // Answering it again changes nothing.
        assert_eq!(
            s.answer_input(&alice, &id, &one, T0 + 14).await.unwrap(),
            AnswerOutcome::Waiting(1)
        );
        let roots = obj(json!({"roots": {"roots": [{"uri": "file:///w"}]}}));
        assert_eq!(
            s.answer_input(&alice, &id, &roots, T0 + 15).await.unwrap(),
            AnswerOutcome::Resumed
        );
        let r = obs.expect(s, Event::Answer, &id, JobState::Queued).await;
        assert_eq!(r.run_at, T0 + 15);
        let c = claim_one(s, &mut obs, "w", T0 + 16).await;
        assert_eq!(c.attempt, 1);
        assert_eq!(
            parsed(&c.input_responses),
            json!({"name": {"action": "accept", "content": {"name": "Ada"}},
                   "roots": {"roots": [{"uri": "file:///w"}]}})
        );
        assert_eq!(c.request_state.as_deref(), Some("s1"));

        // A second round starts afresh: only its own answers reach the next attempt.
        s.complete(
            vec![done(
                &c,
                ask(json!({"ok": {"method": "elicitation/create"}}), Some("s2")),
            )],
            T0 + 17,
        )
        .await
        .unwrap();
        obs.expect(s, Event::AskInput, &id, JobState::AwaitingInput)
            .await;
        let ok = obj(json!({"ok": {"action": "accept"}}));
        assert_eq!(
            s.answer_input(&alice, &id, &ok, T0 + 18).await.unwrap(),
            AnswerOutcome::Resumed
        );
        obs.expect(s, Event::Answer, &id, JobState::Queued).await;
        let c = claim_one(s, &mut obs, "w", T0 + 19).await;
        assert_eq!(
            parsed(&c.input_responses),
            json!({"ok": {"action": "accept"}})
        );
        assert_eq!(c.request_state.as_deref(), Some("s2"));
        s.complete(vec![done(&c, succeeded(r#"{"done":true}"#))], T0 + 20)
            .await
            .unwrap();
        obs.expect(s, Event::Succeed, &id, JobState::Succeeded)
            .await;
        assert_eq!(
            s.answer_input(&alice, &id, &ok, T0 + 21).await.unwrap(),
            AnswerOutcome::NotWaiting(JobState::Succeeded)
        );
        let unknown = JobId::generate();
        assert_eq!(
            s.answer_input(&alice, &unknown, &ok, T0 + 22)
                .await
                .unwrap(),
            AnswerOutcome::NotFound
        );
    }

    /// Cancelling a waiting job ends it at once; a cancel requested while the attempt ran
    /// wins over its question; answers given before the job existed reach attempt one.
    pub async fn waiting_jobs_hold_their_place_in_the_queue_until_they_expire(fx: &dyn Fixture) {
        let s = fx.store();
        let s = &*s;
        let mut obs = Observer::new();
        let alice = client("alice");
        let id = enqueue_new(s, &mut obs, &alice, T0).await;
        let c = claim_one(s, &mut obs, "w", T0).await;
        assert_eq!(c.id, id);
        let queued = enqueue_new(s, &mut obs, &alice, T0 + 1).await;
        let requests =
            json!({"ok": {"method": "elicitation/create", "params": {"message": "Go?"}}});
        s.complete(vec![done(&c, ask(requests, Some("s1")))], T0 + 100)
            .await
            .unwrap();
        obs.expect(s, Event::AskInput, &id, JobState::AwaitingInput)
            .await;
        // One queued, one waiting: both hold a place in alice's queue.
        assert_eq!(s.count_queued("alice", 10).await.unwrap(), 2);
        assert_eq!(s.count_queued("bob", 10).await.unwrap(), 0);

        // The wait began when the attempt asked (T0 + 100): a cutoff at that instant
        // expires nothing, one after it fails the waiting job, and only that one.
        let reason = "input_expired: no answer to its input requests within 60 s";
        assert_eq!(
            s.expire_waiting(T0 + 100, T0 + 500, reason).await.unwrap(),
            0
        );
        assert_eq!(
            s.expire_waiting(T0 + 101, T0 + 600, reason).await.unwrap(),
            1
        );
        let r = obs.expect(s, Event::Expire, &id, JobState::Failed).await;
        assert_eq!(r.finished_at, Some(T0 + 600));
        assert_eq!(r.input_requests, None);
        assert_eq!(r.request_state, None);
        assert_eq!(errors_of(&r), vec![(0, T0 + 600, reason.to_string())]);
        let q = obs
            .expect(s, Event::Expire, &queued, JobState::Queued)
            .await;
        assert_eq!(q.finished_at, None);
        assert_eq!(s.count_queued("alice", 10).await.unwrap(), 1);
        // Failed, it is pruned by retention like any finished job.
        assert_eq!(s.prune(T0 + 601, T0 + 601).await.unwrap(), 1);
        assert!(s.get_job(&alice, &id).await.unwrap().is_none());
    }

    pub async fn a_waiting_job_is_cancelled_at_once_and_early_answers_reach_the_first_attempt(
        fx: &dyn Fixture,
    ) {
        let s = fx.store();
        let s = &*s;
        let mut obs = Observer::new();
        let alice = client("alice");
        let early = r#"{"user_name":{"action":"accept","content":{"name":"Ada"}}}"#;
        let job = NewJob {
            input_responses: Some(early.to_string()),
            ..new_job(&alice, T0, None)
        };
        let id = job.id.clone();
        assert_eq!(s.enqueue(job).await.unwrap(), Enqueued::Created(id.clone()));
        obs.created(s, &alice, &id).await;
        let c = claim_one(s, &mut obs, "w", T0).await;
        assert_eq!(c.input_responses.as_deref(), Some(early));
        assert_eq!(c.request_state, None);
        s.complete(
            vec![done(&c, ask(json!({"q": {"method": "roots/list"}}), None))],
            T0 + 1,
        )
        .await
        .unwrap();
        let r = obs
            .expect(s, Event::AskInput, &id, JobState::AwaitingInput)
            .await;
        assert_eq!(r.request_state, None);
        assert_eq!(
            r.input_responses, None,
            "a new round starts without answers"
        );
        assert_eq!(
            s.cancel(&alice, &id, T0 + 2).await.unwrap(),
            CancelOutcome::Cancelled
        );
        let r = obs.expect(s, Event::Cancel, &id, JobState::Cancelled).await;
        assert_eq!(r.finished_at, Some(T0 + 2));
        assert_eq!(
            s.answer_input(&alice, &id, &obj(json!({"q": {}})), T0 + 3)
                .await
                .unwrap(),
            AnswerOutcome::NotWaiting(JobState::Cancelled)
        );

        // A cancel requested during the attempt: its question is moot.
        let id = enqueue_new(s, &mut obs, &alice, T0 + 10).await;
        let c = claim_one(s, &mut obs, "w", T0 + 10).await;
        assert_eq!(
            s.cancel(&alice, &id, T0 + 11).await.unwrap(),
            CancelOutcome::Requested
        );
        s.complete(
            vec![done(&c, ask(json!({"q": {"method": "roots/list"}}), None))],
            T0 + 12,
        )
        .await
        .unwrap();
        let r = obs.expect(s, Event::Cancel, &id, JobState::Cancelled).await;
        assert_eq!(r.finished_at, Some(T0 + 12));
    }
}

/// Priorities with aging, scheduled jobs and paused tools (docs/FLOW.md).
pub mod flow_cases {
    use super::*;

    const AGING: i64 = 60_000;

    fn flow_job(c: &ClientId, at: i64, priority: u8, run_at: i64) -> NewJob {
        NewJob {
            priority,
            boost_ms: i64::from(priority) * AGING,
            run_at,
            ..new_job(c, at, None)
        }
    }

    async fn claim_order(s: &dyn Store, now: i64) -> Vec<JobId> {
        let mut out = Vec::new();
        loop {
            let c = s.claim("w", 1, now, LEASE, &any()).await.unwrap();
            if c.is_empty() {
                return out;
            }
            out.extend(ids(&c));
        }
    }

    pub async fn claim_takes_higher_priorities_first_fifo_within_one_and_ages(fx: &dyn Fixture) {
        let s = fx.store();
        let a = client("a");
        // Ordered at T0 - 180 s: it has waited longer than 2 levels × 60 s before `high`.
        let old_low = flow_job(&a, T0 - 3 * AGING, 0, T0 - 3 * AGING);
        let low1 = flow_job(&a, T0, 0, T0);
        let low2 = flow_job(&a, T0 + 1, 0, T0 + 1);
        let high = flow_job(&a, T0 + 10, 2, T0 + 10);
        let mid = flow_job(&a, T0 + 20, 1, T0 + 20);
        let want: Vec<JobId> = [&old_low, &high, &mid, &low1, &low2]
            .iter()
            .map(|j| j.id.clone())
            .collect();
        for j in [low1, low2, high, mid, old_low] {
            s.enqueue(j).await.unwrap();
        }
        assert_eq!(claim_order(&*s, T0 + 100).await, want);
    }

    pub async fn scheduled_jobs_wait_for_their_time_and_cancel_before_it(fx: &dyn Fixture) {
        let s = fx.store();
        let a = client("a");
        // The highest priority puts it far ahead in the order; it still waits.
        let sched = flow_job(&a, T0, 9, T0 + 60_000);
        let later = flow_job(&a, T0, 0, T0 + 120_000);
        let plain = flow_job(&a, T0, 0, T0);
        let (sid, lid, pid) = (sched.id.clone(), later.id.clone(), plain.id.clone());
        for j in [sched, later, plain] {
            s.enqueue(j).await.unwrap();
        }
        assert_eq!(claim_order(&*s, T0 + 1).await, vec![pid]);
        assert!(!s.has_due_jobs(T0 + 59_999).await.unwrap());
        assert!(claim_order(&*s, T0 + 59_999).await.is_empty());
        let r = s.get_job(&a, &sid).await.unwrap().unwrap();
        assert_eq!((r.state, r.run_at), (JobState::Queued, T0 + 60_000));
        assert_eq!(
            mcpq::jobs::shown_state(r.state, r.run_at, T0 + 1),
            "scheduled"
        );
        assert!(s.has_due_jobs(T0 + 60_000).await.unwrap());
        assert_eq!(claim_order(&*s, T0 + 60_000).await, vec![sid]);
        assert_eq!(
            s.cancel(&a, &lid, T0 + 60_001).await.unwrap(),
            CancelOutcome::Cancelled
        );
        assert!(claim_order(&*s, T0 + 10 * 120_000).await.is_empty());
    }

    fn keyed_filter(per_key: Option<u32>, rate: Option<f64>) -> ClaimFilter {
        ClaimFilter {
            defs: Vec::new(),
            capped: vec![CappedTool {
                tool: "keyed".into(),
                limit: u32::MAX,
                defs: vec![DEF.into()],
                per_key,
                rate,
            }],
        }
    }

    fn keyed_job(c: &ClientId, at: i64, key: &str) -> NewJob {
        NewJob {
            tool: "keyed".into(),
            capped: true,
            ckey: Some(key.into()),
            ..new_job(c, at, None)
        }
    }

    pub async fn a_limit_per_key_holds_across_claimers_and_spares_other_keys(fx: &dyn Fixture) {
        let s = fx.store();
        let other = fx.open_another().await;
        let a = client("a");
        let mut key_of = std::collections::HashMap::new();
        // cust-a's four jobs first in the queue, then two each of b and c.
        for (i, key) in ["a", "a", "a", "a", "b", "b", "c", "c"].iter().enumerate() {
            let j = keyed_job(&a, T0 + i as i64, key);
            key_of.insert(j.id.clone(), key.to_string());
            s.enqueue(j).await.unwrap();
        }
        let f = keyed_filter(Some(2), None);
        let (x, y) = tokio::join!(
            s.claim("w1", 3, T0 + 10, LEASE, &f),
            other.claim("w2", 3, T0 + 10, LEASE, &f)
        );
        let mut running: Vec<ClaimedJob> = x.unwrap().into_iter().chain(y.unwrap()).collect();
        let per = |r: &[ClaimedJob], k: &str| r.iter().filter(|j| key_of[&j.id] == k).count();
        assert_eq!(
            (per(&running, "a"), per(&running, "b"), per(&running, "c")),
            (2, 2, 2),
            "a's backlog does not hold back b and c"
        );
        assert!(s
            .claim("w1", 10, T0 + 11, LEASE, &f)
            .await
            .unwrap()
            .is_empty());
        // One of a's finishes: exactly one more of a's starts.
        let i = running.iter().position(|j| key_of[&j.id] == "a").unwrap();
        let fin = running.remove(i);
        s.complete(vec![done(&fin, succeeded("{}"))], T0 + 12)
            .await
            .unwrap();
        let more = s.claim("w1", 10, T0 + 13, LEASE, &f).await.unwrap();
        assert_eq!(more.len(), 1);
        assert_eq!(key_of[&more[0].id], "a");
    }

    pub async fn a_saturated_key_at_the_head_does_not_hide_a_later_key(fx: &dyn Fixture) {
        let s = fx.store();
        let a = client("a");
        // Ten of one key ahead of one of another: a claim of 2 first reads the first 4
        // jobs, all of the saturated key, and must look further to find the other.
        let mut key_of = std::collections::HashMap::new();
        for i in 0..11 {
            let key = if i < 10 { "hot" } else { "cold" };
            let j = keyed_job(&a, T0 + i, key);
            key_of.insert(j.id.clone(), key);
            s.enqueue(j).await.unwrap();
        }
        let f = keyed_filter(Some(1), None);
        let got = s.claim("w1", 2, T0 + 20, LEASE, &f).await.unwrap();
        let mut keys: Vec<&str> = got.iter().map(|j| key_of[&j.id]).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["cold", "hot"]);
        assert!(s
            .claim("w1", 2, T0 + 21, LEASE, &f)
            .await
            .unwrap()
            .is_empty());
    }

    pub async fn a_start_rate_holds_across_claimers(fx: &dyn Fixture) {
        let s = fx.store();
        let other = fx.open_another().await;
        let a = client("a");
        for i in 0..20 {
            s.enqueue(keyed_job(&a, T0 + i, "k")).await.unwrap();
        }
        let f = keyed_filter(None, Some(2.0));
        let n = |r: Result<Vec<ClaimedJob>, _>| r.unwrap().len();
        // A full bucket holds one second's worth, shared by every claimer.
        let (x, y) = tokio::join!(
            s.claim("w1", 10, T0 + 100, LEASE, &f),
            other.claim("w2", 10, T0 + 100, LEASE, &f)
        );
        assert_eq!(n(x) + n(y), 2);
        assert_eq!(n(other.claim("w2", 10, T0 + 200, LEASE, &f).await), 0);
        assert_eq!(n(s.claim("w1", 10, T0 + 600, LEASE, &f).await), 1);
        assert_eq!(n(other.claim("w2", 10, T0 + 5000, LEASE, &f).await), 2);
    }

    pub async fn a_paused_tool_is_claimed_by_no_worker_until_resumed(fx: &dyn Fixture) {
        let s = fx.store();
        let admin = fx.admin();
        let a = client("a");
        for i in 0..2 {
            s.enqueue(new_job(&a, T0 + i, None)).await.unwrap();
        }
        assert!(admin
            .set_paused("start_long_task", true, T0, "op")
            .await
            .unwrap());
        assert!(!admin
            .set_paused("start_long_task", true, T0 + 1, "op")
            .await
            .unwrap());
        let other = fx.open_another().await;
        for st in [&s, &other] {
            assert!(claim_order(&**st, T0 + 10).await.is_empty());
            assert!(!st.has_due_jobs(T0 + 10).await.unwrap());
        }
        let stats = s.queue_stats(T0 + 10).await.unwrap();
        assert_eq!(stats.paused, vec!["start_long_task".to_string()]);
        assert_eq!(stats.count(JobState::Queued), 2, "its jobs stay queued");
        let paused = admin.paused_tools().await.unwrap();
        assert_eq!((paused.len(), paused[0].paused_at), (1, T0));
        assert!(admin
            .set_paused("start_long_task", false, T0 + 20, "op")
            .await
            .unwrap());
        assert_eq!(claim_order(&*other, T0 + 30).await.len(), 2);
        assert!(s.queue_stats(T0 + 30).await.unwrap().paused.is_empty());
    }
}

pub mod stats_cases {
    use super::*;

    /// Counts by state and tool cover exactly the unfinished jobs, and the oldest wait is
    /// that of the longest-due queued job (a retry scheduled later does not count yet).
    pub async fn queue_stats_count_unfinished_jobs_by_state_and_tool(fx: &dyn Fixture) {
        let s = fx.store();
        let a = client("a");
        assert_eq!(
            s.queue_stats(T0).await.unwrap(),
            mcpq::store::QueueStats::default()
        );
        for (i, tool) in ["start_long_task", "start_long_task", "other"]
            .iter()
            .enumerate()
        {
            let j = job_of(&a, T0 + i as i64, tool, DEF, CrashPolicy::Retry);
            s.enqueue(j).await.unwrap();
        }
        let held = job_of(&a, T0 + 5, "held", DEF, CrashPolicy::Hold);
        s.enqueue(held).await.unwrap();
        let held_filter = ClaimFilter {
            defs: vec![ClaimFilter::key("held", DEF)],
            capped: Vec::new(),
        };
        let h = s.claim("w", 1, T0 + 10, LEASE, &held_filter).await.unwrap();
        assert_eq!(h.len(), 1);
        // The held job's worker is lost: in doubt.
        let expired = s.expired_leases(T0 + 10 + LEASE + 1, 10).await.unwrap();
        let done: Vec<Completion> = expired
            .iter()
            .map(|e| Completion {
                id: e.id.clone(),
                fence: e.fence,
                hooked: true,
                outcome: Outcome::InDoubt {
                    error: "worker_lost".into(),
                },
            })
            .collect();
        s.rescue(done, T0 + 10 + LEASE + 1).await.unwrap();
        // One start_long_task running, one finished.
        let c = s.claim("w", 1, T0 + 20, LEASE, &any()).await.unwrap();
        assert_eq!(c.len(), 1);
        let c2 = s.claim("w", 1, T0 + 21, LEASE, &any()).await.unwrap();
        s.complete(vec![done_of(&c2[0], succeeded("{}"))], T0 + 22)
            .await
            .unwrap();
        let now = T0 + 10 + LEASE + 2;
        let st = s.queue_stats(now).await.unwrap();
        let mut active = st.active.clone();
        active.sort_by(|x, y| (x.0.as_str(), &x.1).cmp(&(y.0.as_str(), &y.1)));
        assert_eq!(
            active,
            vec![
                (JobState::InDoubt, "held".to_string(), 1),
                (JobState::Queued, "other".to_string(), 1),
                (JobState::Running, "start_long_task".to_string(), 1),
            ]
        );
        assert_eq!(
            st.oldest_due_at,
            Some(T0 + 2),
            "the queued `other` job, due since T0+2"
        );
        assert_eq!(st.count(JobState::Queued), 1);
    }

    fn done_of(c: &ClaimedJob, outcome: Outcome) -> Completion {
        Completion {
            id: c.id.clone(),
            fence: c.fence,
            hooked: c.hooked,
            outcome,
        }
    }
}

/// Completion webhooks' outbox (docs/WEBHOOKS.md): an event commits with the state change of
/// a job that has a callback (and only of such a job), is leased to one deliverer at a time,
/// taken again once a lease ran out, reported only by its lease holder, retried when due,
/// and pruned with the jobs once done.
pub mod webhook_cases {
    use super::*;
    use mcpq::store::outbox::{DeliveryFate, DeliveryReport};

    fn report(seq: i64, fate: DeliveryFate) -> DeliveryReport {
        DeliveryReport {
            seq,
            fate,
            status: Some(503),
            error: Some("HTTP 503".into()),
        }
    }

    pub async fn webhook_events_commit_with_the_state_change_and_are_leased_once(fx: &dyn Fixture) {
        let s = fx.store();
        let s = s.as_ref();
        let alice = client("alice");
        let hooked = NewJob {
            callback: Some("https://hooks.example.com/a".into()),
            ..new_job(&alice, T0, None)
        };
        let (a, b) = (hooked.id.clone(), {
            let plain = new_job(&alice, T0, None);
            let id = plain.id.clone();
            s.enqueue(hooked).await.unwrap();
            s.enqueue(plain).await.unwrap();
            id
        });
        // A scheduled job with a callback, cancelled before it runs: an event too.
        let later = NewJob {
            callback: Some("https://hooks.example.com/c".into()),
            run_at: T0 + 1_000_000,
            ..new_job(&alice, T0, None)
        };
        let c_id = later.id.clone();
        s.enqueue(later).await.unwrap();
        let claimed = s.claim("w", 10, T0 + 1, LEASE, &any()).await.unwrap();
        assert_eq!(claimed.len(), 2);
        let done: Vec<Completion> = claimed
            .iter()
            .map(|c| Completion {
                id: c.id.clone(),
                fence: c.fence,
                hooked: c.hooked,
                outcome: succeeded(r#"{"ok":1}"#),
            })
            .collect();
        s.complete(done, T0 + 2).await.unwrap();
        assert_eq!(
            s.cancel(&alice, &c_id, T0 + 3).await.unwrap(),
            CancelOutcome::Cancelled
        );
        assert_eq!(s.webhook_backlog().await.unwrap(), 2);
        let now = T0 + 10;
        let mut ev = s.claim_webhooks("d1", now, LEASE, 10).await.unwrap();
        ev.sort_by_key(|e| e.seq);
        assert_eq!(ev.len(), 2, "{ev:?}");
        let e = &ev[0];
        assert_eq!((&e.job_id, e.state.as_str()), (&a, "succeeded"));
        assert_eq!(e.url, "https://hooks.example.com/a");
        assert_eq!(e.result.as_deref(), Some(r#"{"ok":1}"#));
        assert_eq!((e.attempts, e.at), (0, T0 + 2));
        assert_eq!((&ev[1].job_id, ev[1].state.as_str()), (&c_id, "cancelled"));
        assert!(
            ev.iter().all(|e| e.job_id != b),
            "no event without a callback"
        );
        // Leased: nobody else takes them, and a report by someone else changes nothing.
        assert!(s
            .claim_webhooks("d2", now + 1, LEASE, 10)
            .await
            .unwrap()
            .is_empty());
        let stale = vec![report(e.seq, DeliveryFate::Delivered)];
        assert_eq!(s.report_webhooks("d2", stale, now + 1).await.unwrap(), 0);
        // d1 is killed; its lease runs out and d2 takes the events again.
        let later = now + LEASE + 1;
        let again = s.claim_webhooks("d2", later, LEASE, 10).await.unwrap();
        assert_eq!(again.len(), 2);
        let late = vec![report(e.seq, DeliveryFate::Delivered)];
        assert_eq!(s.report_webhooks("d1", late, later).await.unwrap(), 0);
        let retry = DeliveryFate::Retry {
            next_at: later + 500,
        };
        let reports = vec![
            report(e.seq, retry),
            report(ev[1].seq, DeliveryFate::GaveUp),
        ];
        assert_eq!(s.report_webhooks("d2", reports, later).await.unwrap(), 2);
        assert_eq!(s.webhook_backlog().await.unwrap(), 1);
        // Not due before its back-off; then due, with its attempt counted.
        assert!(s
            .claim_webhooks("d3", later + 499, LEASE, 10)
            .await
            .unwrap()
            .is_empty());
        let due = s
            .claim_webhooks("d3", later + 500, LEASE, 10)
            .await
            .unwrap();
        assert_eq!((due.len(), due[0].seq, due[0].attempts), (1, e.seq, 1));
        let ok = DeliveryReport {
            seq: e.seq,
            fate: DeliveryFate::Delivered,
            status: Some(200),
            error: None,
        };
        assert_eq!(
            s.report_webhooks("d3", vec![ok], later + 600)
                .await
                .unwrap(),
            1
        );
        assert_eq!(s.webhook_backlog().await.unwrap(), 0);
        let shown = fx.admin().webhook_deliveries(&a).await.unwrap();
        assert_eq!(shown.len(), 1);
        assert_eq!((shown[0].status, shown[0].attempts), ("delivered", 2));
        assert_eq!(shown[0].last_status, Some(200));
        let gave_up = fx.admin().webhook_deliveries(&c_id).await.unwrap();
        assert_eq!(
            (gave_up[0].status, gave_up[0].last_status),
            ("failed", Some(503))
        );
        assert_eq!(shown[0].webhook_id, e.webhook_id());
        // Retention: done events go with the jobs.
        s.prune(later + 601, later + 601).await.unwrap();
        assert!(fx.admin().webhook_deliveries(&a).await.unwrap().is_empty());
        assert!(fx
            .admin()
            .webhook_deliveries(&c_id)
            .await
            .unwrap()
            .is_empty());
    }
}

pub mod audit_cases {
    use super::*;
    use mcpq::audit::{Entry, Kind, Verifier};

    fn entries(at: i64, n: usize) -> Vec<Entry> {
        (0..n)
            .map(|i| {
                let mut e = Entry::new(at + i as i64, Kind::Operator, "ops", "done");
                e.tool = Some(format!("jobs.retry.{at}.{i}"));
                e
            })
            .collect()
    }

    /// Every record after `after`, written at or after `since`, a page of `limit` at a time.
    async fn read_all(
        fx: &dyn Fixture,
        after: i64,
        since: i64,
        limit: usize,
    ) -> Vec<mcpq::audit::Record> {
        let admin = fx.admin();
        let (mut out, mut after) = (Vec::new(), after);
        loop {
            let page = admin.audit_page(after, since, limit).await.unwrap();
            assert!(page.len() <= limit, "a page holds at most its limit");
            let Some(last) = page.last() else { break };
            after = last.seq;
            out.extend(page);
        }
        out
    }

    pub async fn audit_pages_hand_out_every_record_once_in_chain_order_and_retention_keeps_it_whole(
        fx: &dyn Fixture,
    ) {
        let admin = fx.admin();
        // Three appends of different sizes (one commit each), written at T0, T0+10, T0+100.
        for (at, n) in [(T0, 1), (T0 + 10, 5), (T0 + 100, 3)] {
            admin.append_audit(entries(at, n)).await.unwrap();
        }
        let ends = admin.audit_ends().await.unwrap();
        assert_eq!(ends.head.seq, 9);
        for limit in [1, 2, 4, 100] {
            let all = read_all(fx, 0, i64::MIN, limit).await;
            let seqs: Vec<i64> = all.iter().map(|r| r.seq).collect();
            assert_eq!(seqs, (1..=9).collect::<Vec<_>>(), "limit {limit}");
            let mut v = Verifier::new(&ends.checkpoint);
            for r in &all {
                v.next(r).unwrap();
            }
            v.finish(&ends.head).unwrap();
            assert_eq!(
                all[8].entry.tool.as_deref(),
                Some(&*format!("jobs.retry.{}.2", T0 + 100))
            );
        }
        // `since` skips what was written before it, in the middle of an append too.
        let later: Vec<i64> = read_all(fx, 0, T0 + 12, 2)
            .await
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(later, vec![4, 5, 6, 7, 8, 9]);

        // Retention before T0+50 takes the first two appends; the chain verifies from the
        // checkpoint, through the record of the pruning.
        let deleted = fx
            .store()
            .prune_audit(T0 + 50, 1000, T0 + 200)
            .await
            .unwrap();
        assert_eq!(deleted, 6);
        let ends = admin.audit_ends().await.unwrap();
        assert_eq!((ends.checkpoint.seq, ends.head.seq), (6, 10));
        let kept = read_all(fx, ends.checkpoint.seq, i64::MIN, 3).await;
        assert_eq!(
            kept.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![7, 8, 9, 10]
        );
        assert_eq!(kept[3].entry.kind, Kind::Prune);
        let mut v = Verifier::new(&ends.checkpoint);
        for r in &kept {
            v.next(r).unwrap();
        }
        v.finish(&ends.head).unwrap();
    }
}

/// Declares one test per conformance case by calling `$m!($factory; case, case, ...)`.
macro_rules! for_each_case {
    ($m:ident, $factory:path) => {
        $m! { $factory;
            enqueue_creates_a_job_visible_only_to_its_client,
            concurrent_lookups_each_get_their_own_answer,
            idempotency_key_returns_the_existing_job_per_client,
            idempotency_holds_for_concurrent_enqueues_in_one_batch,
            concurrent_enqueues_all_commit_and_are_claimed_exactly_once,
            claim_takes_due_jobs_oldest_first_up_to_the_limit,
            concurrent_claimers_never_get_the_same_job,
            heartbeat_extends_only_current_leases_and_reports_cancel,
            cancel_cancels_queued_jobs_at_once_and_reports_finished_ones,
            complete_applies_each_outcome_with_the_current_fence,
            awkward_text_round_trips_through_every_path,
            stale_completion_after_rescue_and_reclaim_is_not_applied,
            rescue_requeues_expired_leases_and_fails_after_max_attempts,
            rescue_skips_leases_extended_by_a_heartbeat,
            release_requeues_without_counting_the_attempt,
            an_attempts_kept_state_reaches_the_attempt_after_a_lost_worker,
            cancel_request_survives_a_requeue,
            prune_deletes_only_jobs_finished_before_the_cutoff,
            nonces_are_live_until_they_expire_and_then_pruned,
            shared_store_admits_each_nonce_once_across_handles,
            claim_takes_only_jobs_whose_definition_the_worker_has,
            capped_tool_never_runs_more_than_its_limit_across_claimers,
            rescue_applies_each_jobs_crash_policy,
            in_doubt_jobs_are_resolved_only_by_an_operator,
            queue_stats_count_unfinished_jobs_by_state_and_tool,
            a_job_that_asks_for_input_waits_until_every_request_is_answered,
            a_waiting_job_is_cancelled_at_once_and_early_answers_reach_the_first_attempt,
            waiting_jobs_hold_their_place_in_the_queue_until_they_expire,
            claim_takes_higher_priorities_first_fifo_within_one_and_ages,
            scheduled_jobs_wait_for_their_time_and_cancel_before_it,
            a_paused_tool_is_claimed_by_no_worker_until_resumed,
            a_limit_per_key_holds_across_claimers_and_spares_other_keys,
            a_saturated_key_at_the_head_does_not_hide_a_later_key,
            a_start_rate_holds_across_claimers,
            trace_contexts_commit_with_their_jobs,
            webhook_events_commit_with_the_state_change_and_are_leased_once,
            audit_pages_hand_out_every_record_once_in_chain_order_and_retention_keeps_it_whole,
        }
    };
}

/// One `#[tokio::test]` per case, each on a fresh fixture from `$factory().await`.
macro_rules! conformance {
    ($factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                // `None`: the backend is not available here (and may be skipped, see its module).
                let Some(fx) = $factory().await else { return };
                #[allow(unused_imports)]
                use $crate::store_conformance::{audit_cases::*, cases::*, flow_cases::*, input_cases::*, stats_cases::*, webhook_cases::*};
                $case(&fx).await;
            }
        )*
    };
}

// ---------------------------------------------------------------------------------------------
// SQLite.
// ---------------------------------------------------------------------------------------------

mod sqlite {
    use std::sync::Arc;

    use mcpq::config::{DatabaseSettings, Synchronous};
    use mcpq::store::admin::AdminStore;
    use mcpq::store::sqlite::SqliteStore;
    use mcpq::store::Store;

    use super::{Fixture, LocalFuture};

    pub struct SqliteFixture {
        // Keeps the database directory alive as long as the fixture.
        _dir: tempfile::TempDir,
        pub settings: DatabaseSettings,
        store: Arc<dyn Store>,
        admin: Arc<dyn AdminStore>,
    }

    fn settings(dir: &tempfile::TempDir) -> DatabaseSettings {
        DatabaseSettings {
            url: String::new(),
            path: dir.path().join("db"),
            synchronous: Synchronous::Full,
            busy_timeout_ms: 5000,
            read_connections: 2,
            poll_readers: 2,
            checkpoint_pages: 1000,
        }
    }

    pub async fn fixture() -> Option<SqliteFixture> {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(&dir);
        let store = Arc::new(SqliteStore::open(&settings).await.unwrap());
        Some(SqliteFixture {
            _dir: dir,
            settings,
            store: store.clone(),
            admin: store,
        })
    }

    impl Fixture for SqliteFixture {
        fn store(&self) -> Arc<dyn Store> {
            self.store.clone()
        }
        fn open_another(&self) -> LocalFuture<'_, Arc<dyn Store>> {
            Box::pin(async move {
                let s = SqliteStore::open(&self.settings).await.unwrap();
                Arc::new(s) as Arc<dyn Store>
            })
        }
        fn admin(&self) -> Arc<dyn AdminStore> {
            self.admin.clone()
        }
    }

    for_each_case!(conformance, fixture);
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: each test in a schema of its own, dropped afterwards.
// ---------------------------------------------------------------------------------------------

mod postgres {
    use std::sync::Arc;

    use mcpq::store::admin::AdminStore;
    use mcpq::store::postgres::PgStore;
    use mcpq::store::Store;

    use super::{Fixture, LocalFuture};

    pub struct PgFixture {
        url: String,
        pub settings: mcpq::config::PostgresSettings,
        store: Arc<dyn Store>,
        admin: Arc<dyn AdminStore>,
    }

    pub async fn fixture() -> Option<PgFixture> {
        let url = crate::common::pg_test_url()?;
        let settings = settings(&format!("mcpq_test_{}", uuid::Uuid::new_v4().simple()));
        let store = Arc::new(PgStore::open(&url, &settings).await.unwrap());
        Some(PgFixture {
            url,
            settings,
            store: store.clone(),
            admin: store,
        })
    }

    pub fn settings(schema: &str) -> mcpq::config::PostgresSettings {
        mcpq::config::PostgresSettings {
            max_connections: 4,
            commit_connections: 2,
            connect_timeout_ms: 5000,
            statement_timeout_ms: 30_000,
            ssl_mode: String::new(),
            ssl_root_cert: String::new(),
            password_file: String::new(),
            synchronous_commit: "on".into(),
            listen: true,
            prune_batch: 7,
            schema: schema.to_string(),
        }
    }

    impl Drop for PgFixture {
        fn drop(&mut self) {
            crate::common::drop_pg_schema(self.url.clone(), self.settings.schema.clone());
        }
    }

    impl Fixture for PgFixture {
        fn store(&self) -> Arc<dyn Store> {
            self.store.clone()
        }
        fn open_another(&self) -> LocalFuture<'_, Arc<dyn Store>> {
            Box::pin(async move {
                let s = PgStore::open(&self.url, &self.settings).await.unwrap();
                Arc::new(s) as Arc<dyn Store>
            })
        }
        fn admin(&self) -> Arc<dyn AdminStore> {
            self.admin.clone()
        }
    }

    for_each_case!(conformance, fixture);
}

/// Checks specific to the SQLite implementation (not part of the backend-neutral suite).
mod sqlite_only {
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{Connection, Row, SqliteConnection};

    use super::*;

    const CLAIM_SQL: &str = include_str!("../../src/store/sqlite/sql/claim.sql");

    async fn claim_plan(conn: &mut SqliteConnection) -> Vec<String> {
        let q = format!("EXPLAIN QUERY PLAN {CLAIM_SQL}");
        let rows = sqlx::query(&q)
            .bind("w")
            .bind(T0)
            .bind(10i64)
            .bind(LEASE)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        rows.iter().map(|r| r.get::<String, _>("detail")).collect()
    }

    fn assert_plan_uses_the_queued_index(plan: &[String]) {
        assert!(
            plan.iter().any(|d| d.contains("jobs_queued")),
            "the claim does not use index jobs_queued: {plan:#?}"
        );
        assert!(
            !plan.iter().any(|d| d.starts_with("SCAN jobs")),
            "the claim scans the jobs table: {plan:#?}"
        );
    }

    /// SQLite-specific: a capped tool's claim finds its jobs through its own index, never
    /// walking other tools' backlog or counting finished rows.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_capped_claim_plan_uses_jobs_queued_tool() {
        let fx = sqlite::fixture().await.unwrap();
        let opts = SqliteConnectOptions::new().filename(&fx.settings.path);
        let mut conn = SqliteConnection::connect_with(&opts).await.unwrap();
        let q = format!(
            "EXPLAIN QUERY PLAN {}",
            include_str!("../../src/store/sqlite/sql/claim_tool.sql")
        );
        let plan: Vec<String> = sqlx::query(&q)
            .bind("w")
            .bind(T0)
            .bind(2i64)
            .bind(LEASE)
            .bind("capped")
            .bind(r#"["1"]"#)
            .bind(10i64)
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>("detail"))
            .collect();
        assert!(
            plan.iter().any(|d| d.contains("jobs_queued_tool")),
            "the capped claim does not use jobs_queued_tool: {plan:#?}"
        );
        assert!(
            plan.iter().any(|d| d.contains("jobs_running_key")),
            "the capped claim counts running jobs without jobs_running_key: {plan:#?}"
        );
        assert!(
            !plan.iter().any(|d| d.starts_with("SCAN jobs")),
            "the capped claim scans jobs: {plan:#?}"
        );
    }

    /// SQLite-specific: the claim walks only queued rows, so thousands of finished rows
    /// cannot slow it down. Checked on the plan, through a separate connection to the file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_claim_plan_uses_jobs_queued_and_never_scans_jobs() {
        let fx = sqlite::fixture().await.unwrap();
        let s = fx.store();
        let opts = SqliteConnectOptions::new().filename(&fx.settings.path);
        let mut conn = SqliteConnection::connect_with(&opts).await.unwrap();

        let plan = claim_plan(&mut conn).await;
        assert_plan_uses_the_queued_index(&plan);
        // Without statistics (the store never gathers any) the claim also walks the index
        // in claim order instead of sorting every due job to take the first `limit`.
        // (With statistics the planner may choose to sort a small queue; that is fine.)
        assert!(
            !plan.iter().any(|d| d.contains("TEMP B-TREE")),
            "the claim sorts instead of walking the index in order: {plan:#?}"
        );

        // Many finished rows and a few queued ones; then statistics, as `PRAGMA optimize`
        // or an operator's ANALYZE would gather them: the plan must not change.
        let alice = client("alice");
        let mut set = tokio::task::JoinSet::new();
        for i in 0..2000 {
            let s = s.clone();
            let alice = alice.clone();
            set.spawn(async move { s.enqueue(new_job(&alice, T0 + i, None)).await });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap().unwrap();
        }
        loop {
            let c = s.claim("w", 500, T0 + 2000, LEASE, &any()).await.unwrap();
            if c.is_empty() {
                break;
            }
            let batch = c.iter().map(|c| done(c, succeeded("{}"))).collect();
            s.complete(batch, T0 + 2001).await.unwrap();
        }
        for i in 0..5 {
            s.enqueue(new_job(&alice, T0 + 3000 + i, None))
                .await
                .unwrap();
        }
        sqlx::query("ANALYZE").execute(&mut conn).await.unwrap();
        let plan = claim_plan(&mut conn).await;
        assert_plan_uses_the_queued_index(&plan);

        // And the claim still works with the statistics in place.
        let c = s.claim("w", 10, T0 + 4000, LEASE, &any()).await.unwrap();
        assert_eq!(c.len(), 5);
        conn.close().await.unwrap();
    }
}
