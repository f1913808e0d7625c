//! `earshot recordings verify`: a recording's frames (kept here, or fetched from a replay link
//! first) checked against their speakers' proofs.

use std::sync::Arc;

use anyhow::Context as _;
use earshot_node::home::Home;
use earshot_node::recording::replay::{Holder, Replays};
use earshot_node::recording::store::RecordingMeta;
use earshot_node::recording::verify::Verification;
use earshot_protocol::replay::verify::{SpeakerReport, Tally};
use earshot_protocol::replay::{ContentFormat, ReplayLink};
use multiaddr::Multiaddr;
use serde_json::{Value, json};

use super::fetch::{fetch_replay, fetch_request};
use crate::Exit;
use crate::cmd::Context;
use crate::output::{print_json, say, shout};

pub(super) fn verify(
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
    // A private room's recording whose key this node holds: its sealed stage views are read.
    let key = recordings.key(&id, home.identity().signing_key())?;
    let verification = recordings
        .verify_with(&id, key)
        .with_context(|| format!("verifying recording {}", id.short()))?;
    let verification = earshot_node::recording::verify::Verification {
        meta: recordings.shown(verification.meta, home.identity().signing_key()),
        ..verification
    };
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
    if tally.bad_studio > 0 {
        out.push(plural(
            tally.bad_studio,
            "studio chunk is not signed by its speaker",
            "studio chunks are not signed by their speakers",
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
        if tally.studio > 0 {
            line.push_str(&format!(
                "; studio track {:.1} s, signed by the speaker",
                tally.studio as f64 * 0.02
            ));
        }
        let problems = problems(tally);
        if !problems.is_empty() {
            line.push_str(&format!(": {}", problems.join(", ")));
        }
        say!("{line}");
        if report.stage_views > 0 || speaker.key.is_some() {
            say!(
                "  {:<16} {}",
                "",
                host_word(speaker.named_by_host.as_deref(), report.stage_views)
            );
        }
    }
    if report.bad_stage_views > 0 {
        say!(
            "  {} views of the stage in the recording are not signed by the host (ignored)",
            report.bad_stage_views
        );
    }
    for consent in &report.consents {
        say!(
            "  agreed to be recorded, signed: {} at {} (the recording from {})",
            consent.member.as_peer_id(),
            consent.at,
            consent.since
        );
    }
    if report.bad_consents > 0 {
        say!(
            "  {} agreements to be recorded in the recording are not signed by their speaker",
            report.bad_consents
        );
    }
    for support in &report.supports {
        say!(
            "  support, signed: {} {} {} at {}{}{}",
            support.supporter.as_peer_id(),
            support.amount,
            crate::output::one_line(&support.unit),
            support.at,
            if support.note.is_empty() {
                String::new()
            } else {
                format!(": {}", crate::output::one_line(&support.note))
            },
            if support.confirmed {
                ", confirmed by the host"
            } else {
                ""
            }
        );
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

/// What the host's signed views in the recording say of a speaker's key.
fn host_word(named: Option<&str>, views: u64) -> String {
    match named {
        Some(name) => format!("on stage as \"{name}\", in views the host signed"),
        None if views == 0 => {
            "the recording keeps no view signed by the host: only the recorder names this key"
                .into()
        }
        None => "NOT on stage in any view the host signed: only the recorder names this key".into(),
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
        "studio_frames": tally.studio,
        "bad_studio_chunks": tally.bad_studio,
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
                "named_by_host": speaker.named_by_host,
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
        "stage_views": verification.report.stage_views,
        "bad_stage_views": verification.report.bad_stage_views,
        "consents": verification.report.consents.iter().map(|consent| json!({
            "peer_id": consent.member.as_peer_id().to_string(),
            "since": consent.since.to_string(),
            "at": consent.at.to_string(),
        })).collect::<Vec<_>>(),
        "bad_consents": verification.report.bad_consents,
        "supports": verification.report.supports.iter().map(|support| json!({
            "peer_id": support.supporter.as_peer_id().to_string(),
            "amount": support.amount,
            "unit": support.unit,
            "note": support.note,
            "at": support.at.to_string(),
            "confirmed": support.confirmed,
        })).collect::<Vec<_>>(),
        "speakers": speakers,
    })
}
