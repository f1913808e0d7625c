//! `earshot recordings`: what this node recorded, exported to files, played, deleted; replays:
//! published for peers (`publish`), served (`serve`) and fetched from them (`fetch`); and any
//! recording's frames checked against their speakers' proofs (`verify`).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use earshot_node::audio::io::Output;
use earshot_node::recording::export::{self, ExportError};
use earshot_node::recording::store::RecordingMeta;
use earshot_node::recording::verify::Verification;
use earshot_protocol::PeerKey;
use earshot_protocol::frame::SpeakerId;
use earshot_protocol::replay::ContentFormat;
use earshot_protocol::replay::verify::{SpeakerReport, Tally};
use serde_json::{Value, json};

use earshot_node::event::{Event, ServedReplay};
use earshot_node::home::Home;
use earshot_node::identity::Identity;
use earshot_node::node::{Node, NodeConfig};
use earshot_node::recording::replay::{
    self, FetchEvent, FetchReport, FetchRequest, Holder, Replays,
};
use earshot_protocol::replay::{ManifestId, ReplayLink, ReplayManifest};
use multiaddr::{Multiaddr, Protocol};

use super::Context;
use crate::Exit;
use crate::output::{print_event, print_json, say, shout};

#[derive(Debug, Subcommand)]
pub enum RecordingsCommand {
    /// The recordings kept here, oldest first.
    List,
    /// One recording: room, times, speakers, size.
    Show {
        /// A recording id, or a unique start of it.
        id: String,
    },
    /// Writes a recording to FILE.opus (Ogg Opus) or FILE.wav: all speakers mixed, or one.
    Export {
        id: String,
        file: PathBuf,
        /// Only this speaker (a display name from `show`, or the start of a PeerId).
        #[arg(long, value_name = "PEER")]
        speaker: Option<String>,
    },
    /// Plays a recording to the speaker (or to --output FILE.wav).
    Play {
        id: String,
        #[arg(long, default_value = "speaker", value_name = "speaker|FILE.wav")]
        output: Output,
    },
    /// Deletes a recording and its audio.
    Delete { id: String },
    /// Makes a recording fetchable by peers: signs a manifest of its chunks and prints a replay
    /// link. While this node hosts the recording's room, the room is told.
    Publish { id: String },
    /// Fetches a replay from the peers holding it (a replay link, or a manifest id with
    /// --from), verifying every chunk; an interrupted fetch resumes. The recording then joins
    /// the local ones, and this node can serve it too.
    Fetch {
        /// `earshot://replay/…`, or a manifest id.
        target: String,
        /// A node that holds the replay, `…/p2p/PEER_ID` (repeatable).
        #[arg(long, value_name = "MULTIADDR")]
        from: Vec<Multiaddr>,
        /// Where this node listens while fetching. Default: any free QUIC port.
        #[arg(long, value_name = "MULTIADDR")]
        listen: Vec<Multiaddr>,
    },
    /// Checks that every frame of a recording is what its speaker said: each frame against the
    /// proof its speaker signed, with the speakers' keys as the recording names them (printed,
    /// to compare with the people you know). Frames the recorder left out cannot be noticed.
    ///
    /// A replay link is fetched first, as `fetch` does, unless it is complete here already.
    /// Exit code 0: every frame verified (or there are none); 1: a frame does not match its
    /// speaker's proof, or has none (its speaker has no key here, or the recording was kept
    /// before frames carried proofs), or a proof's signature is bad, or the check could not
    /// run; 2: a malformed link or address.
    Verify {
        /// A recording id (or a unique start of it), or `earshot://replay/…`.
        target: String,
        /// With a replay link: a node that holds it, `…/p2p/PEER_ID` (repeatable).
        #[arg(long, value_name = "MULTIADDR")]
        from: Vec<Multiaddr>,
        /// With a replay link: where this node listens while fetching. Default: any free QUIC
        /// port.
        #[arg(long, value_name = "MULTIADDR")]
        listen: Vec<Multiaddr>,
    },
    /// Serves every published and fetched replay kept here until Ctrl-C or SIGTERM.
    Serve {
        /// Where to listen (repeatable). Default: any free QUIC port on all interfaces.
        #[arg(long, value_name = "MULTIADDR")]
        listen: Vec<Multiaddr>,
    },
}

pub fn run(ctx: &Context, command: RecordingsCommand) -> anyhow::Result<Exit> {
    let home = ctx.open_home()?;
    let recordings = home.recordings();
    match command {
        RecordingsCommand::List => {
            let all = recordings.list()?;
            if ctx.json {
                print_json(&Value::Array(all.iter().map(meta_json).collect()));
            } else if all.is_empty() {
                say!(
                    "No recordings yet (a room records with `room new --record` or /record start)."
                );
            } else {
                say!(
                    "{:<10} {:<24} {:<20} {:>9} {:>8}  state",
                    "id",
                    "title",
                    "started",
                    "length",
                    "speakers"
                );
                for meta in &all {
                    say!(
                        "{:<10} {:<24} {:<20} {:>9} {:>8}  {}",
                        meta.id.short(),
                        truncate(&meta.title, 24),
                        meta.started_at
                            .to_string()
                            .chars()
                            .take(20)
                            .collect::<String>(),
                        length(meta),
                        meta.speakers.len(),
                        meta.state.as_str()
                    );
                }
            }
        }
        RecordingsCommand::Show { id } => {
            let meta = recordings.find(&id)?;
            if ctx.json {
                print_json(&meta_json(&meta));
            } else {
                say!("Recording {} of \"{}\"", meta.id, meta.title);
                say!("  room:     {}", meta.room);
                say!("  host:     {}", meta.host.as_peer_id());
                say!(
                    "  started:  {}{}",
                    meta.started_at,
                    meta.ended_at
                        .map(|end| format!(", ended {end}"))
                        .unwrap_or_default()
                );
                say!("  length:   {}", length(&meta));
                say!("  state:    {}", state_text(&meta));
                say!(
                    "  audio:    {} frames, {} KiB of Opus{}",
                    meta.frames,
                    meta.bytes / 1024,
                    if meta.dropped > 0 {
                        format!(
                            " ({} frames the recorder could not keep up with)",
                            meta.dropped
                        )
                    } else {
                        String::new()
                    }
                );
                for info in meta.speakers.values() {
                    say!(
                        "  speaker:  {:<16} {} ({:.1} s)",
                        info.name,
                        info.key
                            .map(|k| k.as_peer_id().to_string())
                            .unwrap_or_default(),
                        info.frames as f64 * 0.02
                    );
                }
            }
        }
        RecordingsCommand::Export { id, file, speaker } => {
            let meta = recordings.find(&id)?;
            let speaker = speaker.map(|who| find_speaker(&meta, &who)).transpose()?;
            let path = ctx.path(&file);
            let bar = Progress::new(ctx.json, &format!("Exporting to {}", path.display()));
            let exported = export::export(recordings, &meta, &path, speaker, |done| bar.show(done))
                .map_err(|err| explain(err, &path))?;
            bar.done();
            if ctx.json {
                print_event(&Event::Exported {
                    recording: meta.id,
                    file: path.display().to_string(),
                    seconds: exported.samples as f64 / 48_000.0,
                    bytes: exported.bytes,
                });
            } else {
                say!(
                    "Wrote {} ({:.1} s, {} KiB)",
                    path.display(),
                    exported.samples as f64 / 48_000.0,
                    exported.bytes / 1024
                );
            }
        }
        RecordingsCommand::Play { id, output } => {
            let meta = recordings.find(&id)?;
            match output {
                Output::Wav(file) => {
                    let path = ctx.path(&file);
                    export::export(recordings, &meta, &path, None, |_| {})
                        .map_err(|err| explain(err, &path))?;
                    say!("Wrote {}", path.display());
                }
                Output::Null => {
                    export::render(recordings, &meta, None, |_| Ok(()), |_| {})?;
                }
                Output::Speaker(name) => {
                    let (_playback, sink) = earshot_node::audio::device::open_playback(
                        name.as_deref(),
                    )
                    .context("cannot play: use --output FILE.wav to write the recording instead")?;
                    if !ctx.json {
                        say!(
                            "Playing \"{}\" ({}); Ctrl-C stops.",
                            meta.title,
                            length(&meta)
                        );
                    }
                    export::render(
                        recordings,
                        &meta,
                        None,
                        |chunk| {
                            sink.push(chunk).map_err(|err| ExportError::File {
                                path: PathBuf::from("the speaker"),
                                source: std::io::Error::other(err.to_string()),
                            })
                        },
                        |_| {},
                    )?;
                }
            }
        }
        RecordingsCommand::Publish { id } => publish(ctx, &home, &id)?,
        RecordingsCommand::Fetch {
            target,
            from,
            listen,
        } => return fetch(ctx, &home, &target, from, listen),
        RecordingsCommand::Serve { listen } => serve(ctx, &home, listen)?,
        RecordingsCommand::Verify {
            target,
            from,
            listen,
        } => return verify(ctx, &home, &target, from, listen),
        RecordingsCommand::Delete { id } => {
            let meta = recordings.find(&id)?;
            recordings.delete(&meta.id)?;
            if ctx.json {
                print_event(&Event::Deleted { recording: meta.id });
            } else {
                say!(
                    "Deleted recording {} of \"{}\"",
                    meta.id.short(),
                    meta.title
                );
            }
        }
    }
    Ok(Exit(0))
}

/// A speaker of `meta` by display name (case-insensitive) or the start of a PeerId.
fn find_speaker(meta: &RecordingMeta, who: &str) -> anyhow::Result<SpeakerId> {
    let matches: Vec<u32> = meta
        .speakers
        .iter()
        .filter(|(_, info)| {
            info.name.eq_ignore_ascii_case(who)
                || info
                    .key
                    .is_some_and(|key: PeerKey| key.as_peer_id().to_string().starts_with(who))
        })
        .map(|(id, _)| *id)
        .collect();
    match matches.as_slice() {
        [id] => Ok(SpeakerId(*id)),
        [] => bail!(
            "nobody called {who:?} speaks in this recording (see `earshot recordings show {}`)",
            meta.id.short()
        ),
        _ => bail!("{who:?} matches several speakers; use more of their PeerId"),
    }
}

fn explain(err: ExportError, path: &std::path::Path) -> anyhow::Error {
    anyhow::Error::new(err).context(format!("exporting to {}", path.display()))
}

fn meta_json(meta: &RecordingMeta) -> Value {
    json!({
        "id": meta.id.to_string(),
        "room": meta.room.to_string(),
        "title": meta.title,
        "host": meta.host.as_peer_id().to_string(),
        "started_at": meta.started_at.to_string(),
        "ended_at": meta.ended_at.map(|t| t.to_string()),
        "state": meta.state.as_str(),
        "failure": match &meta.state {
            earshot_node::recording::store::RecordingState::Failed(reason) => Some(reason.clone()),
            _ => None,
        },
        "seconds": meta.duration().as_secs_f64(),
        "frames": meta.frames,
        "bytes": meta.bytes,
        "dropped": meta.dropped,
        "speakers": meta.speakers.iter().map(|(id, info)| json!({
            "speaker_id": format!("{id:08x}"),
            "peer_id": info.key.map(|k| k.as_peer_id().to_string()),
            "name": info.name,
            "seconds": info.frames as f64 * 0.02,
        })).collect::<Vec<_>>(),
    })
}

fn state_text(meta: &RecordingMeta) -> String {
    match &meta.state {
        earshot_node::recording::store::RecordingState::Failed(reason) => {
            format!("failed ({reason}); what was written is kept")
        }
        earshot_node::recording::store::RecordingState::Interrupted => {
            "interrupted (the node stopped mid-recording); kept up to its last second".into()
        }
        state => state.as_str().into(),
    }
}

fn length(meta: &RecordingMeta) -> String {
    let secs = meta.duration().as_secs();
    format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(max - 1).collect();
        cut.push('…');
        cut
    }
}

/// A progress line on a terminal (nothing otherwise).
struct Progress {
    on: bool,
    what: String,
}

impl Progress {
    fn new(json: bool, what: &str) -> Self {
        Self {
            on: !json && std::io::stderr().is_terminal(),
            what: what.to_owned(),
        }
    }

    fn show(&self, done: f64) {
        if self.on {
            let width = 30;
            let filled = (done * f64::from(width)).round() as usize;
            eprint!(
                "\r{} [{}{}] {:>3.0}%",
                self.what,
                "#".repeat(filled),
                " ".repeat(width as usize - filled.min(width as usize)),
                done * 100.0
            );
            let _ = std::io::stderr().flush();
        }
    }

    fn done(&self) {
        if self.on {
            eprintln!();
        }
    }
}

/// Where replay nodes listen by default: any free QUIC port.
const ANY_QUIC: &str = "/ip4/0.0.0.0/udp/0/quic-v1";

fn publish(ctx: &Context, home: &Home, id: &str) -> anyhow::Result<()> {
    let meta = home.recordings().find(id)?;
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
    let link = ReplayLink {
        manifest: manifest.id(),
        recorder: manifest.recorder,
        addrs,
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

fn fetch(
    ctx: &Context,
    home: &Arc<Home>,
    target: &str,
    from: Vec<Multiaddr>,
    listen: Vec<Multiaddr>,
) -> anyhow::Result<Exit> {
    let (manifest, recorder, holders) =
        if target.trim().to_ascii_lowercase().starts_with("earshot://") {
            match ReplayLink::decode(target) {
                Ok(link) => (link.manifest, Some(link.recorder), Holder::of_link(&link)?),
                Err(err) => {
                    shout!("earshot: {err}");
                    return Ok(Exit(2));
                }
            }
        } else {
            match target.parse::<ManifestId>() {
                Ok(id) => (id, None, Vec::new()),
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
    let report = fetch_replay(ctx, home, request, listen, true)?;
    print_fetched(ctx, &report);
    Ok(Exit(0))
}

/// What to fetch: the holders a link names and those of `--from` (each must end in
/// `/p2p/PEER_ID`, else bad usage).
fn fetch_request(
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
fn fetch_replay(
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

fn verify(
    ctx: &Context,
    home: &Arc<Home>,
    target: &str,
    from: Vec<Multiaddr>,
    listen: Vec<Multiaddr>,
) -> anyhow::Result<Exit> {
    let recordings = home.recordings();
    let id = if target.trim().to_ascii_lowercase().starts_with("earshot://") {
        let link = match ReplayLink::decode(target) {
            Ok(link) => link,
            Err(err) => {
                shout!("earshot: {err}");
                return Ok(Exit(2));
            }
        };
        let replays = Replays::open(home.store())?;
        let kept = match replays.manifest(&link.manifest)? {
            Some(manifest) if manifest.recorder == link.recorder => {
                recordings.get(&manifest.recording)?
            }
            _ => None,
        };
        match kept {
            Some(meta) => meta.id,
            None => {
                let request = match fetch_request(
                    link.manifest,
                    Some(link.recorder),
                    Holder::of_link(&link)?,
                    &from,
                ) {
                    Ok(request) => request,
                    Err(exit) => return Ok(exit),
                };
                let report = fetch_replay(ctx, home, request, listen, false)?;
                if !ctx.json {
                    say!(
                        "Fetched \"{}\" as recording {}",
                        report.recording.title,
                        report.recording.id.short()
                    );
                }
                report.recording.id
            }
        }
    } else {
        if !from.is_empty() || !listen.is_empty() {
            shout!("earshot: --from and --listen go with a replay link, not a recording id");
            return Ok(Exit(2));
        }
        recordings.find(target)?.id
    };
    let verification = recordings
        .verify(&id)
        .with_context(|| format!("verifying recording {}", id.short()))?;
    if ctx.json {
        print_json(&verification_json(&verification));
    } else {
        print_verification(&verification);
    }
    Ok(Exit(if verification.is_verified() { 0 } else { 1 }))
}

/// A speaker's display name and PeerId, as the recording names them.
fn speaker_label(meta: &RecordingMeta, speaker: &SpeakerReport) -> (String, Option<String>) {
    let name = meta
        .speakers
        .get(&speaker.speaker)
        .map(|info| info.name.clone())
        .unwrap_or_else(|| format!("speaker {:08x}", speaker.speaker));
    (name, speaker.key.map(|key| key.as_peer_id().to_string()))
}

/// What went wrong with some frames, or nothing: "3 without a proof, 1 altered".
fn problems(tally: &Tally) -> Vec<String> {
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut out = Vec::new();
    if tally.forged > 0 {
        out.push(plural(
            tally.forged,
            "frame does not match its speaker's proof (altered)",
            "frames do not match their speaker's proofs (altered)",
        ));
    }
    if tally.unproven > 0 {
        out.push(plural(
            tally.unproven,
            "frame has no proof",
            "frames have no proof",
        ));
    }
    if tally.bad_proofs > 0 {
        out.push(plural(
            tally.bad_proofs,
            "proof is not signed by its speaker",
            "proofs are not signed by their speaker",
        ));
    }
    out
}

fn print_verification(verification: &Verification) {
    let meta = &verification.meta;
    let report = &verification.report;
    say!(
        "Recording {} of \"{}\", recorded by {}",
        meta.id.short(),
        meta.title,
        meta.recorder.as_peer_id()
    );
    for speaker in &report.speakers {
        let (name, peer) = speaker_label(meta, speaker);
        let tally = &speaker.tally;
        let mut line = format!(
            "  {:<16} {:<52}  verified {} of {} frames",
            name,
            peer.unwrap_or_else(|| "(no key: its frames cannot be checked)".into()),
            tally.verified,
            tally.frames
        );
        let problems = problems(tally);
        if !problems.is_empty() {
            line.push_str(&format!(": {}", problems.join(", ")));
        }
        say!("{line}");
    }
    if report.others.frames > 0 {
        say!(
            "  {} frames of {}+ other speakers without keys: cannot be checked",
            report.others.frames,
            earshot_protocol::replay::verify::MAX_VOICES
        );
    }
    let total = report.total();
    if verification.format == ContentFormat::Unauthenticated {
        say!(
            "NOT VERIFIED: this recording was kept before frames carried their speakers' proofs \
             (recorded by an older earshot, or fetched as a version 1 replay); none of its {} \
             frames can be checked",
            total.frames
        );
    } else if verification.is_verified() && total.frames == 0 {
        say!("VERIFIED: the recording holds no frames, so nothing contradicts it");
    } else if verification.is_verified() {
        say!(
            "VERIFIED: all {} frames match proofs signed by the speakers' keys above",
            total.frames
        );
    } else {
        say!(
            "NOT VERIFIED: {} of {} frames verified; {}",
            total.verified,
            total.frames,
            problems(&total).join(", ")
        );
    }
}

fn tally_json(tally: &Tally) -> Value {
    json!({
        "frames": tally.frames,
        "verified": tally.verified,
        "unproven": tally.unproven,
        "forged": tally.forged,
        "proofs": tally.proofs,
        "bad_proofs": tally.bad_proofs,
    })
}

fn verification_json(verification: &Verification) -> Value {
    let meta = &verification.meta;
    let speakers: Vec<Value> = verification
        .report
        .speakers
        .iter()
        .map(|speaker| {
            let (name, peer) = speaker_label(meta, speaker);
            json!({
                "speaker_id": format!("{:08x}", speaker.speaker),
                "name": name,
                "peer_id": peer,
                "verified": speaker.tally.is_verified(),
                "tally": tally_json(&speaker.tally),
            })
        })
        .collect();
    json!({
        "recording": meta.id.to_string(),
        "title": meta.title,
        "room": meta.room.to_string(),
        "recorder": meta.recorder.as_peer_id().to_string(),
        "format": match verification.format {
            ContentFormat::Authenticated => "authenticated",
            ContentFormat::Unauthenticated => "unauthenticated",
        },
        "verified": verification.is_verified(),
        "total": tally_json(&verification.report.total()),
        "others": tally_json(&verification.report.others),
        "speakers": speakers,
    })
}

/// Holders from a replay link: each address ending in `/p2p/…` is that node's, the others the
/// recorder's.
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

fn serve(ctx: &Context, home: &Arc<Home>, listen: Vec<Multiaddr>) -> anyhow::Result<()> {
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
                        link: link_for(&kept.manifest, &addrs),
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
                    link_for(&kept.manifest, &addrs)
                );
            }
            say!("Ctrl-C stops.");
        }
        crate::runtime::stop_requested().await;
        node.shutdown().await;
        anyhow::Ok(())
    })
}

fn link_for(manifest: &ReplayManifest, addrs: &[Multiaddr]) -> ReplayLink {
    ReplayLink {
        manifest: manifest.id(),
        recorder: manifest.recorder,
        addrs: addrs.to_vec(),
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
