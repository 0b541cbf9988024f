//! The scope model: what an access token's scopes let its holder do at `/mcp`.
//! `<prefix>NAME` (default `tools:call:NAME`) calls tool NAME, where NAME may be a glob
//! (`*` any run of characters, `?` one); the tasks scope reads, waits on and cancels the
//! holder's own tasks. A static bearer token has no [`Grant`]: it may do everything.
//!
//! It must not read tokens (`oauth` does) or decide what a refusal looks like on the wire
//! (`mcp` does).

use std::sync::Arc;

/// How scopes are named (`[oauth]` tool_scope_prefix and tasks_scope).
#[derive(Debug)]
pub struct ScopePolicy {
    pub tool_prefix: String,
    pub tasks_scope: String,
}

/// What one validated access token may do, and whose it is.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The mcpq client id (client_prefix + the configured claim).
    pub client: String,
    pub scopes: Vec<String>,
    pub policy: Arc<ScopePolicy>,
}

impl Grant {
    /// The token may call `tool`.
    pub fn can_call(&self, tool: &str) -> bool {
        let prefix = self.policy.tool_prefix.as_str();
        self.scopes
            .iter()
            .filter_map(|s| s.strip_prefix(prefix))
            .any(|pattern| glob(pattern.as_bytes(), tool.as_bytes()))
    }

    /// The scope that would let the token call `tool` (named in a 403's challenge).
    pub fn scope_for(&self, tool: &str) -> String {
        format!("{}{tool}", self.policy.tool_prefix)
    }

    pub fn can_use_tasks(&self) -> bool {
        self.scopes.iter().any(|s| *s == self.policy.tasks_scope)
    }
}

/// `*` matches any run of bytes, `?` one; everything else itself. Iterative with one
/// back-track point, so a hostile pattern costs O(len(pattern) × len(name)) at worst.
pub fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(scopes: &[&str]) -> Grant {
        Grant {
            client: "c".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            policy: Arc::new(ScopePolicy {
                tool_prefix: "tools:call:".into(),
                tasks_scope: "tools:tasks".into(),
            }),
        }
    }

    #[test]
    fn globs_match_whole_names() {
        assert!(glob(b"*", b"anything"));
        assert!(glob(b"report_*", b"report_daily"));
        assert!(!glob(b"report_*", b"xreport_daily"));
        assert!(glob(b"a?c", b"abc"));
        assert!(!glob(b"a?c", b"abbc"));
        assert!(glob(b"*_*_*", b"a_b_c"));
        assert!(!glob(b"abc", b"abcd"));
        assert!(glob(b"", b""));
    }

    #[test]
    fn tool_scopes_and_the_tasks_scope() {
        let g = grant(&["openid", "tools:call:echo", "tools:call:report_*"]);
        assert!(g.can_call("echo"));
        assert!(g.can_call("report_x"));
        assert!(!g.can_call("echo2"));
        assert!(!g.can_use_tasks());
        assert_eq!(g.scope_for("x"), "tools:call:x");
        assert!(grant(&["tools:tasks"]).can_use_tasks());
        assert!(!grant(&["tools:call"]).can_call("x"));
    }
}
