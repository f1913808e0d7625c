#!/usr/bin/env bash
# The invite round trip, end to end with the real binary, in throwaway data directories:
# a host creates a room, a moderator delegates a speaker invite, and bad links are refused.
set -euo pipefail
EARSHOT=${1:-earshot}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
host() { "$EARSHOT" --home "$work/host" "$@"; }
moderator() { "$EARSHOT" --home "$work/moderator" "$@"; }
guest() { "$EARSHOT" --home "$work/guest" "$@"; }
# The first string value of a JSON key (the outputs used here are flat one-line objects).
field() { grep -o "\"$1\":\"[^\"]*\"" | head -n 1 | cut -d'"' -f4; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Ana sets up her node and opens a room"
host init
host room new "Book club" --record
room=$(host room list --json | field id)

step "Ana invites Bo as a moderator who may delegate once"
moderator init >/dev/null
mod_link=$(host invite create "$room" --role moderator --expires 2h --json | field link)
echo "$mod_link"
echo "(${#mod_link} characters)"

step "Bo delegates a speaker invite bound to Cy"
guest init >/dev/null
cy=$(guest id --json | field peer_id)
speaker_link=$(moderator invite delegate "$mod_link" --role speaker --for "$cy" --json | field link)
guest invite inspect "$speaker_link" --as "$cy"

step "The same link presented by someone else is refused"
if host invite inspect "$speaker_link" --as "$(moderator id --json | field peer_id)"; then
  echo "unexpected: a bound invite was accepted for the wrong person" >&2; exit 1
fi

step "A truncated link is refused as such"
if guest invite inspect "${speaker_link:0:200}"; then
  echo "unexpected: a truncated link was accepted" >&2; exit 1
fi

step "Ana's rooms and the invites she issued"
host room show "$room"
printf '\nInvite round trip OK.\n'
