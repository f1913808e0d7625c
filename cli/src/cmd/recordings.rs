//! `earshot recordings`: what this node recorded, exported to files, played, deleted; replays:
//! published for peers (`publish`), served (`serve`) and fetched from them (`fetch`); and any
//! recording's frames checked against their speakers' proofs (`verify`).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use earshot_node::audio::io::Output;
use earshot_node::event::Event;
use earshot_node::recording::export::{self, ExportError};
use earshot_node::recording::store::RecordingMeta;
use earshot_protocol::PeerKey;
use earshot_protocol::frame::SpeakerId;
use multiaddr::Multiaddr;
use serde_json::{Value, json};

use super::Context;
use crate::Exit;
use crate::output::{one_line, print_event, print_json, say};

mod fetch;
mod verify;

use fetch::{fetch, publish, serve};
use verify::verify;

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
    // A private recording's title and names are sealed at rest: shown opened, where this node
    // holds its key.
    let me = home.identity().signing_key();
    match command {
        RecordingsCommand::List => {
            let all: Vec<RecordingMeta> = recordings
                .list()?
                .into_iter()
                .map(|meta| recordings.shown(meta, me))
                .collect();
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
                        truncate(&one_line(&meta.title), 24),
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
            let meta = recordings.shown(recordings.find(&id)?, me);
            let consents = recordings.consents(&meta.id)?;
            let supports = recordings.supports(&meta.id)?;
            if ctx.json {
                let mut json = meta_json(&meta);
                json["consents"] = consents_json(&consents);
                json["supports"] = supports
                    .iter()
                    .map(|support| {
                        json!({
                            "peer_id": support.supporter.as_peer_id().to_string(),
                            "name": support.name,
                            "amount": support.amount,
                            "unit": support.unit,
                            "note": support.note,
                            "at": support.at.to_string(),
                            "verified": support.verifies(),
                            "confirmed": support.confirmed_by(&meta.host),
                        })
                    })
                    .collect();
                print_json(&json);
            } else {
                say!("Recording {} of \"{}\"", meta.id, one_line(&meta.title));
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
                        one_line(&info.name),
                        info.key
                            .map(|k| k.as_peer_id().to_string())
                            .unwrap_or_default(),
                        info.frames as f64 * 0.02
                    );
                }
                for support in &supports {
                    say!(
                        "  support:  {:<16} {} {} at {}{}{}{}",
                        one_line(&support.name),
                        support.amount,
                        one_line(&support.unit),
                        support.at,
                        if support.note.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", one_line(&support.note))
                        },
                        if support.verifies() {
                            " (signed)"
                        } else {
                            " (its signature does not verify)"
                        },
                        if support.confirmed_by(&meta.host) {
                            ", confirmed by the host"
                        } else {
                            ""
                        }
                    );
                }
                for consent in &consents {
                    say!(
                        "  agreed:   {:<16} {} at {}, to the recording from {}{}",
                        one_line(&consent.name),
                        consent.member.as_peer_id(),
                        consent.at,
                        consent.since,
                        if consent.verifies() {
                            " (signed)"
                        } else {
                            " (its signature does not verify)"
                        }
                    );
                }
            }
        }
        RecordingsCommand::Export { id, file, speaker } => {
            let meta = recordings.shown(recordings.find(&id)?, me);
            let speaker = speaker.map(|who| find_speaker(&meta, &who)).transpose()?;
            let path = ctx.path(&file);
            let keys = keychain(&home, &meta)?;
            let bar = Progress::new(ctx.json, &format!("Exporting to {}", path.display()));
            let exported =
                export::export(recordings, &meta, keys.as_ref(), &path, speaker, |done| {
                    bar.show(done)
                })
                .map_err(|err| explain(err, &path))?;
            bar.done();
            if ctx.json {
                print_event(&Event::Exported {
                    recording: meta.id,
                    file: path.display().to_string(),
                    seconds: exported.samples as f64 / 48_000.0,
                    bytes: exported.bytes,
                    kept_packets: exported.kept,
                    studio_frames: exported.from_studio,
                });
            } else {
                say!(
                    "Wrote {} ({:.1} s, {} KiB{})",
                    path.display(),
                    exported.samples as f64 / 48_000.0,
                    exported.bytes / 1024,
                    if exported.kept > 0 {
                        let all = exported.samples.div_ceil(960).max(1);
                        format!(
                            "; {} % as the speakers said it, not encoded again",
                            exported.kept * 100 / all
                        )
                    } else {
                        String::new()
                    }
                );
                if exported.from_studio > 0 {
                    say!(
                        "  {:.1} s from the speakers' studio tracks (their voices as recorded \
                         at their microphones)",
                        exported.from_studio as f64 * 0.02
                    );
                }
            }
        }
        RecordingsCommand::Play { id, output } => {
            let meta = recordings.shown(recordings.find(&id)?, me);
            let keys = keychain(&home, &meta)?;
            match output {
                Output::Wav(file) => {
                    let path = ctx.path(&file);
                    export::export(recordings, &meta, keys.as_ref(), &path, None, |_| {})
                        .map_err(|err| explain(err, &path))?;
                    say!("Wrote {}", path.display());
                }
                Output::Null => {
                    export::render(recordings, &meta, keys.as_ref(), None, |_| Ok(()), |_| {})?;
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
                        keys.as_ref(),
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

/// Speakers' signed agreements to be recorded, as kept with a recording.
fn consents_json(consents: &[earshot_node::recording::store::Consent]) -> Value {
    consents
        .iter()
        .map(|consent| {
            json!({
                "peer_id": consent.member.as_peer_id().to_string(),
                "name": consent.name,
                "at": consent.at.to_string(),
                "since": consent.since.to_string(),
                "verified": consent.verifies(),
                "envelope": consent.envelope.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            })
        })
        .collect()
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

/// A private room's recording opens with its epoch keys, sealed in it under its recording key,
/// which this node keeps (sealed to itself) when it recorded it or fetched it with a keyed
/// link. `None` for a public room's recording.
fn keychain(
    home: &earshot_node::home::Home,
    meta: &RecordingMeta,
) -> anyhow::Result<Option<earshot_protocol::private::Keychain>> {
    let recordings = home.recordings();
    if !recordings.is_private(&meta.id)? {
        return Ok(None);
    }
    let Some(key) = recordings.key(&meta.id, home.identity().signing_key())? else {
        anyhow::bail!(
            "recording {} is a private room's: its audio is sealed and this node does not hold \
             its key (fetch it with the replay link the host shared, which carries the key)",
            meta.id
        );
    };
    Ok(Some(recordings.keychain(&meta.id, &key)?))
}
