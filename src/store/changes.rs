//! Who in this process waits for which job to change, and waking them when a store says
//! it did: the held `/mcp` calls and `tasks/result` re-read their job when told instead of
//! on a timer (their timer stays, as the fallback when a signal is lost).
//!
//! The drivers feed it: the completions this process commits, and the signals of other
//! processes' completions (`sqlite::signals` over local sockets, `postgres::signals` over
//! `LISTEN`). It must not read or interpret jobs; a wake only means "read it again".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The waiters of this process, by job id.
#[derive(Default)]
pub struct JobChanges {
    waiting: Mutex<HashMap<String, Vec<Arc<Notify>>>>,
}

impl JobChanges {
    pub fn new() -> Arc<JobChanges> {
        Arc::new(JobChanges::default())
    }

    /// Starts watching `id` until the returned guard drops. A change signalled after this
    /// call and before the next `changed().await` is not lost (the notify keeps a permit).
    pub fn watch(self: &Arc<Self>, id: &str) -> Watching {
        let notify = Arc::new(Notify::new());
        lock(&self.waiting)
            .entry(id.to_string())
            .or_default()
            .push(notify.clone());
        Watching {
            changes: self.clone(),
            id: id.to_string(),
            notify,
        }
    }

    /// Whether anyone in this process waits for a job (senders may skip work otherwise).
    pub fn is_watching(&self) -> bool {
        !lock(&self.waiting).is_empty()
    }

    /// These jobs changed.
    pub fn changed<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let waiting = lock(&self.waiting);
        if waiting.is_empty() {
            return;
        }
        for id in ids {
            for n in waiting.get(id).into_iter().flatten() {
                n.notify_one();
            }
        }
    }

    /// Some jobs changed, which ones is not known (a signal too large to name them).
    pub fn all_changed(&self) {
        for n in lock(&self.waiting).values().flatten() {
            n.notify_one();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the map inconsistent: keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One waiter on one job; stops watching when dropped.
pub struct Watching {
    changes: Arc<JobChanges>,
    id: String,
    notify: Arc<Notify>,
}

impl Watching {
    /// Resolves once the job was signalled as changed since the last time this resolved.
    pub async fn changed(&self) {
        self.notify.notified().await
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let mut waiting = lock(&self.changes.waiting);
        if let Some(list) = waiting.get_mut(&self.id) {
            list.retain(|n| !Arc::ptr_eq(n, &self.notify));
            if list.is_empty() {
                waiting.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::JobChanges;
    use std::time::Duration;

    async fn woken(w: &super::Watching) -> bool {
        tokio::time::timeout(Duration::from_millis(50), w.changed())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_change_signalled_before_the_wait_is_kept() {
        let c = JobChanges::new();
        let w = c.watch("a");
        c.changed(["a"]);
        assert!(woken(&w).await);
        assert!(!woken(&w).await, "one signal, one wake");
    }

    #[tokio::test]
    async fn only_the_named_jobs_wake_and_all_wakes_everyone() {
        let c = JobChanges::new();
        let (a1, a2, b) = (c.watch("a"), c.watch("a"), c.watch("b"));
        c.changed(["a"]);
        assert!(woken(&a1).await && woken(&a2).await);
        assert!(!woken(&b).await);
        c.all_changed();
        assert!(woken(&b).await);
    }

    #[test]
    fn a_dropped_waiter_is_forgotten() {
        let c = JobChanges::new();
        let w = c.watch("a");
        assert!(c.is_watching());
        drop(w);
        assert!(!c.is_watching());
    }
}
