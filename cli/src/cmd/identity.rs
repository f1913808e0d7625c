//! `earshot init` and `earshot id`.

use anyhow::Context as _;
use earshot_node::identity::{Identity, InitOutcome};
use serde_json::json;

use super::Context;
use crate::Exit;
use crate::output::print_json;

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
            InitOutcome::Created => println!("Created a new identity in {}", dir.display()),
            InitOutcome::AlreadyExisted => println!(
                "An identity already exists in {} (left unchanged)",
                dir.display()
            ),
        }
        println!("PeerId: {}", identity.peer_id());
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
        println!("PeerId:     {}", identity.peer_id());
        println!("Public key: {}", identity.key());
        println!("Data dir:   {}", dir.display());
    }
    Ok(Exit(0))
}
