//! Events for people: each [`Event`] as the lines `earshot host`, `join` and `relay` print in
//! text mode (with `--json` the event itself is printed, see [`crate::output::print_event`]).

use std::collections::HashMap;

use earshot_node::event::{AudioStats, CloseReason, Event, TreeNode};
use earshot_node::reachability::Reachability;
use earshot_protocol::PeerKey;
use earshot_protocol::audience::quality::EncoderSettings;
use earshot_protocol::state::{LeaveReason, RoomRole};
use multiaddr::PeerId;

/// What the text view remembers between events.
#[derive(Debug, Default)]
pub struct Text {
    /// Display names of everyone seen, for events that name a peer only by id.
    names: HashMap<PeerKey, String>,
    /// The reachability last told.
    reachability: Option<Reachability>,
    /// Addresses already shown (the hosting lines list the relayed ones).
    shown: Vec<multiaddr::Multiaddr>,
    /// Relay status reports seen (one in sixty is printed: a line a minute).
    relay_reports: u64,
    /// The audience's size and hands last told.
    audience: Option<(u32, u32)>,
}

impl Text {
    /// The lines for `event` (none for events people need not see), each one line whatever
    /// names, titles or chat in it hold (see [`crate::output::one_line`]).
    pub fn lines(&mut self, event: &Event) -> Vec<String> {
        one_line_each(self.lines_of(event))
    }

    fn lines_of(&mut self, event: &Event) -> Vec<String> {
        self.learn(event);
        let line = |text: String| vec![text];
        match event {
            Event::Hosting {
                room,
                title,
                addrs,
                reachability,
                listener_link,
                ..
            } => {
                let mut lines = vec![format!("Hosting \"{title}\" ({room})")];
                for addr in addrs {
                    if earshot_protocol::addr::is_relayed(addr) {
                        lines.push(format!("  reachable through a relay at {addr}"));
                    } else if *reachability == Some(Reachability::Private) {
                        lines.push(format!(
                            "  at {addr} (not reachable from outside, says AutoNAT)"
                        ));
                    } else {
                        lines.push(format!("  reachable at {addr}"));
                    }
                }
                lines.push("Listener link (7 days):".into());
                lines.push(listener_link.to_string());
                lines.push(
                    "Type /help for commands; anything else is chat. /end closes the room.".into(),
                );
                lines
            }
            Event::Joined {
                title,
                role,
                members,
                recording,
                starts_at,
                support,
                ..
            } => {
                let on_stage = members.iter().filter(|m| m.role.on_stage()).count();
                let mut lines = vec![format!(
                    "Joined \"{title}\" as {} ({} here, {on_stage} on stage)",
                    role.as_str(),
                    members.len()
                )];
                if *recording {
                    lines.push("● This room is being recorded.".into());
                }
                if let Some(support) = support {
                    lines.push(format!(
                        "Support the host: {support} (then /support AMOUNT UNIT [NOTE] says so)"
                    ));
                }
                let now = earshot_node::clock::now();
                if let Some(starts_at) = starts_at.filter(|at| *at > now) {
                    lines.push(format!(
                        "The room begins {}: you are in early.",
                        crate::when::describe(starts_at, now)
                    ));
                }
                lines.push("Type /help for commands; anything else is chat. /leave to go.".into());
                lines
            }
            Event::ReachableViaRelay { addr } => {
                if self.shown.contains(addr) {
                    return Vec::new();
                }
                self.shown.push(addr.clone());
                line(format!("Reachable through a relay at {addr}"))
            }
            Event::Reachability { status } => {
                if self.reachability.replace(*status) == Some(*status) {
                    return Vec::new();
                }
                match status {
                    Reachability::Public => line("Peers can reach you directly.".into()),
                    Reachability::Private => {
                        line("Peers cannot reach you directly; asking relays for a slot.".into())
                    }
                    Reachability::Unknown => Vec::new(),
                }
            }
            Event::Rejected {
                from: Some(from),
                reason,
                ..
            } => line(format!("! refused a message relayed by {from}: {reason}")),
            Event::WaitingForHost { starts_at, .. } => line(format!(
                "The room begins {}: waiting for its host to open it…",
                crate::when::describe(*starts_at, earshot_node::clock::now())
            )),
            Event::ConsentAsked { .. } => vec![
                "● This room is being recorded. Your microphone stays off until you agree to \
                 speak in the recording: /consent (or /demote yourself to leave the stage)."
                    .into(),
            ],
            Event::RecordingConsent { name, .. } => {
                line(format!("● {name} agreed to speak in the recording."))
            }
            Event::PeerBlocked { peer, reason } => line(format!(
                "! disconnected {peer}, kept out for {} minutes: {reason}",
                earshot_node::net::conduct::BLOCKED_FOR.as_secs() / 60
            )),
            Event::Closed { reason, .. } => line(
                match reason {
                    CloseReason::Left => "You left the room.",
                    CloseReason::Ended => "The room has ended.",
                    CloseReason::Removed => "You were removed from the room.",
                }
                .into(),
            ),
            Event::AudioAttached {
                parent,
                depth,
                repair_ms: Some(repair),
                ..
            } => line(format!(
                "Audio: now from {} (depth {depth}), after {repair:.0} ms",
                self.name_of_peer(parent)
            )),
            Event::Recording { recording, .. } => line(format!(
                "● Recording to {} (earshot recordings show {})",
                recording.short(),
                recording.short()
            )),
            Event::RecordingSaved {
                recording,
                state,
                seconds,
                ..
            } => line(format!(
                "○ Recording {} saved ({seconds:.0} s, {state}); export it with `earshot \
                 recordings export {} FILE.opus`",
                recording.short(),
                recording.short()
            )),
            Event::ReplayPublished {
                recording,
                manifest,
                ..
            } => line(format!(
                "▶ Published as a replay (manifest {manifest}); `earshot recordings publish {}` \
                 prints its link",
                recording.short()
            )),
            Event::RelayAdded { relay, .. } => {
                line(format!("The relay {relay} will carry the room's audio."))
            }
            Event::Invite {
                role,
                expires_at,
                link,
            } => vec![
                format!("{role} link, valid until {expires_at}:"),
                link.to_string(),
            ],
            Event::SelfMuted { muted: true } => line("Your microphone is off.".into()),
            Event::SelfMuted { muted: false } => line("Your microphone is on.".into()),
            Event::Note { message } => line(format!("Note: {message}")),
            Event::Relay {
                peer_id,
                addrs,
                metrics,
            } => {
                let mut lines = vec![format!("Relay {peer_id} is running.")];
                lines.extend(addrs.iter().map(|addr| format!("  reachable at {addr}")));
                if let Some(url) = metrics {
                    lines.push(format!("  metrics at {url}"));
                }
                lines.push(
                    "Give nodes one of the addresses above as --bootstrap. Ctrl-C or SIGTERM \
                     stops it."
                        .into(),
                );
                lines
            }
            Event::Carrying { room, title, host } => {
                line(format!("Carrying \"{title}\" ({room}) for {host}"))
            }
            Event::RelayStats(stats) => {
                self.relay_reports += 1;
                if !self.relay_reports.is_multiple_of(60) {
                    return Vec::new();
                }
                line(format!(
                    "{} peers; {} rooms carried, {} listeners fed, {} kbit/s up; {} \
                     reservations, {} circuits",
                    stats.peers,
                    stats.rooms.len(),
                    stats.children,
                    stats.upload_kbps,
                    stats.reservations,
                    stats.circuits,
                ))
            }
            Event::Stopped => line("Relay stopped.".into()),
            // Moves in the tree are for /tree, not for the conversation.
            Event::TreeMoved { .. } => Vec::new(),
            Event::Tree { nodes, subtree, .. } => {
                let mut lines = self.tree(nodes);
                lines.push(format!("  ({subtree} in your subtree, you included)"));
                lines
            }
            Event::Listeners {
                page, listeners, ..
            } => {
                if listeners.is_empty() {
                    return line(format!("No listeners on page {}.", page + 1));
                }
                let mut lines = vec![format!("Listeners who arrived lately (page {}):", page + 1)];
                for listener in listeners {
                    self.names.insert(listener.peer_id, listener.name.clone());
                    lines.push(format!(
                        "  {:<16} {}",
                        listener.name,
                        listener.peer_id.as_peer_id()
                    ));
                }
                lines
            }
            Event::Audience {
                listeners, hands, ..
            } => {
                if self.audience.replace((*listeners, *hands)) == Some((*listeners, *hands)) {
                    return Vec::new();
                }
                line(format!(
                    "  {listeners} listening, {hands} hand{} up",
                    if *hands == 1 { "" } else { "s" }
                ))
            }
            Event::Reactions { reactions, .. } => line(
                reactions
                    .iter()
                    .map(|(emoji, count)| format!("{emoji}×{count}"))
                    .collect::<Vec<_>>()
                    .join("  "),
            ),
            Event::Notice { text, .. } => line(format!("! {text}")),
            change => self.change(change).map(line).unwrap_or_default(),
        }
    }

    /// A room's change, as a line of the conversation.
    fn change(&self, event: &Event) -> Option<String> {
        Some(match event {
            Event::MemberJoined { name, role, .. } => {
                format!("→ {name} joined ({})", role.as_str())
            }
            Event::MemberLeft { name, reason, .. } => match reason {
                LeaveReason::Left => format!("← {name} left"),
                LeaveReason::TimedOut => format!("← {name} dropped out (no heartbeat)"),
                LeaveReason::Removed => format!("← {name} is out"),
            },
            Event::RoleChanged {
                name,
                role,
                by_name,
                ..
            } => format!(
                "★ {name} is now {} {} (by {by_name})",
                article(*role),
                role.as_str()
            ),
            Event::HandRaised { name, .. } => format!("✋ {name} raised a hand"),
            Event::RelayAccused {
                relay,
                by,
                reason,
                accusers,
                excluded,
                ..
            } => {
                let (relay, by) = (relay.short(), by.short());
                if *excluded {
                    format!(
                        "⚠ {relay} is out of the relay tree: {accusers} listeners it fed caught it \
                         ({reason}); it takes no children for a while"
                    )
                } else {
                    format!("⚠ {by} says its relay {relay} failed it ({reason})")
                }
            }
            Event::HandLowered { name, .. } => format!("  {name} lowered their hand"),
            Event::Muted { name, by_name, .. } => format!("🔇 {name} was muted by {by_name}"),
            Event::Unmuted { name, by_name, .. } => format!("🔈 {name} was unmuted by {by_name}"),
            Event::Removed { name, by_name, .. } => format!("✖ {name} was removed by {by_name}"),
            Event::Chat { name, text, .. } => format!("[{name}] {text}"),
            Event::Reaction { name, emoji, .. } => format!("{name} {emoji}"),
            Event::Support {
                name,
                amount,
                unit,
                note,
                ..
            } => {
                if note.is_empty() {
                    format!("💛 {name} supported the host: {amount} {unit}")
                } else {
                    format!("💛 {name} supported the host: {amount} {unit}: {note}")
                }
            }
            Event::SupportConfirmed { name, .. } => {
                format!("✔ the host confirmed it received {name}'s support")
            }
            Event::RecordingStarted { by_name, .. } => format!("● recording started by {by_name}"),
            Event::RecordingStopped { by_name, .. } => format!("○ recording stopped by {by_name}"),
            Event::RoomEnded { by_name, .. } => format!("The room was ended by {by_name}"),
            Event::ReplayAvailable {
                name,
                title,
                bytes,
                link,
                ..
            } => format!(
                "▶ {name} shared a replay of \"{title}\" ({} KiB): earshot recordings fetch {link}",
                bytes / 1024
            ),
            Event::MemberRecordingStarted { name, .. } => {
                format!("● {name} is recording what they hear")
            }
            Event::MemberRecordingStopped { name, .. } => format!("○ {name} stopped recording"),
            _ => return None,
        })
    }

    /// Remembers names and what was shown.
    fn learn(&mut self, event: &Event) {
        match event {
            Event::Joined { members, .. } | Event::Who { members, .. } => {
                for member in members {
                    self.names.insert(member.peer_id, member.name.clone());
                }
            }
            Event::MemberJoined { member, name, .. } => {
                self.names.insert(*member, name.clone());
            }
            Event::Hosting { addrs, .. } => {
                self.shown.extend(addrs.iter().cloned());
            }
            _ => {}
        }
    }

    fn name_of_peer(&self, peer: &PeerId) -> String {
        match PeerKey::from_peer_id(peer) {
            Ok(key) => self.name(&key),
            Err(_) => peer.to_string(),
        }
    }

    pub fn name(&self, key: &PeerKey) -> String {
        self.names.get(key).cloned().unwrap_or_else(|| key.short())
    }

    /// `/audio`: this node's audio, for people.
    pub fn audio(&self, stats: &AudioStats, host: bool) -> Vec<String> {
        one_line_each(self.audio_lines(stats, host))
    }

    fn audio_lines(&self, stats: &AudioStats, host: bool) -> Vec<String> {
        let mut lines = Vec::new();
        match (&stats.parent, stats.depth) {
            (Some(parent), depth) => lines.push(format!(
                "Audio from {} (depth {}), feeding {} listener(s)",
                self.name_of_peer(parent),
                depth.map_or("?".to_owned(), |d| d.to_string()),
                stats.children
            )),
            (None, _) if host => lines.push(format!(
                "Audio: you are the root, feeding {} listener(s)",
                stats.children
            )),
            (None, _) => lines.push("Audio: not attached to the tree right now".into()),
        }
        let lost = stats.concealed + stats.late + stats.skipped;
        let heard = (stats.played + stats.recovered + lost).max(1);
        let ms = |value: Option<u64>| value.map_or("-".into(), |v| v.to_string());
        lines.push(format!(
            "  received {} frames, played {}, recovered {}, lost {} ({:.1}%); buffer {:.0} ms; \
             mouth-to-ear {} ms (p50), {} ms (p95)",
            stats.received,
            stats.played,
            stats.recovered,
            lost,
            100.0 * lost as f64 / heard as f64,
            stats.buffer_ms,
            ms(stats.latency_p50_ms),
            ms(stats.latency_p95_ms),
        ));
        if stats.speaking {
            let encoder = EncoderSettings::for_loss(stats.audience_loss_permille);
            lines.push(format!(
                "  speaking{}; {}",
                if stats.self_muted {
                    " (muted by you)"
                } else {
                    ""
                },
                if encoder.fec {
                    format!(
                        "the audience loses frames: FEC for {} % loss, {} kbit/s",
                        encoder.loss_percent,
                        encoder.bitrate / 1000
                    )
                } else {
                    format!("clean: no FEC, {} kbit/s", encoder.bitrate / 1000)
                }
            ));
        }
        if let Some(jitter) = stats.audience_jitter_ms {
            lines.push(if jitter > 320 {
                "  the audience: one in ten listeners' buffers hold more than 320 ms".to_owned()
            } else {
                format!("  the audience: nine in ten listeners' buffers hold at most {jitter} ms")
            });
        }
        if let Some(chunks) = stats.studio_chunks {
            lines.push(format!(
                "  studio track: {chunks} s handed to the recording{}",
                match stats.studio_lost {
                    Some(lost) if lost > 0 => format!(", {lost} chunks or frames lost"),
                    _ => String::new(),
                }
            ));
        }
        lines
    }

    /// `/tree`: one line per node, indented by depth.
    pub fn tree(&self, nodes: &[TreeNode]) -> Vec<String> {
        one_line_each(
            nodes
                .iter()
                .map(|node| match node.depth {
                    Some(depth) => format!("{}{}", "  ".repeat(usize::from(depth)), node.name),
                    None => format!("  (not attached) {}", node.name),
                })
                .collect(),
        )
    }
}

/// Each line as one line: a break or control character inside (from a name, a title, a chat
/// message) is escaped.
fn one_line_each(lines: Vec<String>) -> Vec<String> {
    lines
        .into_iter()
        .map(|line| crate::output::one_line(&line).into_owned())
        .collect()
}

fn article(role: RoomRole) -> &'static str {
    match role {
        RoomRole::Listener | RoomRole::Speaker | RoomRole::Moderator => "a",
        RoomRole::Host => "the",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stranger_cannot_fake_a_line_or_drive_the_terminal() {
        let mut text = Text::default();
        let chat = Event::Chat {
            room: earshot_protocol::RoomId([1; 16]),
            from: PeerKey([2; 32]),
            name: "mal\nThe room was ended by Hana".into(),
            text: "\u{1b}[2J\u{1b}[31mhi\r".into(),
            at: earshot_protocol::Timestamp(0),
        };
        let lines = text.lines(&chat);
        assert_eq!(lines.len(), 1);
        assert!(!lines[0].contains(['\n', '\r', '\u{1b}']), "{}", lines[0]);
        assert!(lines[0].starts_with("[mal\\u000aThe room was ended by Hana]"));
    }
}
