//! `earshot invite create|delegate|inspect`.

use std::collections::HashSet;
use std::io::Read;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use earshot_node::clock;
use earshot_protocol::capability::MAX_DELEGATION_DEPTH;
use earshot_protocol::{
    Audience, Grant, InviteLink, PeerKey, Presenter, Role, Timestamp, VerifyContext,
};
use serde_json::json;

use super::Context;
use crate::Exit;
use crate::output::{self, print_json};
use crate::output::{say, shout};
use crate::when::parse_expiry;

#[derive(Debug, Subcommand)]
pub enum InviteCommand {
    /// Issue an invite link for a room this node hosts.
    Create {
        /// Room id, a unique prefix of it, or the exact title.
        room: String,
        #[command(flatten)]
        grant: GrantArgs,
    },
    /// Issue a narrower invite from one you hold (it must allow delegation).
    Delegate {
        /// The invite link you hold (or - to read it from standard input).
        link: String,
        #[command(flatten)]
        grant: GrantArgs,
    },
    /// Show what a link grants and whether it is valid now. Exit 0 if valid, 1 if not, 2 if the
    /// link is malformed.
    Inspect {
        /// The invite link (or - to read it from standard input).
        link: String,
        /// Check the link as presented by this PeerId (for links bound to one person).
        #[arg(long = "as", value_name = "PEERID")]
        presenter: Option<String>,
        /// Check validity at another time instead of now: a duration from now (2h, 30d) or a
        /// UTC time (2026-12-01T10:00Z).
        #[arg(long, value_name = "WHEN")]
        at: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct GrantArgs {
    /// listener, speaker or moderator.
    #[arg(long)]
    role: Role,
    /// How long the link stays valid: a duration (2h, 7d) or a UTC time (2026-12-01T10:00Z).
    /// Default: 7 days for new invites, the parent's expiry for delegated ones.
    #[arg(long, value_name = "WHEN")]
    expires: Option<String>,
    /// Bind the link to one person's PeerId: nobody else can use it.
    #[arg(long = "for", value_name = "PEERID")]
    audience: Option<String>,
    /// How many times the holder may delegate it further (0-3). Default: 1 for moderators,
    /// else 0.
    #[arg(long, value_name = "N")]
    delegate: Option<u8>,
    /// Also print the link as a terminal QR code.
    #[arg(long)]
    qr: bool,
}

const DEFAULT_VALIDITY_MS: u64 = 7 * 24 * 3600 * 1000;

impl GrantArgs {
    fn grant(&self, now: Timestamp, default_expiry: Timestamp) -> anyhow::Result<Grant> {
        let expires_at = match &self.expires {
            Some(text) => parse_expiry(text, now)?,
            None => default_expiry,
        };
        let audience = match &self.audience {
            Some(text) => Audience::Bound(
                PeerKey::parse_any(text).with_context(|| format!("--for {text:?}"))?,
            ),
            None => Audience::Bearer,
        };
        let depth = self
            .delegate
            .unwrap_or(u8::from(self.role == Role::Moderator));
        if depth > MAX_DELEGATION_DEPTH {
            anyhow::bail!("--delegate {depth}: at most {MAX_DELEGATION_DEPTH}");
        }
        Ok(Grant {
            audience,
            role: self.role,
            not_before: now,
            expires_at,
            depth,
        })
    }
}

pub fn run(ctx: &Context, command: InviteCommand) -> anyhow::Result<Exit> {
    match command {
        InviteCommand::Create { room, grant } => {
            let home = ctx.open_home()?;
            let now = clock::now();
            let room = home.find_room(&room)?;
            let link = home.create_invite(
                &room,
                grant.grant(now, now.plus_millis(DEFAULT_VALIDITY_MS))?,
                now,
            )?;
            print_link(ctx, &link, grant.qr)?;
            Ok(Exit(0))
        }
        InviteCommand::Delegate { link, grant } => {
            let parent = match InviteLink::decode(&read_link(&link)?) {
                Ok(parent) => parent,
                Err(err) => {
                    shout!("earshot: {err}");
                    return Ok(Exit(2));
                }
            };
            let home = ctx.open_home()?;
            let now = clock::now();
            let child = home
                .delegate(
                    &parent,
                    grant.grant(now, parent.capability.expires_at)?,
                    now,
                )
                .context("cannot delegate this invite")?;
            print_link(ctx, &child, grant.qr)?;
            Ok(Exit(0))
        }
        InviteCommand::Inspect {
            link,
            presenter,
            at,
        } => {
            let now = clock::now();
            let at = at.map(|text| parse_expiry(&text, now)).transpose()?;
            inspect(ctx, &read_link(&link)?, presenter, at.unwrap_or(now))
        }
    }
}

fn read_link(arg: &str) -> anyhow::Result<String> {
    if arg != "-" {
        return Ok(arg.to_owned());
    }
    let mut text = String::new();
    std::io::stdin()
        .take(earshot_protocol::link::MAX_LINK_CHARS as u64 + 1)
        .read_to_string(&mut text)
        .context("reading the link from standard input")?;
    Ok(text)
}

fn print_link(ctx: &Context, link: &InviteLink, qr: bool) -> anyhow::Result<()> {
    let cap = &link.capability;
    if ctx.json {
        let mut value = json!({
            "link": link.encode(),
            "room": cap.room.to_string(),
            "role": cap.role.as_str(),
            "audience": output::audience_json(&cap.audience),
            "expires_at": cap.expires_at.to_string(),
            "delegation_depth": cap.depth,
            "id": cap.id().to_string(),
        });
        if qr {
            value["qr"] = json!(output::qr(link)?);
        }
        print_json(&value);
    } else {
        say!(
            "{} invite for room {}, {}, valid until {}:",
            cap.role,
            cap.room.short(),
            output::audience_text(&cap.audience),
            cap.expires_at
        );
        say!("{link}");
        if qr {
            say!("{}", output::qr(link)?);
        }
    }
    Ok(())
}

fn inspect(
    ctx: &Context,
    text: &str,
    presenter: Option<String>,
    at: Timestamp,
) -> anyhow::Result<Exit> {
    let link = match InviteLink::decode(text) {
        Ok(link) => link,
        Err(err) => {
            if ctx.json {
                print_json(
                    &json!({ "valid": false, "malformed": true, "reason": err.to_string() }),
                );
            } else {
                shout!("earshot: {err}");
            }
            return Ok(Exit(2));
        }
    };
    let presenter = match presenter {
        Some(text) => {
            Presenter::Key(PeerKey::parse_any(&text).with_context(|| format!("--as {text:?}"))?)
        }
        None => Presenter::Unchecked,
    };
    let cap = &link.capability;
    let revoked = HashSet::new();
    let verdict = cap.verify(&VerifyContext {
        room: cap.room,
        host: link.host,
        presenter,
        now: at,
        revoked: &revoked,
    });
    if ctx.json {
        print_json(&json!({
            "valid": verdict.is_ok(),
            "malformed": false,
            "reason": verdict.as_ref().err().map(ToString::to_string),
            "room": cap.room.to_string(),
            "host": output::peer(&link.host),
            "role": cap.role.as_str(),
            "audience": output::audience_json(&cap.audience),
            "not_before": cap.not_before.to_string(),
            "expires_at": cap.expires_at.to_string(),
            "delegation_depth": cap.depth,
            "id": cap.id().to_string(),
            "chain": output::chain_json(cap),
            "bootstrap": link.bootstrap.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "starts_at": link.starts_at.map(|at| at.to_string()),
        }));
    } else {
        say!("Invite to room {}", cap.room);
        say!("  host:       {}", output::peer(&link.host));
        say!("  role:       {}", cap.role);
        say!("  for:        {}", output::audience_text(&cap.audience));
        say!("  valid:      {} to {}", cap.not_before, cap.expires_at);
        match cap.depth {
            0 => say!("  delegation: none"),
            n => say!("  delegation: {n} more level(s)"),
        }
        for (index, link) in cap.chain().iter().enumerate() {
            let who = if index == 0 { "host" } else { "delegate" };
            say!(
                "  chain {}:    {} by {} {}",
                index + 1,
                link.role,
                who,
                output::peer(&link.issuer)
            );
        }
        for addr in &link.bootstrap {
            say!("  dial:       {addr}");
        }
        if let Some(starts_at) = link.starts_at {
            say!(
                "  begins:     {} (the link says)",
                crate::when::describe(starts_at, earshot_node::clock::now())
            );
        }
        match &verdict {
            Ok(_) => say!("  status:     valid now"),
            Err(err) => say!("  status:     NOT VALID: {err}"),
        }
    }
    Ok(Exit(if verdict.is_ok() { 0 } else { 1 }))
}
