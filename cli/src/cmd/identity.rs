//! `earshot init` and `earshot id`.

use anyhow::Context as _;
use earshot_node::identity::{Identity, InitOutcome};
use serde_json::json;

use super::Context;
use crate::Exit;
use crate::output::print_json;
use crate::output::say;

pub fn init(ctx: &Context) -> anyhow::Result<Exit> {
    let dir = ctx.home_dir()?;
    let (identity, outcome) =
        Identity::init(&dir).with_context(|| format!("initialising {}", dir.display()))?;
    if ctx.json {
        print_json(&json!({
            "created": outcome == InitOutcome::Created,
            "peer_id": identity.peer_id().to_string(),
            "home": dir.display().to_string(),
        }));
    } else {
        match outcome {
            InitOutcome::Created => say!("Created a new identity in {}", dir.display()),
            InitOutcome::AlreadyExisted => say!(
                "An identity already exists in {} (left unchanged)",
                dir.display()
            ),
        }
        say!("PeerId: {}", identity.peer_id());
    }
    Ok(Exit(0))
}

pub fn id(ctx: &Context) -> anyhow::Result<Exit> {
    let dir = ctx.home_dir()?;
    let identity = Identity::load(&dir)?;
    if ctx.json {
        print_json(&json!({
            "peer_id": identity.peer_id().to_string(),
            "public_key": identity.key().to_string(),
            "home": dir.display().to_string(),
        }));
    } else {
        say!("PeerId:     {}", identity.peer_id());
        say!("Public key: {}", identity.key());
        say!("Data dir:   {}", dir.display());
    }
    Ok(Exit(0))
}
