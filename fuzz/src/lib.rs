//! The code under fuzz, compiled straight from the repository's sources (`src/`) rather
//! than through the `mcpq` crate, so that `cargo fuzz build` compiles and instruments
//! these modules and the handful of crates they use, not the whole daemon.
//!
//! This file is the only place the fuzz crate names a source file of the main crate:
//! when a module under test is renamed, moved or split, change its `#[path]` (and the
//! module name, which must stay what the sources call it via `crate::…`) here, and
//! point `envelope_api` at the envelope module. The targets only use the names below.
//! A module that starts to `use crate::<something>` not declared here (config, tokio
//! code, …) will not compile in this crate: keep the untrusted-input parsers free of
//! such imports, or declare the new foundation module here too.
//!
//! It must not hold fuzzing logic or copies of the sources; targets live in
//! `fuzz_targets/`.

#[path = "../../src/json.rs"]
pub mod json;

#[path = "../../src/hex.rs"]
pub mod hex;

#[path = "../../src/envelope.rs"]
pub mod envelope;

/// The envelope (wire contract) module, under the one name the targets use.
pub use envelope as envelope_api;
