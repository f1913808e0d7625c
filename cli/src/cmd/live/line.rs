//! Lines typed in a live room: slash commands, or chat.

use anyhow::bail;
use earshot_protocol::{ControlBody, PeerKey, Role};
use multiaddr::Multiaddr;

/// What a line asks for.
#[derive(Debug)]
pub enum Line {
    Act(ControlBody),
    /// `/record start|stop`.
    Record(bool),
    Tree,
    Audio,
    Relay(Multiaddr),
    MuteSelf(bool),
    /// `/consent`: agree to speak in the room's recording.
    Consent,
    /// `/confirm PEER`: the host confirms it received PEER's latest support.
    Confirm(String),
    Who,
    /// `/who listeners [PAGE]` (from 1).
    Listeners(u32),
    Invite {
        role: Role,
        expires: Option<String>,
    },
    Leave,
    End,
    Help,
    Nothing,
}

/// A parsed line, or one that still needs a member named in it found in the room.
pub enum Parsed {
    Ready(Line),
    NeedsMember {
        who: String,
        make: Box<dyn FnOnce(PeerKey) -> Line + Send>,
    },
}

impl std::fmt::Debug for Parsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Parsed::Ready(line) => write!(f, "Ready({line:?})"),
            Parsed::NeedsMember { who, .. } => write!(f, "NeedsMember({who:?})"),
        }
    }
}

pub const HELP: &str = "Commands:\n  /hand, /unhand            raise or lower your hand\n  \
     /promote PEER [speaker|moderator]\n  /demote PEER              back to the audience \
     (yourself: leave the stage)\n  /mute PEER, /unmute PEER\n  /remove PEER              \
     remove someone and revoke their link\n  /record start|stop        record the room (host, \
     moderators)\n  /relay add MULTIADDR      a community relay carries the room (host)\n  \
     /react EMOJI\n  /support AMOUNT UNIT [NOTE]  say you supported the host (see the room's \
     support address)\n  /confirm PEER             confirm you received PEER's support (host)\n  /who                      who is on stage, hands, how many listen\n  \
     /who listeners [PAGE]     who arrived lately (50 a page)\n  /tree                     your \
     place in the relay tree\n  /audio                    your audio: parent, loss, delay, latency\n  \
     /mute-self, /unmute-self  your microphone off or on\n  /consent                  agree to \
     speak in the room's recording (on stage)\n  /invite ROLE [EXPIRY]     a new \
     link (host)\n  /leave                    leave the room\n  /end                      end \
     the room (host)\n  anything else is chat";

/// Reads a line.
pub fn parse(text: &str) -> anyhow::Result<Parsed> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Parsed::Ready(Line::Nothing));
    }
    let Some(command) = text.strip_prefix('/') else {
        return Ok(Parsed::Ready(Line::Act(ControlBody::Chat {
            text: text.to_owned(),
        })));
    };
    let mut words = command.split_whitespace();
    let verb = words.next().unwrap_or_default().to_ascii_lowercase();
    let rest: Vec<&str> = words.collect();
    let member = |make: Box<dyn FnOnce(PeerKey) -> Line + Send>| match rest.first() {
        Some(who) => Ok(Parsed::NeedsMember {
            who: (*who).to_owned(),
            make,
        }),
        None => bail!("/{verb} needs a PEER (a display name or PeerId prefix)"),
    };
    let ready = |line| Ok(Parsed::Ready(line));
    match verb.as_str() {
        "hand" => ready(Line::Act(ControlBody::RaiseHand)),
        "unhand" => ready(Line::Act(ControlBody::LowerHand)),
        "record" => match rest.first().map(|w| w.to_ascii_lowercase()).as_deref() {
            Some("start" | "on") => ready(Line::Record(true)),
            Some("stop" | "off") => ready(Line::Record(false)),
            _ => bail!("/record start or /record stop"),
        },
        "promote" => {
            let role = match rest.get(1) {
                Some(role) => role.parse::<Role>()?,
                None => Role::Speaker,
            };
            member(Box::new(move |target| {
                Line::Act(ControlBody::Promote { target, role })
            }))
        }
        "demote" => member(Box::new(|target| Line::Act(ControlBody::Demote { target }))),
        "mute" => member(Box::new(|target| Line::Act(ControlBody::Mute { target }))),
        "unmute" => member(Box::new(|target| Line::Act(ControlBody::Unmute { target }))),
        // The node lists the capabilities to revoke (those the member joined with).
        "remove" | "kick" => member(Box::new(|target| {
            Line::Act(ControlBody::Remove {
                target,
                revoke: Vec::new(),
            })
        })),
        "react" => match rest.first() {
            Some(emoji) => ready(Line::Act(ControlBody::Reaction {
                emoji: (*emoji).to_owned(),
            })),
            None => bail!("/react needs an emoji, like /react 👏"),
        },
        "who" => match (rest.first().copied(), rest.get(1)) {
            (None, _) => ready(Line::Who),
            (Some("listeners"), None) => ready(Line::Listeners(1)),
            (Some("listeners"), Some(page)) => match page.parse::<u32>() {
                Ok(page) if page >= 1 => ready(Line::Listeners(page)),
                _ => bail!("/who listeners [PAGE]: PAGE is a number from 1"),
            },
            _ => bail!("/who, or /who listeners [PAGE]"),
        },
        "tree" => ready(Line::Tree),
        "relay" => match (rest.first().copied(), rest.get(1)) {
            (Some("add"), Some(addr)) => {
                ready(Line::Relay(addr.parse().map_err(|err| {
                    anyhow::anyhow!("{addr} is not a multiaddr: {err}")
                })?))
            }
            _ => bail!("/relay add MULTIADDR (a community relay's address, ending in /p2p/PEERID)"),
        },
        "audio" | "stats" => ready(Line::Audio),
        "mute-self" => ready(Line::MuteSelf(true)),
        "unmute-self" => ready(Line::MuteSelf(false)),
        "consent" | "agree" => ready(Line::Consent),
        "support" | "tip" => {
            let usage = "/support AMOUNT UNIT [NOTE], like /support 5 EUR thanks for the show";
            let (Some(amount), Some(unit)) = (rest.first(), rest.get(1)) else {
                bail!("{usage}");
            };
            let Ok(amount) = amount.parse::<u64>() else {
                bail!("{amount:?} is not a whole amount: {usage}");
            };
            if amount == 0 {
                bail!("an amount of nothing supports nobody: {usage}");
            }
            // The note is the rest of the line as typed, after the command, amount and unit.
            let mut rest = text;
            for _ in 0..3 {
                rest = rest
                    .trim_start()
                    .split_once(char::is_whitespace)
                    .map_or("", |(_, after)| after);
            }
            let note = rest.trim().to_owned();
            ready(Line::Act(ControlBody::Support {
                amount,
                unit: (*unit).to_owned(),
                note,
            }))
        }
        "confirm" | "receipt" => match rest.first() {
            Some(who) => ready(Line::Confirm((*who).to_owned())),
            None => bail!("/confirm PEER (a supporter's name or PeerId prefix)"),
        },
        "invite" => {
            let role = match rest.first() {
                Some(role) => role.parse::<Role>()?,
                None => Role::Listener,
            };
            ready(Line::Invite {
                role,
                expires: rest.get(1).map(|s| (*s).to_owned()),
            })
        }
        "leave" | "quit" => ready(Line::Leave),
        "end" => ready(Line::End),
        "help" | "?" => ready(Line::Help),
        other => bail!("unknown command /{other} (try /help)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(text: &str) -> Line {
        match parse(text).expect("parses") {
            Parsed::Ready(line) => line,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn chat_commands_and_mistakes() {
        assert!(matches!(ready("  "), Line::Nothing));
        assert!(matches!(ready("hello"), Line::Act(ControlBody::Chat { text }) if text == "hello"));
        assert!(matches!(ready("/HAND"), Line::Act(ControlBody::RaiseHand)));
        assert!(matches!(ready("/record on"), Line::Record(true)));
        assert!(matches!(ready("/record stop"), Line::Record(false)));
        assert!(matches!(ready("/consent"), Line::Consent));
        for typed in [
            "/support 5 EUR  thanks for the show, really",
            "/support  5   EUR thanks for the show, really ",
        ] {
            assert!(
                matches!(
                    ready(typed),
                    Line::Act(ControlBody::Support { amount: 5, unit, note })
                        if unit == "EUR" && note == "thanks for the show, really"
                ),
                "{typed}"
            );
        }
        assert!(matches!(
            ready("/support 5 EUR"),
            Line::Act(ControlBody::Support { note, .. }) if note.is_empty()
        ));
        assert!(matches!(ready("/confirm joe"), Line::Confirm(who) if who == "joe"));
        assert!(
            matches!(ready("/invite moderator 2h"), Line::Invite { role: Role::Moderator, expires: Some(e) } if e == "2h")
        );
        let key = PeerKey([7; 32]);
        match parse("/promote bo moderator").expect("parses") {
            Parsed::NeedsMember { who, make } => {
                assert_eq!(who, "bo");
                assert!(matches!(
                    make(key),
                    Line::Act(ControlBody::Promote { target, role: Role::Moderator }) if target == key
                ));
            }
            other => panic!("{other:?}"),
        }
        for (bad, says) in [
            ("/promote", "needs a PEER"),
            ("/record", "/record start or /record stop"),
            ("/react", "needs an emoji"),
            ("/relay add nonsense", "is not a multiaddr"),
            ("/dance", "unknown command /dance"),
            ("/promote bo king", "unknown role"),
            ("/support", "/support AMOUNT UNIT"),
            ("/support five EUR", "not a whole amount"),
            ("/support 0 EUR", "supports nobody"),
            ("/confirm", "/confirm PEER"),
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.to_string().contains(says), "{bad}: {err}");
        }
    }
}
