//! `earshot recordings publish`, `fetch` and `serve`: replays published for peers, fetched from
//! them through a node of this command's own, and served to them.

use std::sync::Arc;

use anyhow::{Context as _, bail};
use earshot_node::event::{Event, ServedReplay};
use earshot_node::home::Home;
use earshot_node::identity::Identity;
use earshot_node::node::{Node, NodeConfig};
use earshot_node::recording::replay::{
    self, FetchEvent, FetchReport, FetchRequest, Holder, Replays,
};
use earshot_protocol::PeerKey;
use earshot_protocol::replay::{ManifestId, ReplayLink, ReplayManifest};
use multiaddr::{Multiaddr, Protocol};

use super::Progress;
use crate::Exit;
use crate::cmd::Context;
use crate::output::{print_event, say, shout};

/// Where replay nodes listen by default: any free QUIC port.
const ANY_QUIC: &str = "/ip4/0.0.0.0/udp/0/quic-v1";

pub(super) fn publish(ctx: &Context, home: &Home, id: &str) -> anyhow::Result<()> {
    let meta = home
        .recordings()
        .shown(home.recordings().find(id)?, home.identity().signing_key());
    let replays = Replays::open(home.store())?;
    let manifest = replays
        .publish(home.recordings(), &meta, home.identity().signing_key())
        .with_context(|| format!("publishing recording {}", meta.id.short()))?;
    let me = home.identity().peer_id();
    // Where this node can be reached: the addresses of the room, if it hosts it.
    let addrs: Vec<Multiaddr> = home
        .store()
        .room(&meta.room)?
        .map(|room| earshot_node::home::advertised_addrs(&room.listen))
        .unwrap_or_default()
        .into_iter()
        .map(|addr| addr.with(Protocol::P2p(me)))
        .collect();
    // A private room's recording: the link carries its key (never the holders).
    let key = home
        .recordings()
        .key(&meta.id, home.identity().signing_key())?;
    let link = ReplayLink {
        manifest: manifest.id(),
        recorder: manifest.recorder,
        addrs,
        key,
    };
    if ctx.json {
        print_event(&Event::Published {
            recording: meta.id,
            manifest: link.manifest,
            chunks: manifest.chunks.len(),
            bytes: manifest.total_bytes,
            addrs: link.addrs.clone(),
            link,
        });
    } else {
        say!(
            "Published \"{}\" ({} chunks, {} KiB) as replay {}",
            meta.title,
            manifest.chunks.len(),
            manifest.total_bytes / 1024,
            link.manifest
        );
        say!("Replay link:\n{link}");
        if link.addrs.is_empty() {
            say!(
                "This node's addresses are not known here: serve it with `earshot recordings \
                 serve` (or `earshot host`) and fetch with --from ADDRESS."
            );
        }
    }
    Ok(())
}

pub(super) fn fetch(
    ctx: &Context,
    home: &Arc<Home>,
    target: &str,
    from: Vec<Multiaddr>,
    listen: Vec<Multiaddr>,
) -> anyhow::Result<Exit> {
    let (manifest, recorder, holders, key) =
        if target.trim().to_ascii_lowercase().starts_with("earshot://") {
            match ReplayLink::decode(target) {
                Ok(link) => (
                    link.manifest,
                    Some(link.recorder),
                    Holder::of_link(&link)?,
                    link.key.clone(),
                ),
                Err(err) => {
                    shout!("earshot: {err}");
                    return Ok(Exit(2));
                }
            }
        } else {
            match target.parse::<ManifestId>() {
                Ok(id) => (id, None, Vec::new(), None),
                Err(err) => {
                    shout!("earshot: {target:?} is neither a replay link nor a manifest id: {err}");
                    return Ok(Exit(2));
                }
            }
        };
    let request = match fetch_request(manifest, recorder, holders, &from) {
        Ok(request) => request,
        Err(exit) => return Ok(exit),
    };
    let mut report = fetch_replay(ctx, home, request, listen, true)?;
    // A private room's replay: the key from the link is kept, sealed to this node, and opens
    // the title and names.
    if let Some(key) = key {
        let me = earshot_protocol::PeerKey::from(home.identity().signing_key());
        let recordings = home.recordings();
        recordings.keep_key(&report.recording.id, &key, &me, random32()?)?;
        report.recording = recordings.reveal(&report.recording.id, &key)?;
    }
    print_fetched(ctx, &report);
    Ok(Exit(0))
}

/// What to fetch: the holders a link names and those of `--from` (each must end in
/// `/p2p/PEER_ID`, else bad usage).
pub(super) fn fetch_request(
    manifest: ManifestId,
    recorder: Option<PeerKey>,
    mut holders: Vec<Holder>,
    from: &[Multiaddr],
) -> Result<FetchRequest, Exit> {
    for addr in from {
        let Some(Protocol::P2p(peer)) = addr.iter().last() else {
            shout!("earshot: --from {addr} must end in /p2p/PEER_ID");
            return Err(Exit(2));
        };
        Holder::add(&mut holders, peer, addr.clone());
    }
    Ok(FetchRequest {
        manifest,
        recorder,
        holders,
    })
}

/// Fetches a replay through a node of its own (so not while a running node holds the data
/// directory); `events`: print the fetch's progress (as events with `--json`).
pub(super) fn fetch_replay(
    ctx: &Context,
    home: &Arc<Home>,
    request: FetchRequest,
    listen: Vec<Multiaddr>,
    events: bool,
) -> anyhow::Result<FetchReport> {
    if ctx.shared.is_some() {
        bail!(
            "a running node holds this data directory: stop it first (or use another --home) to \
             fetch"
        );
    }
    let listen = if listen.is_empty() {
        vec![ANY_QUIC.parse()?]
    } else {
        listen
    };
    let replays = Replays::open(home.store())?;
    let identity = home.identity().clone();
    let json = ctx.json;
    let home = Arc::clone(home);
    crate::runtime::Runtime::new()?.run(async move {
        let node = spawn_node(identity, listen).await?;
        let bar = Arc::new(Progress::new(json, "Fetching"));
        let on_event = {
            let bar = Arc::clone(&bar);
            Arc::new(move |event: &FetchEvent| {
                if events || !json {
                    print_fetch_event(json, &bar, event);
                }
            })
        };
        let result = replay::fetch(&node, &replays, home.recordings(), request, on_event).await;
        bar.done();
        node.shutdown().await;
        anyhow::Ok(result?)
    })
}

/// One step of a fetch, as a JSON event or a line (or the progress bar) for people.
fn print_fetch_event(json: bool, bar: &Progress, event: &FetchEvent) {
    if json {
        print_event(&Event::from(event));
        return;
    }
    match event {
        FetchEvent::HolderFailed { peer, reason } => {
            shout!("! {peer} cannot serve this replay: {reason}");
        }
        FetchEvent::Manifest { title, held, .. } if *held > 0 => {
            shout!("Resuming \"{title}\" ({held} chunks already here)");
        }
        FetchEvent::Manifest { .. } => {}
        FetchEvent::BadManifest { from, reason } => {
            shout!("! {from} sent a manifest that is refused: {reason}");
        }
        FetchEvent::Chunk { done, total, .. } => {
            bar.show(*done as f64 / (*total).max(1) as f64);
        }
        FetchEvent::BadChunk {
            index,
            from,
            reason,
        } => {
            shout!("! {from} sent a bad chunk {index} ({reason}); fetching it from another holder");
        }
    }
}

fn print_fetched(ctx: &Context, report: &FetchReport) {
    let secs = report.elapsed.as_secs_f64();
    let rate = report.bytes as f64 / 1e6 / secs.max(1e-9);
    if ctx.json {
        print_event(&Event::Fetched {
            manifest: report.id,
            recording: report.recording.id,
            title: report.recording.title.clone(),
            chunks: report.manifest.chunks.len(),
            fetched: report.fetched,
            resumed: report.resumed,
            bad_chunks: report.bad_chunks,
            bytes: report.bytes,
            seconds: secs,
            mb_per_s: rate,
        });
    } else {
        say!(
            "Fetched \"{}\" as recording {} ({} chunks fetched{}{}, {:.1} MB in {:.2} s, {:.1} MB/s)",
            report.recording.title,
            report.recording.id.short(),
            report.fetched,
            if report.resumed > 0 {
                format!(", {} already here", report.resumed)
            } else {
                String::new()
            },
            if report.bad_chunks > 0 {
                format!(
                    ", {} bad chunks refused and fetched again",
                    report.bad_chunks
                )
            } else {
                String::new()
            },
            report.bytes as f64 / 1e6,
            secs,
            rate
        );
        say!(
            "Export it with `earshot recordings export {} FILE.opus`",
            report.recording.id.short()
        );
    }
}

pub(super) fn serve(ctx: &Context, home: &Arc<Home>, listen: Vec<Multiaddr>) -> anyhow::Result<()> {
    if ctx.shared.is_some() {
        bail!("this data directory is already served by a running node");
    }
    let listen = if listen.is_empty() {
        vec![ANY_QUIC.parse()?]
    } else {
        listen
    };
    let replays = Replays::open(home.store())?;
    let kept = replays.list()?;
    let identity = home.identity().clone();
    let home = Arc::clone(home);
    let json = ctx.json;
    crate::runtime::Runtime::new()?.run(async move {
        let node = spawn_node(identity, listen).await?;
        let serving = Arc::clone(&home);
        // Other commands on this data directory (say, `publish`) run through this node.
        let _control = earshot_node::control::serve(home.dir(), move |request| {
            crate::serve_command(Arc::clone(&serving), request)
        })?;
        let _server = node.serve_replays(replays)?;
        let me = node.peer_id();
        let addrs: Vec<Multiaddr> = node.dialable_addrs().await.unwrap_or_default();
        if json {
            print_event(&Event::Serving {
                peer_id: me,
                addrs: addrs.clone(),
                replays: kept
                    .iter()
                    .map(|kept| ServedReplay {
                        manifest: kept.id,
                        recording: kept.manifest.recording,
                        title: kept.manifest.title.clone(),
                        chunks: kept.manifest.chunks.len(),
                        held: kept.chunks_held,
                        link: link_for(&home, &kept.manifest, &addrs),
                    })
                    .collect(),
            });
        } else {
            say!("Serving {} replays as {me}", kept.len());
            for addr in &addrs {
                say!("  reachable at {addr}");
            }
            for kept in &kept {
                say!(
                    "  \"{}\" ({}/{} chunks): {}",
                    kept.manifest.title,
                    kept.chunks_held,
                    kept.manifest.chunks.len(),
                    link_for(&home, &kept.manifest, &addrs)
                );
            }
            say!("Ctrl-C stops.");
        }
        crate::runtime::stop_requested().await;
        node.shutdown().await;
        anyhow::Ok(())
    })
}

/// The link a holder prints for a replay it serves: with the key only if this node holds it
/// (it recorded the private room, or was given the key).
fn link_for(home: &Home, manifest: &ReplayManifest, addrs: &[Multiaddr]) -> ReplayLink {
    ReplayLink {
        manifest: manifest.id(),
        recorder: manifest.recorder,
        addrs: addrs.to_vec(),
        key: home
            .recordings()
            .key(&manifest.recording, home.identity().signing_key())
            .ok()
            .flatten(),
    }
}

async fn spawn_node(identity: Identity, listen: Vec<Multiaddr>) -> anyhow::Result<Node> {
    Ok(Node::spawn(
        identity,
        NodeConfig {
            listen,
            ..NodeConfig::default()
        },
    )
    .await?)
}

/// 32 random bytes from the system.
fn random32() -> anyhow::Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|err| anyhow::anyhow!("no randomness: {err}"))?;
    Ok(bytes)
}
