//! `mcpq keys new|token`: fresh random secrets and `/mcp` bearer tokens (with the SHA-256
//! the configuration holds), printed in hex.
//!
//! It must not read the configuration or write anything but stdout.

use std::process::ExitCode;

use rand::RngCore;

use super::KeysCommand;

pub(super) fn keys(command: &KeysCommand) -> ExitCode {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    let key = hex::encode(key);
    println!("{key}");
    if let KeysCommand::Token = command {
        use sha2::Digest;
        println!("{}", hex::encode(sha2::Sha256::digest(key.as_bytes())));
    }
    ExitCode::SUCCESS
}
