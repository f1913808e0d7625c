//! `earshot host` and `earshot join`: a live room in the terminal.
//!
//! Lines on standard input are commands (`/hand`, `/promote PEER`, `/who`, … see `/help`) or
//! chat. Room events print one line each, for people, or one JSON object per line with `--json`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use earshot_node::audio::io::{Input, Output, Resolved};
use earshot_node::clock;
use earshot_node::home::Home;
use earshot_node::identity::Identity;
use earshot_node::net::NetConfig;
use earshot_node::node::{CloseReason, Node, NodeConfig, NodeEvent, SpawnError};
use earshot_node::reach::{Reachability, is_relayed};
use earshot_node::recording::store::{NewRecording, Recorder};
use earshot_node::relay::AudioRelay;
use earshot_node::session::{AudioEvent, AudioSession, AudioStatus};
use earshot_protocol::state::{LeaveReason, Member, RoomChange, RoomRole};
use earshot_protocol::{Audience, ControlBody, Grant, InviteLink, PeerKey, Role, RoomId};
use multiaddr::{Multiaddr, Protocol};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use super::Context;
use super::reaching::{ReachArgs, Reaching};
use crate::Exit;
use crate::output::{print_json, say, shout};
use crate::when::parse_expiry;

#[derive(Debug, Args)]
pub struct HostArgs {
    /// Room id, a unique prefix of it, or the title.
    room: String,
    /// Where to listen (repeatable). Default: the addresses remembered for the room, so links
    /// printed earlier stay valid.
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<Multiaddr>,
    /// Your display name in the room.
    #[arg(long, default_value = "host")]
    name: String,
    /// What you say: `mic` (the default microphone, `mic:NAME` another; see `earshot
    /// devices`), a WAV file, `sine`, `sine:HZ`, or `silence`. Default: the microphone if there
    /// is one, else silence.
    #[arg(long, value_name = "mic|FILE.wav|sine|silence")]
    input: Option<Input>,
    /// Where the speakers you receive go: `speaker` (`speaker:NAME`), a WAV file, or `null`.
    /// Default: the speaker if there is one, else nowhere.
    #[arg(long, value_name = "speaker|FILE.wav|null")]
    output: Option<Output>,
    #[command(flatten)]
    upload: Upload,
    /// How many speakers are forwarded to the room at once (the loudest).
    #[arg(long, default_value_t = earshot_protocol::loudest::DEFAULT_FORWARDED, value_name = "N")]
    forward: usize,
    /// A community relay to carry the room's audio to many listeners (its address ending in
    /// /p2p/PEERID; repeatable). `/relay add ADDR` asks one later.
    #[arg(long, value_name = "MULTIADDR")]
    relay: Vec<Multiaddr>,
    /// Be reachable through this community relay too (behind a NAT): reserve a slot on it and
    /// put the relayed address first in the links (its address ending in /p2p/PEERID).
    #[arg(long, value_name = "MULTIADDR")]
    via: Vec<Multiaddr>,
    #[command(flatten)]
    reach: ReachArgs,
}

/// A node's upload budget in the relay tree.
#[derive(Debug, Args)]
pub struct Upload {
    /// How many listeners you feed directly; the rest are fed by listeners (a relay tree).
    /// Default: from --upload-kbps, else 4.
    #[arg(long, value_name = "N")]
    max_children: Option<u16>,
    /// Your upload bandwidth for the room, in kbit/s (each listener you feed costs ~40).
    #[arg(long, value_name = "KBPS", conflicts_with = "max_children")]
    upload_kbps: Option<u32>,
}

impl Upload {
    fn max_children(&self) -> u16 {
        match (self.max_children, self.upload_kbps) {
            (Some(n), _) => n,
            (None, Some(kbps)) => earshot_node::node::children_for_upload(kbps),
            (None, None) => earshot_node::node::DEFAULT_MAX_CHILDREN,
        }
    }
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The invite link (or - to read it from standard input's first line).
    link: String,
    /// Your display name in the room. Default: $USER, else "guest".
    #[arg(long)]
    name: Option<String>,
    /// Where to listen (repeatable). Default: any free port on all interfaces.
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<Multiaddr>,
    /// What you say once you are on stage: `mic` (`mic:NAME`), a WAV file, `sine`, `sine:HZ`,
    /// or `silence`. Default: the microphone if there is one, else silence.
    #[arg(long, value_name = "mic|FILE.wav|sine|silence")]
    input: Option<Input>,
    /// Where the room's audio goes: `speaker` (`speaker:NAME`), a WAV file, or `null`.
    /// Default: the speaker if there is one, else nowhere.
    #[arg(long, value_name = "speaker|FILE.wav|null")]
    output: Option<Output>,
    #[command(flatten)]
    upload: Upload,
    /// Be reachable through this community relay too (behind a NAT, so that listeners placed
    /// under you can reach you): reserve a slot on it.
    #[arg(long, value_name = "MULTIADDR")]
    via: Vec<Multiaddr>,
    #[command(flatten)]
    reach: ReachArgs,
}

/// How long a leaving node keeps its connections open so that its `Leave` goes out.
const LINGER: Duration = Duration::from_millis(300);

pub fn host(ctx: &Context, args: HostArgs) -> anyhow::Result<Exit> {
    let home = ctx.open_home()?;
    let room = home.find_room(&args.room)?;
    let mut listen = if args.listen.is_empty() {
        room.listen.clone()
    } else {
        args.listen
    };
    listen.extend(relayed(&args.via)?);
    let identity = Identity::load(home.dir())?;
    let reaching = Reaching::load(home.dir(), &args.reach)?;
    let ctx = ctx.clone();
    runtime()?.block_on_then_drop(async move {
        let node = spawn(identity, listen, args.upload.max_children(), &reaching).await?;
        let mut reach_events = node.subscribe();
        let serving = Arc::clone(&home);
        let _control = earshot_node::control::serve(home.dir(), move |request| {
            crate::serve_command(Arc::clone(&serving), request)
        })?;
        let mut events = node.subscribe();
        node.host(room.descriptor.clone(), &args.name).await?;
        let id = room.descriptor.id;
        // The host's voice goes to the root of the relay tree.
        let relay = AudioRelay::start(node.audio_control(), node.audio_admission());
        // Replays kept here are served from the host; those published while it runs (say, with
        // `earshot recordings publish`, through the control socket) are announced to the room.
        let replays = earshot_node::recording::replay::Replays::open(home.store())?;
        let _replays = earshot_node::recording::replay::ReplayServer::start(
            node.audio_control(),
            replays.clone(),
        )?;
        let _announcer = earshot_node::recording::replay::announce_published(
            node.clone(),
            &replays,
            room.descriptor.id,
            dialable(&node).await,
        );
        let audio = AudioSession::host(
            &node,
            &relay,
            id,
            endpoint(args.input.clone(), Input::auto, ctx.json),
            endpoint(args.output.clone(), Output::auto, ctx.json),
            args.forward,
        )?;
        let now = clock::now();
        let mut link = home.create_invite(
            &room,
            Grant {
                audience: Audience::Bearer,
                role: Role::Listener,
                not_before: now,
                expires_at: now.plus_millis(7 * 24 * 3600 * 1000),
                depth: 0,
            },
            now,
        )?;
        let mut verdict = None;
        if reaching.may_use_relays() {
            // A link must work: give AutoNAT and a relay a moment before handing one out.
            if !ctx.json {
                say!("Checking whether peers can reach you directly…");
            }
            verdict = settle_reachability(&mut reach_events, REACHABILITY_WAIT).await;
        }
        drop(reach_events);
        let addrs = dialable(&node).await;
        relayed_first(&mut link, &addrs);
        if ctx.json {
            print_json(&json!({
                "event": "hosting",
                "room": id.to_string(),
                "title": room.descriptor.title,
                "peer_id": node.peer_id().to_string(),
                "addrs": addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "reachability": verdict.map(Reachability::as_str),
                "listener_link": link.encode(),
            }));
        } else {
            say!("Hosting \"{}\" ({})", room.descriptor.title, id);
            for addr in &addrs {
                if is_relayed(addr) {
                    say!("  reachable through a relay at {addr}");
                } else if verdict == Some(Reachability::Private) {
                    say!("  at {addr} (not reachable from outside, says AutoNAT)");
                } else {
                    say!("  reachable at {addr}");
                }
            }
            say!("Listener link (7 days):\n{link}");
            say!("Type /help for commands; anything else is chat. /end closes the room.");
        }
        let mut session = Session {
            ctx: &ctx,
            node: &node,
            room: id,
            home: Some(home.as_ref()),
            names: HashMap::new(),
            audio_events: audio.subscribe(),
            audio,
            recorder: None,
            own_home: None,
            relayed: Vec::new(),
            reachability: verdict,
        };
        session.relayed = addrs.iter().filter(|a| is_relayed(a)).cloned().collect();
        for addr in &args.relay {
            session.ask_relay(addr).await;
        }
        // A room created with --record is recorded from the start (and everyone is told).
        if room.descriptor.recording.host_records
            && let Err(err) = node.act(id, ControlBody::RecordingStarted).await
        {
            session.print_error(&format!("cannot start recording: {err}"));
        }
        let code = session.run(&mut events).await;
        node.shutdown().await;
        Ok(Exit(code))
    })
}

pub fn join(ctx: &Context, args: JoinArgs) -> anyhow::Result<Exit> {
    let text = if args.link == "-" {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the link from standard input")?;
        line
    } else {
        args.link.clone()
    };
    let link = match InviteLink::decode(&text) {
        Ok(link) => link,
        Err(err) => {
            shout!("earshot: {err}");
            return Ok(Exit(2));
        }
    };
    let dir = ctx.home_dir()?;
    let (identity, _) = Identity::init(&dir)?;
    let name = args
        .name
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "guest".into());
    let listen = if args.listen.is_empty() {
        vec![
            "/ip4/0.0.0.0/udp/0/quic-v1"
                .parse()
                .expect("valid multiaddr"),
            "/ip4/0.0.0.0/tcp/0".parse().expect("valid multiaddr"),
        ]
    } else {
        args.listen
    };
    let mut listen = listen;
    listen.extend(relayed(&args.via)?);
    let reaching = Reaching::load(&dir, &args.reach)?;
    let ctx = ctx.clone();
    runtime()?.block_on_then_drop(async move {
        let node = spawn(identity, listen, args.upload.max_children(), &reaching).await?;
        let mut events = node.subscribe();
        let room = link.capability.room;
        let view = match node.join(link, &name).await {
            Ok(view) => view,
            Err(err) => {
                if ctx.json {
                    print_json(&json!({"event": "rejected", "room": room.to_string(), "reason": err.to_string()}));
                }
                node.shutdown().await;
                bail!("cannot join: {err}");
            }
        };
        let me = node.key();
        let role = view.state.role_of(&me).unwrap_or(RoomRole::Listener);
        if ctx.json {
            print_json(&json!({
                "event": "joined",
                "room": room.to_string(),
                "title": view.descriptor.title,
                "role": role.as_str(),
                "peer_id": node.peer_id().to_string(),
                "members": view.state.present().iter().map(|m| member_json(m)).collect::<Vec<_>>(),
            }));
        } else {
            say!(
                "Joined \"{}\" as {} ({} here, {} on stage)",
                view.descriptor.title,
                role,
                view.state.present().len(),
                view.state.stage().len()
            );
            say!("Type /help for commands; anything else is chat. /leave to go.");
        }
        // The room's audio: a place in the relay tree (re-attaching whenever the parent goes
        // away), relayed on to this node's own children and played into the output; this
        // member's voice while it is on stage.
        let Some(host_peer) = view.descriptor.host.to_peer_id().ok() else {
            bail!("the room's descriptor names an invalid host key");
        };
        let relay = AudioRelay::start(node.audio_control(), node.audio_admission());
        let audio = AudioSession::member(
            &node,
            &relay,
            room,
            host_peer,
            endpoint(args.input.clone(), Input::auto, ctx.json),
            endpoint(args.output.clone(), Output::auto, ctx.json),
        )?;
        let names = view
            .state
            .members
            .values()
            .map(|m| (m.key, m.display_name()))
            .collect();
        let mut session = Session {
            ctx: &ctx,
            node: &node,
            room,
            home: None,
            names,
            audio_events: audio.subscribe(),
            audio,
            recorder: None,
            own_home: None,
            relayed: Vec::new(),
            reachability: None,
        };
        session.update_voice(role).await;
        let code = session.run(&mut events).await;
        node.shutdown().await;
        Ok(Exit(code))
    })
}

/// How long `earshot host` waits for a verdict on its reachability before printing its link.
const REACHABILITY_WAIT: Duration = Duration::from_secs(6);

/// Waits until this node is known to be reachable directly, or through a relay (which it
/// only reserves once AutoNAT found it private), or `wait` has passed. Returns the verdict.
async fn settle_reachability(
    events: &mut tokio::sync::broadcast::Receiver<NodeEvent>,
    wait: Duration,
) -> Option<Reachability> {
    let mut verdict = None;
    let _ = tokio::time::timeout(wait, async {
        loop {
            match events.recv().await {
                Ok(NodeEvent::Reachability { status }) => {
                    verdict = Some(status);
                    if status == Reachability::Public {
                        return;
                    }
                }
                Ok(NodeEvent::Listening { addr }) if is_relayed(&addr) => {
                    verdict = Some(Reachability::Private);
                    return;
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    })
    .await;
    verdict
}

/// Puts the relayed addresses among `addrs` first in the link's addresses: a host that is
/// reachable through a relay may not be reachable any other way.
fn relayed_first(link: &mut InviteLink, addrs: &[Multiaddr]) {
    let circuits: Vec<Multiaddr> = addrs.iter().filter(|a| is_relayed(a)).cloned().collect();
    if !circuits.is_empty() {
        link.bootstrap.retain(|addr| !circuits.contains(addr));
        link.bootstrap.splice(0..0, circuits);
        link.bootstrap
            .truncate(earshot_protocol::link::MAX_BOOTSTRAP_ADDRS);
    }
}

/// The relayed listen addresses (`…/p2p/RELAY/p2p-circuit`) for `--via` relays.
fn relayed(via: &[Multiaddr]) -> anyhow::Result<Vec<Multiaddr>> {
    via.iter()
        .map(|addr| match addr.iter().last() {
            Some(Protocol::P2p(_)) => Ok(addr.clone().with(Protocol::P2pCircuit)),
            _ => bail!("{addr}: a relay's address must end in /p2p/PEERID"),
        })
        .collect()
}

/// The input or output asked for, else the sound card, else a fallback (saying so).
fn endpoint<T>(asked: Option<T>, auto: impl FnOnce() -> Resolved<T>, json: bool) -> T {
    if let Some(asked) = asked {
        return asked;
    }
    match auto() {
        Resolved::Device(device) => device,
        Resolved::NoDevice { fallback, note } => {
            if json {
                print_json(&json!({"event": "note", "message": note}));
            } else {
                say!("Note: {note}");
            }
            fallback
        }
    }
}

/// A tokio runtime for one live command. Dropping it does not wait for the thread blocked on
/// reading standard input.
struct Runtime(tokio::runtime::Runtime);

impl Runtime {
    fn block_on_then_drop<T>(self, future: impl std::future::Future<Output = T>) -> T {
        let result = self.0.block_on(future);
        self.0.shutdown_background();
        result
    }
}

fn runtime() -> anyhow::Result<Runtime> {
    Ok(Runtime(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the async runtime")?,
    ))
}

/// Starts the node; if a remembered TCP port is taken now, listens on another TCP port (links
/// carry the QUIC address first).
async fn spawn(
    identity: Identity,
    mut listen: Vec<Multiaddr>,
    max_children: u16,
    reaching: &Reaching,
) -> anyhow::Result<Node> {
    let config = |listen: Vec<Multiaddr>| NodeConfig {
        listen,
        bootstrap: reaching.bootstrap.clone(),
        net: NetConfig {
            emulate_nat: reaching.emulate_nat,
            ..NetConfig::default()
        },
        max_children,
        relays: reaching.relays.clone(),
        reachability: reaching.mode,
    };
    match Node::spawn(identity.clone(), config(listen.clone())).await {
        Ok(node) => Ok(node),
        Err(SpawnError::Listen { addr, .. }) if is_tcp(&addr) => {
            tracing::warn!(%addr, "TCP port taken; listening on another one");
            for entry in &mut listen {
                if *entry == addr {
                    *entry = entry
                        .iter()
                        .map(|p| {
                            if matches!(p, Protocol::Tcp(_)) {
                                Protocol::Tcp(0)
                            } else {
                                p
                            }
                        })
                        .collect();
                }
            }
            Ok(Node::spawn(identity, config(listen)).await?)
        }
        Err(err) => Err(err.into()),
    }
}

fn is_tcp(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::Tcp(_)))
}

/// Listen addresses with unspecified IPs left out, each ending in /p2p/<PeerId>, for use as
/// `--bootstrap`.
async fn dialable(node: &Node) -> Vec<Multiaddr> {
    let addrs = node.listen_addrs().await.unwrap_or_default();
    addrs
        .into_iter()
        .filter(
            |addr| !matches!(addr.iter().next(), Some(Protocol::Ip4(ip)) if ip.is_unspecified()),
        )
        .map(|addr| naming(addr, node.peer_id()))
        .collect()
}

/// `addr` ending in `/p2p/<peer>` (a relayed address, `…/p2p-circuit/p2p/<us>`, may already).
fn naming(addr: Multiaddr, peer: multiaddr::PeerId) -> Multiaddr {
    if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
        addr
    } else {
        addr.with(Protocol::P2p(peer))
    }
}

struct Session<'a> {
    ctx: &'a Context,
    node: &'a Node,
    room: RoomId,
    /// The data directory, when this node hosts the room (for `/invite`).
    home: Option<&'a Home>,
    /// Display names of everyone seen, for printing events.
    names: HashMap<PeerKey, String>,
    /// This node's audio in the room.
    audio: AudioSession,
    audio_events: tokio::sync::broadcast::Receiver<AudioEvent>,
    /// This node's addresses through relays, first in the links the host hands out.
    relayed: Vec<Multiaddr>,
    /// The reachability last told to the user.
    reachability: Option<Reachability>,
    /// The host's recording of the room, while the room's recording flag is on (or a member's
    /// own recording of what it hears).
    recorder: Option<Recorder>,
    /// A member's data directory, opened when it first records.
    own_home: Option<Arc<Home>>,
}

/// What a line of input asked for.
enum Line {
    Act(ControlBody),
    Tree,
    Audio,
    Relay(Multiaddr),
    MuteSelf(bool),
    Who,
    Invite { role: Role, expires: Option<String> },
    Leave,
    End,
    Help,
    Nothing,
}

impl Session<'_> {
    /// Runs until the room closes, `/leave`/`/end`, Ctrl-C or SIGTERM. Returns the exit code.
    async fn run(mut self, events: &mut tokio::sync::broadcast::Receiver<NodeEvent>) -> u8 {
        let code = self.run_inner(events).await;
        self.stop_recording();
        let mut last = self.audio_json(&self.audio.status());
        // Children are handed over to other parents before this node goes.
        match self.audio.finish().await {
            Ok(stats) => tracing::info!(?stats, "playback finished"),
            Err(err) => shout!("earshot: audio output: {err}"),
        }
        if self.ctx.json {
            last["final"] = json!(true);
            print_json(&last);
        }
        code
    }

    async fn run_inner(&mut self, events: &mut tokio::sync::broadcast::Receiver<NodeEvent>) -> u8 {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        let mut stdin_open = true;
        let mut sigterm =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => Some(signal),
                Err(err) => {
                    tracing::warn!(%err, "cannot watch for SIGTERM");
                    None
                }
            };
        let mut report = tokio::time::interval(Duration::from_secs(1));
        report.tick().await;
        loop {
            tokio::select! {
                _ = report.tick(), if self.ctx.json => {
                    let status = self.audio.status();
                    let mut value = self.audio_json(&status);
                    if let Some(depth) = self.depth_in_tree().await {
                        value["depth"] = json!(depth);
                    }
                    print_json(&value);
                }
                event = self.audio_events.recv() => match event {
                    Ok(event) => self.print_audio_event(&event),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    // The session lives as long as this loop.
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {}
                },
                event = events.recv() => match event {
                    Ok(NodeEvent::RoomClosed { room, reason }) if room == self.room => {
                        self.print_closed(reason);
                        return match reason {
                            CloseReason::Removed => 1,
                            _ => 0,
                        };
                    }
                    Ok(event) => {
                        self.print_event(&event);
                        if let NodeEvent::Room { room, change } = &event
                            && *room == self.room
                        {
                            self.follow_recording(change).await;
                        }
                        if let NodeEvent::Room { room, change: RoomChange::RoleChanged { member, role, .. } } = &event
                            && *room == self.room
                            && *member == self.node.key()
                        {
                            self.update_voice(*role).await;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "output fell behind the room");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return 1,
                },
                line = lines.next_line(), if stdin_open => match line {
                    Ok(Some(line)) => {
                        if let Some(code) = self.on_line(&line).await {
                            return code;
                        }
                    }
                    // Standard input closed (a script, or a service): keep running.
                    Ok(None) | Err(_) => stdin_open = false,
                },
                _ = tokio::signal::ctrl_c() => return self.leave().await,
                _ = async { sigterm.as_mut().expect("guarded").recv().await }, if sigterm.is_some() => {
                    return self.leave().await;
                }
            }
        }
    }

    /// Asks the community relay at `addr` to carry the room: it gets a listener invite bound to
    /// its key, joins, and takes many children in the tree.
    async fn ask_relay(&self, addr: &Multiaddr) {
        let result = async {
            let Some(home) = self.home else {
                bail!("only the host can ask a relay to carry the room");
            };
            let Some(Protocol::P2p(relay)) = addr.iter().last() else {
                bail!("{addr}: a relay's address must end in /p2p/PEERID");
            };
            let key = PeerKey::from_peer_id(&relay)
                .map_err(|err| anyhow::anyhow!("{relay} is not an earshot node: {err}"))?;
            let room = home.find_room(&self.room.to_string())?;
            let now = clock::now();
            let link = home.create_invite(
                &room,
                Grant {
                    audience: Audience::Bound(key),
                    role: Role::Listener,
                    not_before: now,
                    expires_at: now.plus_millis(7 * 24 * 3600 * 1000),
                    depth: 0,
                },
                now,
            )?;
            self.node
                .ask_help(relay, vec![addr.clone()], &link)
                .await
                .map_err(|reason| anyhow::anyhow!("the relay at {addr} refused: {reason}"))?;
            anyhow::Ok(relay)
        }
        .await;
        match result {
            Ok(relay) => {
                if self.ctx.json {
                    print_json(
                        &json!({"event": "relay_added", "room": self.room.to_string(), "relay": relay.to_string()}),
                    );
                } else {
                    say!("The relay {relay} will carry the room's audio.");
                }
            }
            Err(err) => self.print_error(&format!("{err:#}")),
        }
    }

    /// The host records while the room's recording flag is on (whoever set it: the host, or a
    /// moderator with `/record start`), and names the people it hears.
    async fn follow_recording(&mut self, change: &RoomChange) {
        match change {
            RoomChange::RecordingStarted { .. } if self.home.is_some() => {
                self.start_recording().await;
            }
            RoomChange::RecordingStopped { .. } if self.home.is_some() => self.stop_recording(),
            // A member's own recording, of what it hears.
            RoomChange::MemberRecording { member, on } if *member == self.node.key() => {
                if *on {
                    self.start_recording().await;
                } else {
                    self.stop_recording();
                }
            }
            RoomChange::MemberJoined { member, name, .. } => {
                if let Some(recorder) = &self.recorder {
                    recorder.name_speakers([(*member, name.clone())]);
                }
            }
            _ => {}
        }
    }

    async fn start_recording(&mut self) {
        if self.recorder.is_some() {
            return;
        }
        // A member records into its own data directory, opened when it first records.
        if self.home.is_none() && self.own_home.is_none() {
            match self.ctx.open_home() {
                Ok(home) => self.own_home = Some(home),
                Err(err) => {
                    self.print_error(&format!("cannot record: {err:#}"));
                    return;
                }
            }
        }
        let Some(home) = self.home.or(self.own_home.as_deref()) else {
            return;
        };
        let Ok(Some(view)) = self.node.view(self.room).await else {
            return;
        };
        let started = home.recordings().start(NewRecording {
            room: self.room,
            title: view.descriptor.title.clone(),
            host: view.descriptor.host,
            recorder: self.node.key(),
            started_at: clock::now(),
            start_media: earshot_node::audio::media_now(),
        });
        match started {
            Ok(recorder) => {
                recorder.name_speakers(
                    view.state
                        .members
                        .values()
                        .map(|m| (m.key, m.display_name())),
                );
                self.audio.record(Some(recorder.tap()));
                if self.ctx.json {
                    print_json(&json!({
                        "event": "recording",
                        "room": self.room.to_string(),
                        "recording": recorder.id().to_string(),
                    }));
                } else {
                    say!(
                        "● Recording to {} (earshot recordings show {})",
                        recorder.id().short(),
                        recorder.id().short()
                    );
                }
                self.recorder = Some(recorder);
            }
            Err(err) => self.print_error(&format!("cannot record: {err}")),
        }
    }

    fn stop_recording(&mut self) {
        let Some(recorder) = self.recorder.take() else {
            return;
        };
        self.audio.record(None);
        match recorder.finish(clock::now()) {
            Ok(meta) => {
                if self.ctx.json {
                    print_json(&json!({
                        "event": "recording_saved",
                        "room": self.room.to_string(),
                        "recording": meta.id.to_string(),
                        "state": meta.state.as_str(),
                        "seconds": meta.duration().as_secs_f64(),
                        "frames": meta.frames,
                        "dropped": meta.dropped,
                    }));
                } else {
                    say!(
                        "○ Recording {} saved ({:.0} s, {}); export it with `earshot recordings export {} FILE.opus`",
                        meta.id.short(),
                        meta.duration().as_secs_f64(),
                        meta.state.as_str(),
                        meta.id.short()
                    );
                }
                // The room's official recording is published as a replay at once: fetchable
                // by anyone given the link, and announced to the room while it is live.
                if let Some(home) = self.home {
                    self.publish_replay(home, &meta);
                }
            }
            Err(err) => self.print_error(&format!("the recording did not finish cleanly: {err}")),
        }
    }

    fn publish_replay(&self, home: &Home, meta: &earshot_node::recording::store::RecordingMeta) {
        let published =
            earshot_node::recording::replay::Replays::open(home.store()).and_then(|replays| {
                replays.publish(home.recordings(), meta, home.identity().signing_key())
            });
        match published {
            Ok(manifest) => {
                if self.ctx.json {
                    print_json(&json!({
                        "event": "replay_published",
                        "room": self.room.to_string(),
                        "recording": meta.id.to_string(),
                        "manifest": manifest.id().to_string(),
                    }));
                } else {
                    say!(
                        "▶ Published as a replay (manifest {}); `earshot recordings publish {}` prints its link",
                        manifest.id(),
                        meta.id.short()
                    );
                }
            }
            Err(err) => self.print_error(&format!("could not publish the recording: {err}")),
        }
    }

    /// Sends this member's voice to the host while it is on stage.
    async fn update_voice(&mut self, role: RoomRole) {
        if let Err(err) = self.audio.set_on_stage(role.on_stage()).await {
            self.print_error(&err.to_string());
        }
    }

    async fn leave(&self) -> u8 {
        let _ = self.node.leave(self.room).await;
        tokio::time::sleep(LINGER).await;
        self.print_closed(CloseReason::Left);
        0
    }

    async fn on_line(&mut self, text: &str) -> Option<u8> {
        let line = match self.parse(text).await {
            Ok(line) => line,
            Err(err) => {
                self.print_error(&format!("{err:#}"));
                return None;
            }
        };
        match line {
            Line::Nothing => {}
            Line::MuteSelf(muted) => {
                self.audio.set_self_muted(muted);
                if self.ctx.json {
                    print_json(&json!({"event": "self_muted", "muted": muted}));
                } else if muted {
                    say!("Your microphone is off.");
                } else {
                    say!("Your microphone is on.");
                }
            }
            Line::Audio => {
                let status = self.audio.status();
                if self.ctx.json {
                    print_json(&self.audio_json(&status));
                } else {
                    self.print_audio_status(&status);
                }
            }
            Line::Help => self.print_help(),
            Line::Relay(addr) => self.ask_relay(&addr).await,
            Line::Who => self.print_who().await,
            Line::Tree => self.print_tree().await,
            Line::Leave => return Some(self.leave().await),
            Line::End => {
                if let Err(err) = self.node.act(self.room, ControlBody::RoomEnded).await {
                    self.print_error(&err.to_string());
                    return None;
                }
                tokio::time::sleep(LINGER).await;
                self.print_closed(CloseReason::Ended);
                return Some(0);
            }
            Line::Invite { role, expires } => {
                if let Err(err) = self.invite(role, expires.as_deref()) {
                    self.print_error(&format!("{err:#}"));
                }
            }
            Line::Act(body) => {
                if let Err(err) = self.node.act(self.room, body).await {
                    self.print_error(&err.to_string());
                }
            }
        }
        None
    }

    async fn parse(&self, text: &str) -> anyhow::Result<Line> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Line::Nothing);
        }
        let Some(command) = text.strip_prefix('/') else {
            return Ok(Line::Act(ControlBody::Chat {
                text: text.to_owned(),
            }));
        };
        let mut words = command.split_whitespace();
        let verb = words.next().unwrap_or_default().to_ascii_lowercase();
        let rest: Vec<&str> = words.collect();
        let target = || async {
            match rest.first() {
                Some(who) => self.resolve(who).await,
                None => bail!("/{verb} needs a PEER (a display name or PeerId prefix)"),
            }
        };
        Ok(match verb.as_str() {
            "hand" => Line::Act(ControlBody::RaiseHand),
            "record" => {
                let on = match rest.first().map(|w| w.to_ascii_lowercase()).as_deref() {
                    Some("start" | "on") => true,
                    Some("stop" | "off") => false,
                    _ => bail!("/record start or /record stop"),
                };
                // The host and moderators start and stop the room's recording (the host keeps
                // it); anyone else records what they hear, for themselves, when the room
                // allows it.
                let role = self
                    .node
                    .view(self.room)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|view| view.state.role_of(&self.node.key()))
                    .unwrap_or(RoomRole::Listener);
                match (role >= RoomRole::Moderator, on) {
                    (true, true) => Line::Act(ControlBody::RecordingStarted),
                    (true, false) => Line::Act(ControlBody::RecordingStopped),
                    (false, on) => Line::Act(ControlBody::MemberRecording { on }),
                }
            }
            "unhand" => Line::Act(ControlBody::LowerHand),
            "promote" => {
                let target = target().await?;
                let role = match rest.get(1) {
                    Some(role) => role.parse::<Role>()?,
                    None => Role::Speaker,
                };
                Line::Act(ControlBody::Promote { target, role })
            }
            "demote" => Line::Act(ControlBody::Demote {
                target: target().await?,
            }),
            "mute" => Line::Act(ControlBody::Mute {
                target: target().await?,
            }),
            "unmute" => Line::Act(ControlBody::Unmute {
                target: target().await?,
            }),
            // The node lists the capabilities to revoke (those the member joined with).
            "remove" | "kick" => Line::Act(ControlBody::Remove {
                target: target().await?,
                revoke: Vec::new(),
            }),
            "react" => match rest.first() {
                Some(emoji) => Line::Act(ControlBody::Reaction {
                    emoji: (*emoji).to_owned(),
                }),
                None => bail!("/react needs an emoji, like /react 👏"),
            },
            "who" => Line::Who,
            "tree" => Line::Tree,
            "relay" => match (rest.first().copied(), rest.get(1)) {
                (Some("add"), Some(addr)) => Line::Relay(
                    addr.parse()
                        .map_err(|err| anyhow::anyhow!("{addr} is not a multiaddr: {err}"))?,
                ),
                _ => bail!(
                    "/relay add MULTIADDR (a community relay's address, ending in /p2p/PEERID)"
                ),
            },
            "audio" | "stats" => Line::Audio,
            "mute-self" => Line::MuteSelf(true),
            "unmute-self" => Line::MuteSelf(false),
            "invite" => {
                let role = match rest.first() {
                    Some(role) => role.parse::<Role>()?,
                    None => Role::Listener,
                };
                Line::Invite {
                    role,
                    expires: rest.get(1).map(|s| (*s).to_owned()),
                }
            }
            "leave" | "quit" => Line::Leave,
            "end" => Line::End,
            "help" | "?" => Line::Help,
            other => bail!("unknown command /{other} (try /help)"),
        })
    }

    /// A member by display name (case-insensitive) or by a prefix of their PeerId or key.
    async fn resolve(&self, who: &str) -> anyhow::Result<PeerKey> {
        let view = self
            .node
            .view(self.room)
            .await
            .ok()
            .flatten()
            .context("not in the room any more")?;
        let members: Vec<&Member> = view.state.members.values().collect();
        let by_name: Vec<&&Member> = members
            .iter()
            .filter(|m| m.display_name().eq_ignore_ascii_case(who))
            .collect();
        let matches: Vec<&&Member> = if by_name.is_empty() {
            members
                .iter()
                .filter(|m| {
                    m.key.as_peer_id().to_string().starts_with(who)
                        || m.key.to_string().starts_with(&who.to_ascii_lowercase())
                })
                .collect()
        } else {
            by_name
        };
        match matches.as_slice() {
            [member] => Ok(member.key),
            [] => bail!("nobody called {who:?} is in the room (see /who)"),
            _ => bail!("{who:?} matches several members; use more of their PeerId"),
        }
    }

    fn invite(&self, role: Role, expires: Option<&str>) -> anyhow::Result<()> {
        let Some(home) = self.home else {
            bail!(
                "only the host can issue invites here; use `earshot invite delegate` with your link"
            );
        };
        let room = home.find_room(&self.room.to_string())?;
        let now = clock::now();
        let expires_at = match expires {
            Some(text) => parse_expiry(text, now)?,
            None => now.plus_millis(7 * 24 * 3600 * 1000),
        };
        let mut link = home.create_invite(
            &room,
            Grant {
                audience: Audience::Bearer,
                role,
                not_before: now,
                expires_at,
                depth: u8::from(role == Role::Moderator),
            },
            now,
        )?;
        relayed_first(&mut link, &self.relayed);
        if self.ctx.json {
            print_json(
                &json!({"event": "invite", "role": role.as_str(), "expires_at": expires_at.to_string(), "link": link.encode()}),
            );
        } else {
            say!("{role} link, valid until {expires_at}:\n{link}");
        }
        Ok(())
    }

    fn name(&self, key: &PeerKey) -> String {
        self.names.get(key).cloned().unwrap_or_else(|| key.short())
    }

    fn print_error(&self, message: &str) {
        if self.ctx.json {
            print_json(&json!({"event": "error", "message": message}));
        } else {
            shout!("earshot: {message}");
        }
    }

    fn print_help(&self) {
        say!(
            "Commands:\n  /hand, /unhand            raise or lower your hand\n  \
             /promote PEER [speaker|moderator]\n  /demote PEER              back to the audience \
             (yourself: leave the stage)\n  /mute PEER, /unmute PEER\n  /remove PEER              \
             remove someone and revoke their link\n  /record start|stop        record the room (host, moderators)\n  /relay add MULTIADDR      a community relay carries the room (host)\n  /react EMOJI\n  /who                      \
             who is here\n  /tree                     the relay tree\n  /audio                    your audio: parent, loss, delay, latency\n  /mute-self, /unmute-self  your microphone off or on\n  /invite ROLE [EXPIRY]     a new link (host)\n  /leave                    \
             leave the room\n  /end                      end the room (host)\n  anything else is chat"
        );
    }

    async fn print_who(&self) {
        let Ok(Some(view)) = self.node.view(self.room).await else {
            return;
        };
        let state = &view.state;
        if self.ctx.json {
            print_json(&json!({
                "event": "who",
                "room": self.room.to_string(),
                "recording": state.recording.value,
                "members": state.present().iter().map(|m| member_json(m)).collect::<Vec<_>>(),
                "hands": state.hands().iter().map(|m| m.key.as_peer_id().to_string()).collect::<Vec<_>>(),
            }));
            return;
        }
        say!(
            "\"{}\": {} here, {} on stage{}",
            view.descriptor.title,
            state.present().len(),
            state.stage().len(),
            if state.recording.value {
                ", recording"
            } else {
                ""
            }
        );
        for member in state.present() {
            let mut notes = Vec::new();
            if member.hand.value.is_some() {
                notes.push("hand raised");
            }
            if member.muted.value {
                notes.push("muted");
            }
            if member.key == self.node.key() {
                notes.push("you");
            }
            say!(
                "  {:<10} {:<16} {}{}",
                member.role().as_str(),
                member.display_name(),
                member.key.as_peer_id(),
                if notes.is_empty() {
                    String::new()
                } else {
                    format!("  ({})", notes.join(", "))
                }
            );
        }
    }

    /// The relay tree, from where each member says it is (the room state).
    async fn print_tree(&self) {
        let Ok(Some(view)) = self.node.view(self.room).await else {
            return;
        };
        let layout = tree_layout(&view.state);
        if self.ctx.json {
            print_json(&json!({
                "event": "tree",
                "room": self.room.to_string(),
                "nodes": layout.iter().map(|(key, parent, depth)| json!({
                    "peer_id": key.as_peer_id().to_string(),
                    "name": self.name(key),
                    "parent": parent.map(|p| p.as_peer_id().to_string()),
                    "depth": depth,
                })).collect::<Vec<_>>(),
            }));
            return;
        }
        for (key, _, depth) in &layout {
            match depth {
                Some(depth) => say!("{}{}", "  ".repeat(usize::from(*depth)), self.name(key)),
                None => say!("  (not attached) {}", self.name(key)),
            }
        }
    }

    /// This node's depth in the tree as the room sees it now (its parent may have moved since
    /// this node attached).
    async fn depth_in_tree(&self) -> Option<u16> {
        let view = self.node.view(self.room).await.ok().flatten()?;
        let me = self.node.key();
        tree_layout(&view.state)
            .into_iter()
            .find(|(key, _, _)| *key == me)
            .and_then(|(_, _, depth)| depth)
    }

    fn audio_json(&self, status: &AudioStatus) -> Value {
        let playback = &status.playback;
        json!({
            "event": "audio_stats",
            "room": self.room.to_string(),
            "parent": status.position.map(|p| p.parent.to_string()),
            "depth": status.position.map(|p| p.depth),
            "children": status.children,
            "received": status.received,
            "relayed": status.relayed,
            "dropped": status.dropped,
            "not_selected": status.not_selected,
            "speaking": status.speaking,
            "self_muted": status.self_muted,
            "expected": playback.expected,
            "delivered": playback.received,
            "played": playback.played,
            "recovered": playback.recovered,
            "concealed": playback.concealed,
            "late": playback.late,
            "skipped": playback.skipped,
            "buffer_ms": playback.buffer_ms,
            "latency_samples": playback.latency.count,
            "latency_p50_ms": playback.latency.percentile(50.0),
            "latency_p95_ms": playback.latency.percentile(95.0),
        })
    }

    fn print_audio_status(&self, status: &AudioStatus) {
        let playback = &status.playback;
        match status.position {
            Some(position) => say!(
                "Audio from {} (depth {}), feeding {} listener(s)",
                self.name_of_peer(&position.parent),
                position.depth,
                status.children
            ),
            None if self.home.is_some() => {
                say!(
                    "Audio: you are the root, feeding {} listener(s)",
                    status.children
                )
            }
            None => say!("Audio: not attached to the tree right now"),
        }
        let lost = playback.concealed + playback.late + playback.skipped;
        say!(
            "  received {} frames, played {}, recovered {}, lost {} ({:.1}%); buffer {:.0} ms; \
             mouth-to-ear {} ms (p50), {} ms (p95)",
            status.received,
            playback.played,
            playback.recovered,
            lost,
            100.0 * lost as f64 / (playback.played + playback.recovered + lost).max(1) as f64,
            playback.buffer_ms,
            playback
                .latency
                .percentile(50.0)
                .map_or("-".into(), |v| v.to_string()),
            playback
                .latency
                .percentile(95.0)
                .map_or("-".into(), |v| v.to_string()),
        );
        if status.speaking {
            say!(
                "  speaking{}",
                if status.self_muted {
                    " (muted by you)"
                } else {
                    ""
                }
            );
        }
    }

    fn print_audio_event(&self, event: &AudioEvent) {
        match event {
            AudioEvent::Attached {
                parent,
                depth,
                repair,
            } => {
                if self.ctx.json {
                    print_json(&json!({
                        "event": "audio_attached",
                        "room": self.room.to_string(),
                        "parent": parent.to_string(),
                        "depth": depth,
                        "repair_ms": repair.map(|d| d.as_secs_f64() * 1000.0),
                    }));
                } else if let Some(repair) = repair {
                    say!(
                        "Audio: now from {} (depth {depth}), after {} ms",
                        self.name_of_peer(parent),
                        repair.as_millis()
                    );
                }
            }
            AudioEvent::Lost {
                parent,
                leaving,
                reason,
            } => {
                if self.ctx.json {
                    print_json(&json!({
                        "event": "audio_lost",
                        "room": self.room.to_string(),
                        "parent": parent.to_string(),
                        "leaving": leaving,
                        "reason": reason,
                    }));
                }
            }
        }
    }

    fn name_of_peer(&self, peer: &multiaddr::PeerId) -> String {
        match PeerKey::from_peer_id(peer) {
            Ok(key) => self.name(&key),
            Err(_) => peer.to_string(),
        }
    }

    fn print_closed(&self, reason: CloseReason) {
        let text = match reason {
            CloseReason::Left => "left",
            CloseReason::Ended => "ended",
            CloseReason::Removed => "removed",
        };
        if self.ctx.json {
            print_json(&json!({"event": "closed", "room": self.room.to_string(), "reason": text}));
        } else {
            match reason {
                CloseReason::Left => say!("You left the room."),
                CloseReason::Ended => say!("The room has ended."),
                CloseReason::Removed => say!("You were removed from the room."),
            }
        }
    }

    fn print_event(&mut self, event: &NodeEvent) {
        match event {
            NodeEvent::Listening { addr } if is_relayed(addr) => {
                let addr = naming(addr.clone(), self.node.peer_id());
                if self.relayed.contains(&addr) {
                    return;
                }
                self.relayed.insert(0, addr.clone());
                if self.ctx.json {
                    print_json(&json!({"event": "reachable_via_relay", "addr": addr.to_string()}));
                } else {
                    say!("Reachable through a relay at {addr}");
                }
                if self.home.is_some()
                    && let Err(err) = self.invite(Role::Listener, None)
                {
                    self.print_error(&format!("{err:#}"));
                }
            }
            NodeEvent::Reachability { status } => {
                let told = self.reachability.replace(*status) == Some(*status);
                if self.ctx.json {
                    print_json(&json!({"event": "reachability", "status": status.as_str()}));
                } else if !told {
                    match status {
                        Reachability::Public => say!("Peers can reach you directly."),
                        Reachability::Private => {
                            say!("Peers cannot reach you directly; asking relays for a slot.")
                        }
                        Reachability::Unknown => {}
                    }
                }
            }
            NodeEvent::DirectConnection { peer } if self.ctx.json => {
                print_json(&json!({"event": "direct_connection", "peer": peer.to_string()}));
            }
            NodeEvent::Room { room, change } if *room == self.room => {
                if let RoomChange::MemberJoined { member, name, .. } = change {
                    self.names.insert(*member, name.clone());
                }
                if self.ctx.json {
                    print_json(&self.change_json(change));
                } else if !matches!(change, RoomChange::TreeMoved { .. }) {
                    // Moves in the tree are for /tree, not for the conversation.
                    say!("{}", self.change_text(change));
                }
            }
            NodeEvent::Rejected {
                room: Some(room),
                from,
                reason,
            } if *room == self.room => {
                if self.ctx.json {
                    print_json(
                        &json!({"event": "rejected", "room": room.to_string(), "from": from.to_string(), "reason": reason}),
                    );
                } else {
                    say!("! refused a message relayed by {from}: {reason}");
                }
            }
            _ => {}
        }
    }

    fn change_text(&self, change: &RoomChange) -> String {
        let n = |key: &PeerKey| self.name(key);
        match change {
            RoomChange::MemberJoined { member, role, .. } => {
                format!("→ {} joined ({role})", n(member))
            }
            RoomChange::MemberLeft { member, reason } => match reason {
                LeaveReason::Left => format!("← {} left", n(member)),
                LeaveReason::TimedOut => format!("← {} dropped out (no heartbeat)", n(member)),
                LeaveReason::Removed => format!("← {} is out", n(member)),
            },
            RoomChange::RoleChanged { member, role, by } => {
                format!(
                    "★ {} is now {} {role} (by {})",
                    n(member),
                    article(*role),
                    n(by)
                )
            }
            RoomChange::HandRaised { member } => format!("✋ {} raised a hand", n(member)),
            RoomChange::HandLowered { member } => format!("  {} lowered their hand", n(member)),
            RoomChange::Muted { member, by } => format!("🔇 {} was muted by {}", n(member), n(by)),
            RoomChange::Unmuted { member, by } => {
                format!("🔈 {} was unmuted by {}", n(member), n(by))
            }
            RoomChange::Removed { member, by } => {
                format!("✖ {} was removed by {}", n(member), n(by))
            }
            RoomChange::Chat { from, text, .. } => format!("[{}] {text}", n(from)),
            RoomChange::Reaction { from, emoji } => format!("{} {emoji}", n(from)),
            RoomChange::RecordingStarted { by } => format!("● recording started by {}", n(by)),
            RoomChange::RecordingStopped { by } => format!("○ recording stopped by {}", n(by)),
            RoomChange::RoomEnded { by } => format!("The room was ended by {}", n(by)),
            RoomChange::TreeMoved { member, position } => format!(
                "  {} now gets audio from {} (depth {})",
                n(member),
                n(&position.parent),
                position.depth
            ),
            RoomChange::ReplayAvailable {
                by, title, bytes, ..
            } => format!(
                "▶ {} shared a replay of \"{title}\" ({} KiB): earshot recordings fetch {}",
                n(by),
                bytes / 1024,
                replay_link(change)
                    .map(|link| link.encode())
                    .unwrap_or_default()
            ),
            RoomChange::MemberRecording { member, on: true } => {
                format!("● {} is recording what they hear", n(member))
            }
            RoomChange::MemberRecording { member, on: false } => {
                format!("○ {} stopped recording", n(member))
            }
        }
    }

    fn change_json(&self, change: &RoomChange) -> Value {
        let peer = |key: &PeerKey| key.as_peer_id().to_string();
        let mut value = match change {
            RoomChange::MemberJoined { member, name, role } => {
                json!({"event": "member_joined", "member": peer(member), "name": name, "role": role.as_str()})
            }
            RoomChange::MemberLeft { member, reason } => json!({
                "event": "member_left", "member": peer(member), "name": self.name(member),
                "reason": match reason { LeaveReason::Left => "left", LeaveReason::TimedOut => "timed_out", LeaveReason::Removed => "removed" },
            }),
            RoomChange::RoleChanged { member, role, by } => json!({
                "event": "role_changed", "member": peer(member), "name": self.name(member), "role": role.as_str(), "by": peer(by),
            }),
            RoomChange::HandRaised { member } => {
                json!({"event": "hand_raised", "member": peer(member), "name": self.name(member)})
            }
            RoomChange::HandLowered { member } => {
                json!({"event": "hand_lowered", "member": peer(member), "name": self.name(member)})
            }
            RoomChange::Muted { member, by } => {
                json!({"event": "muted", "member": peer(member), "name": self.name(member), "by": peer(by)})
            }
            RoomChange::Unmuted { member, by } => {
                json!({"event": "unmuted", "member": peer(member), "name": self.name(member), "by": peer(by)})
            }
            RoomChange::Removed { member, by } => {
                json!({"event": "removed", "member": peer(member), "name": self.name(member), "by": peer(by)})
            }
            RoomChange::Chat { from, text, at } => json!({
                "event": "chat", "from": peer(from), "name": self.name(from), "text": text, "at": at.to_string(),
            }),
            RoomChange::Reaction { from, emoji } => {
                json!({"event": "reaction", "from": peer(from), "name": self.name(from), "emoji": emoji})
            }
            RoomChange::RecordingStarted { by } => {
                json!({"event": "recording_started", "by": peer(by)})
            }
            RoomChange::RecordingStopped { by } => {
                json!({"event": "recording_stopped", "by": peer(by)})
            }
            RoomChange::RoomEnded { by } => json!({"event": "room_ended", "by": peer(by)}),
            RoomChange::TreeMoved { member, position } => json!({
                "event": "tree_moved", "member": peer(member), "name": self.name(member),
                "parent": peer(&position.parent), "depth": position.depth,
            }),
            RoomChange::ReplayAvailable {
                by,
                manifest,
                recording,
                recorder,
                title,
                bytes,
                ..
            } => json!({
                "event": "replay_available", "by": peer(by), "name": self.name(by),
                "manifest": manifest.to_string(), "recording": recording.to_string(),
                "recorder": peer(recorder), "title": title, "bytes": bytes,
                "link": replay_link(change).map(|link| link.encode()),
            }),
            RoomChange::MemberRecording { member, on } => json!({
                "event": if *on { "member_recording_started" } else { "member_recording_stopped" },
                "member": peer(member), "name": self.name(member),
            }),
        };
        value["room"] = json!(self.room.to_string());
        value
    }
}

/// The replay link a "replay available" announcement amounts to.
fn replay_link(change: &RoomChange) -> Option<earshot_protocol::replay::ReplayLink> {
    let RoomChange::ReplayAvailable {
        manifest,
        recorder,
        addrs,
        ..
    } = change
    else {
        return None;
    };
    Some(earshot_protocol::replay::ReplayLink {
        manifest: *manifest,
        recorder: *recorder,
        addrs: earshot_protocol::replay::parse_addrs(addrs).unwrap_or_default(),
    })
}

fn article(role: RoomRole) -> &'static str {
    match role {
        RoomRole::Listener => "a",
        RoomRole::Speaker => "a",
        RoomRole::Moderator => "a",
        RoomRole::Host => "the",
    }
}

fn member_json(member: &Member) -> Value {
    json!({
        "peer_id": member.key.as_peer_id().to_string(),
        "name": member.display_name(),
        "role": member.role().as_str(),
        "hand_raised": member.hand.value.is_some(),
        "muted": member.muted.value,
    })
}

/// The relay tree from the room state: the host, then each present member under the parent it
/// says it has, depth first; members not (yet) attached last.
fn tree_layout(
    state: &earshot_protocol::state::RoomState,
) -> Vec<(PeerKey, Option<PeerKey>, Option<u16>)> {
    let present: Vec<&Member> = state.present();
    let mut children: HashMap<PeerKey, Vec<PeerKey>> = HashMap::new();
    for member in &present {
        if let Some(position) = member.position.value {
            children
                .entry(position.parent)
                .or_default()
                .push(member.key);
        }
    }
    for list in children.values_mut() {
        list.sort();
    }
    let mut layout = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![(state.host, None, 0u16)];
    while let Some((key, parent, depth)) = stack.pop() {
        if !seen.insert(key) {
            continue;
        }
        layout.push((key, parent, Some(depth)));
        if let Some(list) = children.get(&key) {
            for child in list.iter().rev() {
                stack.push((*child, Some(key), depth + 1));
            }
        }
    }
    for member in present {
        if !seen.contains(&member.key) {
            layout.push((member.key, None, None));
        }
    }
    layout
}
