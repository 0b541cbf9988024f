//! An upstream asking its client *during* a call, the 2025-11-25 way: while its
//! `tools/call` runs, the server sends its own `elicitation/create` or
//! `sampling/createMessage` request to mcpq and waits for the answer before it answers the
//! call. mcpq's client is asked through the mechanism every asking tool has (the tool's
//! `InputRequiredResult`: a multi-round result, the 2025 stream bridge, an `input_required`
//! job answered with `tasks/update`), so the call that asked is *parked* here under a
//! random token that travels in the round's `requestState`; the next round's answers
//! resume it, and the upstream gets the answer as its request's response.
//!
//! A parked call lives in this process's memory only, for at most [`PARK_LIMIT`]; the time
//! it waits does not count against its timeout. An answer that finds its call gone (this
//! process restarted, another worker claimed the answered job) starts the call again and
//! gives the same answer to the same question, asked again ([`Replay`]), without asking
//! the client twice. Which of a session's calls a question
//! belongs to is not on the wire (rmcp hands the request over without it): it is the one
//! call in flight that is not parked, else the one parked call (`session::Calls::asker`);
//! anything else is answered with an error rather than guessed.
//!
//! It must not talk to mcpq's clients or to the store: the tool's result carries the
//! question; the runner and the transports do the rest.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{CancelledNotificationParam, ProgressToken, RequestId, ServerResult};
use tokio::sync::{mpsc, oneshot};

use super::Slot;
use crate::json::{Json, Object};

/// How long a parked call waits for its client's answers: a sealed round's own limit
/// (`mcp::input::STATE_TTL_MS`).
pub const PARK_LIMIT: Duration = Duration::from_secs(600);
/// Parked calls per upstream in this process; beyond it a question is refused at once
/// (clients that never answer must not hold every upstream call open).
const MAX_PARKED: usize = 1024;
/// What a round's `requestState` starts with when it names a parked call.
const STATE_PREFIX: &str = "mcpq-upstream-ask:";
/// The question's key in the tool's `inputRequests`.
pub const KEY: &str = "upstream";

/// A question an upstream sent during a call, and where its answer goes.
pub struct Question {
    pub method: &'static str,
    pub params: serde_json::Value,
    pub answer: oneshot::Sender<Result<serde_json::Value, String>>,
}

/// The upstream's response to a call, still to come.
pub type Response = Pin<Box<dyn Future<Output = Result<Reply, crate::tools::JobError>> + Send>>;

/// An upstream's answer to `tools/call`.
#[derive(Debug)]
pub enum Reply {
    /// As rmcp's client read it (any of the revision's results).
    Server(Box<ServerResult>),
    /// A tool result, already checked to be one, as the JSON it came in (mcpq's own
    /// client: no conversion to rmcp's types and back).
    Tool(serde_json::Value),
}

/// A `tools/call` in flight on a session: what `call` waits on, and what parking keeps.
pub struct InFlight {
    pub slot: Arc<Slot>,
    pub id: RequestId,
    pub token: ProgressToken,
    pub response: Response,
    pub questions: mpsc::Receiver<Question>,
}

impl InFlight {
    /// Tells the upstream the call is off and forgets it on the session.
    pub async fn cancel(self, reason: &str) {
        self.slot.calls.remove(&self.token);
        let _ = self
            .slot
            .peer
            .notify_cancelled(CancelledNotificationParam::new(
                Some(self.id),
                Some(reason.into()),
            ))
            .await;
    }
}

struct Parked {
    client: String,
    call: InFlight,
    question: oneshot::Sender<Result<serde_json::Value, String>>,
    /// What was left of the call's timeout when it was parked.
    left: Duration,
}

/// What a round's `requestState` finds here.
pub enum Resumed {
    /// Not a parked call's state (an upstream's own multi-round state, or none).
    NotParked,
    /// A parked call's state, but the call is gone: this process restarted, another
    /// process holds it, or it waited past [`PARK_LIMIT`]. The call starts again, and the
    /// client's answer is given again if the upstream asks the same question.
    Gone(Option<Replay>),
    /// The call, its question answered, and what is left of its timeout.
    Call(InFlight, Duration),
}

/// A client's answer to a question of a call that is gone, for the same question asked
/// again by the call that replaces it.
pub struct Replay {
    digest: String,
    answer: serde_json::Value,
}

impl Replay {
    /// Answers `q` if it is the question this answer was for; else hands `q` back.
    pub fn answer(self, q: Question) -> Result<(), (Replay, Question)> {
        if digest(q.method, &q.params) != self.digest {
            return Err((self, q));
        }
        let _ = q.answer.send(Ok(self.answer));
        Ok(())
    }
}

/// Of a question's method and parameters (their JSON, keys sorted).
fn digest(method: &str, params: &serde_json::Value) -> String {
    use sha2::{Digest, Sha256};
    let text = serde_json::json!([method, params]).to_string();
    crate::hex::lower(&Sha256::digest(text.as_bytes())[..16])
}

/// The parked calls of one upstream in this process.
#[derive(Default)]
pub struct Asking {
    parked: Mutex<HashMap<String, Parked>>,
}

impl Asking {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Parked>> {
        self.parked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Parks `call`, whose upstream asked `q`, for `client`; returns the tool's
    /// `InputRequiredResult`. When too many calls are parked already, the question is
    /// answered with an error and the call comes back, to be waited on as before.
    pub fn park(
        self: &Arc<Self>,
        client: &str,
        call: InFlight,
        q: Question,
        left: Duration,
    ) -> Result<Object, InFlight> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let asked = digest(q.method, &q.params);
        let request = serde_json::json!({ "method": q.method, "params": q.params });
        {
            let mut parked = self.lock();
            if parked.len() >= MAX_PARKED {
                let _ = q.answer.send(Err(format!(
                    "mcpq has {MAX_PARKED} calls of this upstream waiting for their clients already"
                )));
                return Err(call);
            }
            parked.insert(
                token.clone(),
                Parked {
                    client: client.to_string(),
                    call,
                    question: q.answer,
                    left,
                },
            );
        }
        let me = self.clone();
        let expiring = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(PARK_LIMIT).await;
            let expired = me.lock().remove(&expiring);
            if let Some(p) = expired {
                // Dropping the question's sender answers the upstream with an error.
                p.call.cancel("mcpq's client did not answer in time").await;
            }
        });
        let mut requests = Object::new();
        requests.insert(KEY.into(), Json::from_serde(&request));
        let mut question = Object::new();
        question.insert("resultType".into(), Json::Str("input_required".into()));
        question.insert("inputRequests".into(), Json::Object(requests));
        question.insert(
            "requestState".into(),
            Json::Str(format!("{STATE_PREFIX}{token}.{asked}")),
        );
        Ok(question)
    }

    /// The parked call a round's `state` names, its question answered with `answers[KEY]`
    /// (JSON text of the round's answers; no answer tells the upstream the client gave none).
    pub fn resume(&self, state: Option<&str>, client: &str, answers: Option<&str>) -> Resumed {
        let Some((token, asked)) = state
            .and_then(|s| s.strip_prefix(STATE_PREFIX))
            .and_then(|s| s.split_once('.'))
        else {
            return Resumed::NotParked;
        };
        let answer = answers
            .and_then(|a| serde_json::from_str::<serde_json::Value>(a).ok())
            .and_then(|mut a| a.get_mut(KEY).map(serde_json::Value::take));
        let p = {
            let mut parked = self.lock();
            match parked.get(token) {
                Some(p) if p.client == client => parked.remove(token),
                _ => None,
            }
        };
        let Some(p) = p else {
            return Resumed::Gone(answer.map(|answer| Replay {
                digest: asked.to_string(),
                answer,
            }));
        };
        let _ = p
            .question
            .send(answer.ok_or_else(|| "mcpq's client gave no answer".to_string()));
        Resumed::Call(p.call, p.left)
    }
}
