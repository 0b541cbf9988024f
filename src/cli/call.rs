//! `mcpq call`: signs one call, sends it, verifies the response's signature and prints
//! the response (exit 2 when it is an error).
//!
//! It must not interpret the result beyond `ok`: scripts read the printed response.

use std::process::ExitCode;

use super::{parse_args, AnyError, Target};
use crate::config::Settings;

pub(super) async fn call(
    settings: Settings,
    tool: &str,
    args: &str,
    target: &Target,
) -> Result<ExitCode, AnyError> {
    let args = parse_args(args)?;
    let mut client = crate::client::Client::connect(target.apply(settings.client)).await?;
    let env = client.envelope(tool, args);
    let (_status, resp) = client.send(&env).await?;
    println!("{}", resp.raw);
    if !resp.ok {
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}
