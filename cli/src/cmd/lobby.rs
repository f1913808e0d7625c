//! `earshot rooms`: live public rooms, as announced on the lobby.

use anyhow::bail;
use clap::Args;
use earshot_node::identity::Identity;
use earshot_node::node::{Node, NodeConfig};
use multiaddr::{Multiaddr, Protocol};
use serde_json::json;

use super::Context;
use crate::Exit;
use crate::output::{one_line, print_json, say};

#[derive(Debug, Args)]
pub struct RoomsArgs {
    /// A node to ask, as a multiaddr ending in /p2p/<PeerId> (repeatable): any node in a public
    /// room, or a community relay.
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<Multiaddr>,
}

pub fn rooms(ctx: &Context, args: RoomsArgs) -> anyhow::Result<Exit> {
    if args.bootstrap.is_empty() {
        bail!("no node to ask: pass --bootstrap /ip4/…/udp/…/quic-v1/p2p/<PeerId>");
    }
    let mut peers = Vec::new();
    for addr in &args.bootstrap {
        let Some(Protocol::P2p(peer)) = addr.iter().last() else {
            bail!("--bootstrap {addr}: add /p2p/<PeerId> at the end");
        };
        peers.push((peer, addr.clone()));
    }
    // A throwaway identity: browsing the lobby says nothing about who you are, and works from the
    // same data directory as a node you host.
    let identity = Identity::ephemeral()?;
    let found = crate::runtime::Runtime::new()?.run(async {
        let node = Node::spawn(
            identity,
            NodeConfig {
                listen: vec![
                    "/ip4/0.0.0.0/udp/0/quic-v1"
                        .parse()
                        .expect("valid multiaddr"),
                ],
                ..NodeConfig::default()
            },
        )
        .await?;
        let mut found = Vec::new();
        let mut errors = Vec::new();
        for (peer, addr) in peers {
            match node.query_lobby(peer, vec![addr.clone()]).await {
                Ok(announcements) => found.extend(announcements),
                Err(err) => errors.push(format!("{addr}: {err}")),
            }
        }
        node.shutdown().await;
        if found.is_empty() && !errors.is_empty() {
            bail!("no node answered: {}", errors.join("; "));
        }
        anyhow::Ok(found)
    })?;
    let now = earshot_node::clock::now();
    // One entry per room (by host and id), a live announcement before one ahead of the start.
    let mut rooms = found;
    rooms.sort_by_key(|a| (a.descriptor.host, a.descriptor.id, a.ahead(now)));
    rooms.dedup_by_key(|a| (a.descriptor.host, a.descriptor.id));
    let (mut upcoming, mut rooms): (Vec<_>, Vec<_>) = rooms.into_iter().partition(|a| a.ahead(now));
    rooms.sort_by_key(|a| std::cmp::Reverse(a.listeners));
    upcoming.sort_by_key(|a| a.descriptor.starts_at());
    if ctx.json {
        let entry = |a: &earshot_protocol::snapshot::Announcement, upcoming: bool| {
            json!({
                "room": a.descriptor.id.to_string(),
                "title": a.descriptor.title,
                "host": a.descriptor.host.as_peer_id().to_string(),
                "speakers": a.speakers,
                "listeners": a.listeners,
                "upcoming": upcoming,
                "starts_at": a.descriptor.starts_at().map(|at| at.to_string()),
                "about": a.descriptor.schedule.as_ref().map(|s| s.about.clone()),
                "link": a.link().encode(),
                "replays": a.replays.iter().map(|r| json!({
                    "title": r.title,
                    "bytes": r.bytes,
                    "manifest": r.manifest.to_string(),
                    "link": r.link().encode(),
                })).collect::<Vec<_>>(),
            })
        };
        print_json(
            &rooms
                .iter()
                .map(|a| entry(a, false))
                .chain(upcoming.iter().map(|a| entry(a, true)))
                .collect(),
        );
        return Ok(Exit(0));
    }
    if rooms.is_empty() {
        say!("No public rooms are live right now.");
    }
    for a in &rooms {
        say!(
            "\"{}\"  {} listening  on stage: {}",
            one_line(&a.descriptor.title),
            a.listeners,
            one_line(&a.speakers.join(", "))
        );
        if let Some(starts_at) = a.descriptor.starts_at().filter(|at| *at > now) {
            say!("  begins {}", crate::when::describe(starts_at, now));
        }
        say!("  {}", a.link());
        for replay in &a.replays {
            say!(
                "  ▶ replay \"{}\" ({} KiB): earshot recordings fetch {}",
                one_line(&replay.title),
                replay.bytes / 1024,
                replay.link().encode()
            );
        }
    }
    if !upcoming.is_empty() {
        say!();
        say!("Upcoming:");
    }
    for a in &upcoming {
        let starts_at = a.descriptor.starts_at().unwrap_or(a.expires_at);
        say!(
            "\"{}\"  begins {}  host: {}",
            one_line(&a.descriptor.title),
            crate::when::describe(starts_at, now),
            one_line(&a.speakers.join(", "))
        );
        if let Some(schedule) = a
            .descriptor
            .schedule
            .as_ref()
            .filter(|s| !s.about.is_empty())
        {
            say!("  {}", one_line(&schedule.about));
        }
        say!("  {}", a.link());
    }
    Ok(Exit(0))
}
