//! Support said in the room, as the host's `/confirm` needs it: who supported, under which
//! name, which message, and whether it is confirmed already.

use anyhow::bail;
use earshot_node::event::Event;

use super::Live;

impl Live<'_> {
    /// Remembers what `/confirm` needs of an event.
    pub(super) fn track(&mut self, event: &Event) {
        match event {
            Event::Support { from, name, id, .. } => {
                if let Some(id) = digest_of(id) {
                    self.supports.push((*from, name.clone(), id, false));
                    // Bounded: the latest thousand.
                    if self.supports.len() > 1_000 {
                        self.supports.remove(0);
                    }
                }
            }
            Event::SupportConfirmed { id, .. } => {
                if let Some(id) = digest_of(id) {
                    for support in &mut self.supports {
                        support.3 |= support.2 == id;
                    }
                }
            }
            _ => {}
        }
    }

    /// `/confirm PEER`: the latest support PEER (a name, or the start of a PeerId) said that
    /// is not confirmed yet.
    pub(super) fn unconfirmed_support_of(
        &self,
        who: &str,
    ) -> anyhow::Result<earshot_protocol::ControlBody> {
        let (supporter, support) = pick_support(&self.supports, who)?;
        Ok(earshot_protocol::ControlBody::SupportReceipt { supporter, support })
    }
}

/// A support message's digest from its hex form in events.
fn digest_of(hex: &str) -> Option<[u8; 32]> {
    let mut digest = [0u8; 32];
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    for (byte, pair) in digest.iter_mut().zip(hex.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(digest)
}

/// Support said in the room: who, their name, the message's digest, whether it is confirmed.
pub(super) type Said = (earshot_protocol::PeerKey, String, [u8; 32], bool);

/// The latest unconfirmed support of `who` (a name, or the start of a PeerId) among
/// `supports`. Names are whatever people chose: a name (or PeerId prefix) two supporters share
/// picks nobody, rather than the wrong one.
fn pick_support(
    supports: &[Said],
    who: &str,
) -> anyhow::Result<(earshot_protocol::PeerKey, [u8; 32])> {
    let by = |(key, name, _, confirmed): &&Said| {
        !confirmed
            && (name.eq_ignore_ascii_case(who) || key.as_peer_id().to_string().starts_with(who))
    };
    let mut keys: Vec<_> = supports.iter().filter(by).map(|said| said.0).collect();
    keys.sort();
    keys.dedup();
    if keys.len() > 1 {
        bail!(
            "{who:?} matches {} supporters; use more of the PeerId (see `support` lines)",
            keys.len()
        );
    }
    match supports.iter().rev().find(by) {
        Some((supporter, _, support, _)) => Ok((*supporter, *support)),
        None => bail!("no support from {who:?} waits for your confirmation"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirm_picks_one_supporter_or_nobody() {
        let key = |seed| {
            earshot_protocol::PeerKey::from(&ed25519_dalek::SigningKey::from_bytes(&[seed; 32]))
        };
        let (joe, impostor) = (key(1), key(2));
        let supports = vec![
            (joe, "joe".to_owned(), [1; 32], true),
            (joe, "joe".to_owned(), [2; 32], false),
        ];
        assert_eq!(
            pick_support(&supports, "JOE").expect("joe's"),
            (joe, [2; 32])
        );
        // Another key under the same name: nobody is confirmed.
        let mut crowded = supports.clone();
        crowded.push((impostor, "joe".to_owned(), [3; 32], false));
        let err = pick_support(&crowded, "joe").expect_err("ambiguous");
        assert!(err.to_string().contains("matches 2 supporters"), "{err}");
        // A prefix both PeerIds share is ambiguous too (every real one starts `12D3KooW`).
        let (a, b) = (
            joe.as_peer_id().to_string(),
            impostor.as_peer_id().to_string(),
        );
        let shared: String = a
            .chars()
            .zip(b.chars())
            .take_while(|(x, y)| x == y)
            .map(|(x, _)| x)
            .collect();
        assert!(!shared.is_empty(), "{a} {b}");
        assert!(pick_support(&crowded, &shared).is_err());
        let full = impostor.as_peer_id().to_string();
        assert_eq!(
            pick_support(&crowded, &full).expect("by PeerId"),
            (impostor, [3; 32])
        );
        assert!(
            pick_support(&supports[..1], "joe").is_err(),
            "already confirmed"
        );
    }
}
