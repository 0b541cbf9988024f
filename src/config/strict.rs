//! Strict configuration: every section and key, in the file and in `MCPQ__…` variables, must
//! be one mcpq knows, so a typo (`[sever]`, `paht`) stops the command at start instead of
//! silently serving on defaults.
//!
//! The known keys are those of the compiled-in `config/default.toml` plus the optional ones
//! it leaves commented out (secret files, a client's previous secret). `[tools.*]` tables
//! are checked key by key by [`super::tool_table`]. Errors name the key, where it came from, and
//! the closest known key when one is close.
//!
//! It must not load or interpret values; [`super::Settings::load`] does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::{ConfigError, DEFAULT_TOML};

/// Keys a section may have beyond those set in `config/default.toml`.
const OPTIONAL: &[(&str, &str)] = &[
    ("server", "secret_file"),
    ("client", "secret_file"),
    ("client", "server_secret_file"),
];

/// The keys of one `[clients.ID]` table.
const CLIENT_KEYS: &[&str] = &[
    "secret",
    "secret_file",
    "token_sha256",
    "token_file",
    "previous_token_sha256",
    "previous_token_file",
    "previous_secret",
    "previous_secret_file",
    "max_priority",
    "tools",
    // A table of its own, its keys checked when it is read (config::webhooks).
    "webhooks",
];

/// Sections whose tables are keyed by a name the operator chooses.
const NAMED: &[&str] = &[
    "clients",
    "tools",
    "resources",
    "prompts",
    "operators",
    "schedules",
    "upstreams",
];

/// The keys of one `[operators.NAME]` table (the console's).
const OPERATOR_KEYS: &[&str] = &["token_sha256", "token_file", "role"];

fn known() -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if let Ok(t) = toml::from_str::<toml::Table>(DEFAULT_TOML) {
        for (section, v) in t {
            if NAMED.contains(&section.as_str()) {
                continue;
            }
            if let toml::Value::Table(keys) = v {
                out.entry(section).or_default().extend(keys.keys().cloned());
            }
        }
    }
    for (s, k) in OPTIONAL {
        out.entry(s.to_string()).or_default().insert(k.to_string());
    }
    out
}

/// ", did you mean X?" when a candidate is close to `word`.
fn suggestion<'a>(
    word: &str,
    candidates: impl Iterator<Item = &'a str>,
    show: impl Fn(&str) -> String,
) -> String {
    candidates
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d < c.len())
        .min()
        .map(|(_, c)| format!(" (did you mean {}?)", show(c)))
        .unwrap_or_default()
}

fn unknown_key(
    known: &BTreeMap<String, BTreeSet<String>>,
    section: &str,
    key: &str,
    at: &str,
) -> ConfigError {
    let hint = suggestion(key, known[section].iter().map(String::as_str), |c| {
        format!("{section}.{c}")
    });
    ConfigError::Invalid(format!("unknown setting {section}.{key} in {at}{hint}"))
}

fn unknown_section(
    known: &BTreeMap<String, BTreeSet<String>>,
    section: &str,
    at: &str,
) -> ConfigError {
    let all = known
        .keys()
        .map(String::as_str)
        .chain(NAMED.iter().copied());
    let hint = suggestion(section, all, |c| format!("[{c}]"));
    ConfigError::Invalid(format!("unknown section [{section}] in {at}{hint}"))
}

/// The tables of a section keyed by names (`[clients.ID]`, `[operators.NAME]`), each with
/// only `allowed` keys.
fn check_named(
    tables: &toml::Table,
    section: &str,
    allowed: &[&str],
    at: &str,
) -> Result<(), ConfigError> {
    for (id, t) in tables {
        let toml::Value::Table(keys) = t else {
            return Err(ConfigError::Invalid(format!(
                "{at}: {section}.{id} must be a table ([{section}.{id}])"
            )));
        };
        for k in keys.keys() {
            if !allowed.contains(&k.as_str()) {
                let hint = suggestion(k, allowed.iter().copied(), |c| {
                    format!("{section}.{id}.{c}")
                });
                return Err(ConfigError::Invalid(format!(
                    "unknown setting {section}.{id}.{k} in {at}{hint}"
                )));
            }
        }
    }
    Ok(())
}

/// Refuses an unknown section or key in the TOML text of `file`.
pub fn check_file(text: &str, file: &Path) -> Result<(), ConfigError> {
    let at = file.display().to_string();
    let doc: toml::Table = toml::from_str(text)
        .map_err(|e: toml::de::Error| ConfigError::Invalid(format!("{at}: {e}")))?;
    let known = known();
    for (section, v) in &doc {
        let toml::Value::Table(keys) = v else {
            return Err(ConfigError::Invalid(format!(
                "{at}: `{section}` must be a section ([{section}]), not a single value{}",
                suggestion(section, known.keys().map(String::as_str), |c| format!(
                    "[{c}]"
                ))
            )));
        };
        match section.as_str() {
            // Checked by config::tool_table, config::resources, config::prompts and
            // config::schedules, table by table.
            "tools" | "resources" | "prompts" | "schedules" | "upstreams" => {}
            "clients" => check_named(keys, "clients", CLIENT_KEYS, &at)?,
            "operators" => check_named(keys, "operators", OPERATOR_KEYS, &at)?,
            s if known.contains_key(s) => {
                for k in keys.keys() {
                    if !known[s].contains(k) {
                        return Err(unknown_key(&known, s, k, &at));
                    }
                }
            }
            s => return Err(unknown_section(&known, s, &at)),
        }
    }
    Ok(())
}

/// Refuses an `MCPQ__SECTION__KEY` variable that names no setting.
pub fn check_env(vars: impl Iterator<Item = (String, String)>) -> Result<(), ConfigError> {
    let known = known();
    for (name, _) in vars {
        let Some(rest) = name.strip_prefix("MCPQ__") else {
            continue;
        };
        let at = format!("environment variable {name}");
        let parts: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
        match parts.as_slice() {
            [section, key] if known.contains_key(section.as_str()) => {
                if !known[section.as_str()].contains(key) {
                    return Err(unknown_key(&known, section, key, &at));
                }
            }
            [section, _id, key] if section == "clients" || section == "operators" => {
                let (allowed, what) = if section == "clients" {
                    (CLIENT_KEYS, "a client")
                } else {
                    (OPERATOR_KEYS, "an operator")
                };
                if !allowed.contains(&key.as_str()) {
                    let hint = suggestion(key, allowed.iter().copied(), |c| c.to_uppercase());
                    return Err(ConfigError::Invalid(format!(
                        "unknown setting in {at}: {what} has no key {key}{hint}"
                    )));
                }
            }
            [section, ..]
                if matches!(
                    section.as_str(),
                    "tools" | "resources" | "prompts" | "upstreams"
                ) =>
            {
                return Err(ConfigError::Invalid(format!(
                    "{at}: {section} are declared in the configuration file only ([{section}.NAME])"
                )))
            }
            [section, ..] if !known.contains_key(section.as_str()) => {
                return Err(unknown_section(&known, section, &at))
            }
            _ => {
                return Err(ConfigError::Invalid(format!(
                "{at} does not name a setting: use MCPQ__SECTION__KEY, e.g. MCPQ__SERVER__LISTEN"
            )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> String {
        check_file(text, Path::new("my.toml"))
            .map(|_| "ok".to_string())
            .unwrap_or_else(|e| e.to_string())
    }

    fn env(name: &str) -> String {
        check_env([(name.to_string(), "1".to_string())].into_iter())
            .map(|_| "ok".to_string())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn typos_are_refused_with_where_and_a_suggestion() {
        assert_eq!(
            file("[sever]\nlisten = \"x\"\n"),
            "unknown section [sever] in my.toml (did you mean [server]?)"
        );
        assert_eq!(
            file("[database]\npaht = \"x\"\n"),
            "unknown setting database.paht in my.toml (did you mean database.path?)"
        );
        assert_eq!(
            file("[clients.a]\nsecert = \"x\"\n"),
            "unknown setting clients.a.secert in my.toml (did you mean clients.a.secret?)"
        );
        assert_eq!(
            env("MCPQ__SERVER__LISTNE"),
            "unknown setting server.listne in environment variable MCPQ__SERVER__LISTNE (did you mean server.listen?)"
        );
        assert!(env("MCPQ__SEVRER__LISTEN").contains("did you mean [server]?"));
        assert!(env("MCPQ__TOOLS__X__URL").contains("configuration file only"));
        assert!(env("MCPQ__LISTEN").contains("unknown section [listen]"));
        assert!(env("MCPQ__SERVER__LISTEN__X").contains("does not name a setting"));
        assert!(file("[database]\nzzzzzzzz = 1\n").ends_with("in my.toml"));
    }

    #[test]
    fn every_real_setting_passes() {
        assert_eq!(file(DEFAULT_TOML), "ok");
        assert_eq!(
            file("[server]\nsecret_file = \"/x\"\n[clients.c]\nsecret_file = \"/y\"\nprevious_secret = \"z\"\n[tools.t]\nanything = 1\n"),
            "ok"
        );
        assert_eq!(env("MCPQ__SERVER__EMBEDDED_WORKERS"), "ok");
        assert_eq!(env("MCPQ__CLIENTS__C1__SECRET_FILE"), "ok");
        assert_eq!(env("MCPQ_CONFIG"), "ok");
    }
}
