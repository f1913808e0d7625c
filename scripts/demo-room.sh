#!/usr/bin/env bash
# A live room on 127.0.0.1 with the real binary: a host and two listeners in separate processes,
# in throwaway data directories. A listener raises a hand, the host brings her on stage, people
# chat and react, a troublemaker is removed (and his link stops working), and the host ends the
# room. Each process's own view is printed at the end.
set -euo pipefail
EARSHOT=${1:-earshot}
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# Waits (up to 20 s) until FILE has a line matching PATTERN.
wait_for() {
  local file=$1 pattern=$2
  for _ in $(seq 1 200); do
    grep -q -- "$pattern" "$file" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "timed out waiting for '$pattern' in $(basename "$file"):" >&2
  cat "$file" >&2
  exit 1
}

# Waits (up to 20 s) until FILE is at least BYTES long.
wait_for_size() {
  local file=$1 bytes=$2
  for _ in $(seq 1 200); do
    [ "$(stat -c %s "$file" 2>/dev/null || echo 0)" -ge "$bytes" ] && return 0
    sleep 0.1
  done
  echo "timed out waiting for $(basename "$file") to reach $bytes bytes" >&2
  exit 1
}

# start NAME ARGS...: runs earshot with its stdin on a FIFO ($work/NAME.in) and its output in
# $work/NAME.out.
start() {
  local name=$1
  shift
  mkfifo "$work/$name.in"
  "$EARSHOT" "$@" <"$work/$name.in" >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
  exec {fd}>"$work/$name.in"
  eval "${name}_fd=$fd"
}
type_in() { local fd_var="${1}_fd"; echo "$2" >&"${!fd_var}"; }

step "Ana creates a room and opens it"
"$EARSHOT" --home "$work/ana" room new "Book club" --listen /ip4/127.0.0.1/udp/0/quic-v1 >/dev/null
start ana --home "$work/ana" host "Book club" --name Ana --input sine --max-children 1
wait_for "$work/ana.out" "^earshot://join/"
link=$(grep -m1 "^earshot://join/" "$work/ana.out")
sed -n '1,2p' "$work/ana.out"

step "Bea and Cal join with the listener link"
start bea --home "$work/bea" join "$link" --name Bea --listen /ip4/127.0.0.1/udp/0/quic-v1 \
  --output "$work/bea.wav" --max-children 1
start cal --home "$work/cal" join "$link" --name Cal --listen /ip4/127.0.0.1/udp/0/quic-v1 \
  --output "$work/cal.wav"
wait_for "$work/bea.out" "^Joined"
wait_for "$work/cal.out" "^Joined"
wait_for "$work/ana.out" "Bea joined"
wait_for "$work/ana.out" "Cal joined"

step "Bea raises a hand; Ana brings her on stage"
type_in bea "/hand"
wait_for "$work/ana.out" "Bea raised a hand"
type_in ana "/promote bea"
wait_for "$work/bea.out" "Bea is now a speaker"

step "Chat and reactions"
type_in bea "Hi all, thanks for having me"
type_in cal "/react 👏"
wait_for "$work/ana.out" "Cal 👏"
wait_for "$work/cal.out" "thanks for having me"

step "Listening: Ana speaks a tone; with --max-children 1 she feeds one listener, who feeds the other"
wait_for_size "$work/cal.wav" $((44 + 96000 * 3))
echo "Cal has heard 3 s of audio."

step "Cal misbehaves and is removed; his link no longer works"
type_in ana "/remove cal"
wait_for "$work/cal.out" "You were removed"
if "$EARSHOT" --home "$work/cal" join "$link" --name Cal --listen /ip4/127.0.0.1/udp/0/quic-v1 \
  </dev/null >/dev/null 2>"$work/rejoin.err"; then
  echo "unexpected: a removed member got back in" >&2; exit 1
fi
cat "$work/rejoin.err"

step "While the room runs, other commands on Ana's data directory go through her node"
"$EARSHOT" --home "$work/ana" invite create "Book club" --role speaker --expires 1h | head -1

step "Ana ends the room"
type_in ana "/who"
wait_for "$work/ana.out" "on stage"
type_in ana "/end"
wait_for "$work/bea.out" "The room has ended"

for name in ana bea cal; do
  step "What ${name^} saw"
  grep -v "^earshot://join/" "$work/$name.out" || true
done

wait "${pids[0]}" "${pids[1]}" 2>/dev/null || true
step "What they heard"
# Ana speaks a 440 Hz tone through a relay tree (--max-children 1: a chain of two listeners).
for name in bea cal; do
  bytes=$(stat -c %s "$work/$name.wav")
  awk -v b="$bytes" -v n="${name^}" -v f="$name.wav" 'BEGIN { printf "%s: %.1f s of audio in %s\n", n, (b - 44) / 96000, f }'
done
printf '\nLive room OK.\n'
