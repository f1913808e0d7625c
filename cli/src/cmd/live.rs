//! `earshot host` and `earshot join`: a live room in the terminal.
//!
//! The node runs the room ([`earshot_node::room`]); this reads lines on standard input as
//! commands (`/hand`, `/promote PEER`, `/who`, … see `/help`) or chat, and prints the node's
//! events, one line each for people, or one JSON object per line with `--json`.

use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::Args;
use earshot_node::audio::io::{Input, Output};
use earshot_node::event::{CloseReason, Event};
use earshot_node::identity::Identity;
use earshot_node::node::{Node, NodeConfig, SpawnError};
use earshot_node::room::{HostOptions, JoinOptions, Room};
use earshot_protocol::InviteLink;
use multiaddr::{Multiaddr, Protocol};
use tokio::io::AsyncBufReadExt;
use tokio::sync::broadcast;

use super::Context;
use super::reachability::{ReachabilityArgs, ReachabilitySettings};
use crate::Exit;
use crate::output::{one_line, print_event, say, shout};
use crate::render::Text;
use crate::runtime::{Runtime, stop_requested};

mod line;
mod screen;
mod support;
mod view;

use line::Line;

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
    reach: ReachabilityArgs,
    #[command(flatten)]
    studio: Studio,
    /// Print one line per event and read commands a line at a time even on a terminal (as
    /// with a pipe or --json), instead of the room view.
    #[arg(long)]
    lines: bool,
}

/// A studio track ("double-ender") for the room's recording.
#[derive(Debug, Args)]
pub struct Studio {
    /// While the room is recorded and you speak, also record your voice as your microphone
    /// hears it, at twice the live bitrate (64 kbit/s), signed by you, and hand it to the
    /// room's recording (a second behind the room, on a stream of its own): exports and replays
    /// take it in place of what the room heard. Costs another 64 kbit/s of upload while you
    /// speak.
    #[arg(long)]
    studio: bool,
}

/// A node's upload budget in the relay tree.
#[derive(Debug, Args)]
pub struct Upload {
    /// How many listeners you feed directly; the rest are fed by listeners (a relay tree).
    /// Default: from --upload-kbps, else 4.
    #[arg(long, value_name = "N")]
    max_children: Option<u16>,
    /// Your upload bandwidth for the room, in kbit/s: you feed as many listeners as 80 % of it
    /// carries, at what feeding one is measured to cost (all the voices heard at once, their
    /// proofs, the transport; ~40 each until measured). Feeding fewer when your listeners fall
    /// behind happens either way, but undeclared, too late for the first of them.
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
    reach: ReachabilityArgs,
    /// Play an adversary in the room's tree, for testing its defences: alter, inject, replay,
    /// reorder, withhold, impersonate, claim-capacity, flood-ids, unassigned-streams, turn,
    /// forge-keys or studio-flood.
    #[arg(long, hide = true, value_name = "KIND")]
    misbehave: Option<earshot_node::fanout::Misbehave>,
    /// Keep every audio frame and control frame received, and this member's keys, in FILE
    /// (for testing what a removed member could read).
    #[arg(long, hide = true, value_name = "FILE")]
    capture: Option<std::path::PathBuf>,
    /// Drop PERCENT of the frames before they are played, in a fixed order, as if they missed
    /// their playout time (for testing what the room does about loss; relaying is untouched).
    #[arg(long, hide = true, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(0..=100))]
    impair_playout: Option<u8>,
    /// Hold back everything read from the parent MS milliseconds, plus up to JITTER more (seeded,
    /// in order), as a slow and jittery path would (for testing the jitter buffer and the tree's
    /// reports).
    #[arg(long, hide = true, value_name = "MS[:JITTER]", value_parser = parse_delay)]
    impair_delay: Option<(u64, u64)>,
    #[command(flatten)]
    studio: Studio,
    /// Agree to speak in the room's recordings whenever on stage in a recorded room. Without
    /// it, your microphone stays off there until you type /consent.
    #[arg(long)]
    consent_recording: bool,
    /// Print one line per event and read commands a line at a time even on a terminal (as
    /// with a pipe or --json), instead of the room view.
    #[arg(long)]
    lines: bool,
}

/// `MS` or `MS:JITTER` (milliseconds, each at most ten seconds).
fn parse_delay(text: &str) -> Result<(u64, u64), String> {
    let (base, jitter) = text.split_once(':').unwrap_or((text, "0"));
    let ms = |part: &str| {
        part.parse::<u64>()
            .ok()
            .filter(|ms| *ms <= 10_000)
            .ok_or_else(|| format!("{part:?} is not a number of milliseconds (0-10000)"))
    };
    Ok((ms(base)?, ms(jitter)?))
}

pub fn host(ctx: &Context, args: HostArgs) -> anyhow::Result<Exit> {
    let home = ctx.open_home()?;
    let record = home.find_room(&args.room)?;
    let mut listen = if args.listen.is_empty() {
        record.listen.clone()
    } else {
        args.listen
    };
    listen.extend(relayed(&args.via)?);
    let identity = Identity::load(home.dir())?;
    let settings = ReachabilitySettings::load(home.dir(), &args.reach)?;
    let ctx = ctx.clone();
    Runtime::new()?.run(async move {
        let node = spawn(
            identity,
            listen,
            (args.upload.max_children(), args.upload.upload_kbps),
            &settings,
            (None, None),
        )
        .await?;
        let serving = Arc::clone(&home);
        let _control = earshot_node::control::serve(home.dir(), move |request| {
            crate::serve_command(Arc::clone(&serving), request)
        })?;
        let mut events = node.subscribe();
        if !ctx.json && node.may_use_relays() {
            // A link must work: AutoNAT and a relay get a moment before one is handed out.
            say!("Checking whether peers can reach you directly…");
        }
        let options = HostOptions {
            name: args.name,
            input: args.input,
            output: args.output,
            forward: args.forward,
            carriers: args.relay,
            studio: args.studio.studio,
        };
        let room = match node.host_room(home, record, options).await {
            Ok(room) => room,
            Err(err) => {
                node.shutdown().await;
                return Err(err.into());
            }
        };
        let code = Live::new(&ctx, &node, room, true)
            .run(&mut events, args.lines)
            .await;
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
    let mut listen = if args.listen.is_empty() {
        vec![
            "/ip4/0.0.0.0/udp/0/quic-v1"
                .parse()
                .expect("valid multiaddr"),
            "/ip4/0.0.0.0/tcp/0".parse().expect("valid multiaddr"),
        ]
    } else {
        args.listen
    };
    listen.extend(relayed(&args.via)?);
    let settings = ReachabilitySettings::load(&dir, &args.reach)?;
    let ctx = ctx.clone();
    Runtime::new()?.run(async move {
        let node = spawn(
            identity,
            listen,
            (args.upload.max_children(), args.upload.upload_kbps),
            &settings,
            (args.misbehave, args.capture),
        )
        .await?;
        if let Some(percent) = args.impair_playout {
            node.fanout().impair_playout(percent, 1);
        }
        if let Some((base, jitter)) = args.impair_delay {
            node.fanout().impair_delay(
                std::time::Duration::from_millis(base),
                std::time::Duration::from_millis(jitter),
                1,
            );
        }
        let mut events = node.subscribe();
        let options = JoinOptions {
            name,
            input: args.input,
            output: args.output,
            storage: dir,
            studio: args.studio.studio,
            consent_recording: args.consent_recording,
        };
        // While the join waits for the host of a room that begins later, say so at once (the
        // room's own events are shown once it is joined).
        let mut early = node.subscribe();
        let joining = node.join_room(link, options);
        tokio::pin!(joining);
        let joined = loop {
            tokio::select! {
                result = &mut joining => break result,
                event = early.recv() => {
                    if let Ok(event @ Event::WaitingForHost { .. }) = event {
                        show(&ctx, &mut Text::default(), &event);
                    }
                }
            }
        };
        let room = match joined {
            Ok(room) => room,
            Err(err) => {
                // What the node said (the refusal, for scripts) before the error.
                let mut text = Text::default();
                while let Ok(event) = events.try_recv() {
                    show(&ctx, &mut text, &event);
                }
                node.shutdown().await;
                bail!("{err}");
            }
        };
        let code = Live::new(&ctx, &node, room, false)
            .run(&mut events, args.lines)
            .await;
        node.shutdown().await;
        Ok(Exit(code))
    })
}

/// The relayed listen addresses (`…/p2p/RELAY/p2p-circuit`) for `--via` relays.
fn relayed(via: &[Multiaddr]) -> anyhow::Result<Vec<Multiaddr>> {
    via.iter()
        .map(|addr| {
            earshot_protocol::addr::circuit_through(addr)
                .with_context(|| format!("{addr}: a relay's address must end in /p2p/PEERID"))
        })
        .collect()
}

/// Starts the node; if a remembered TCP port is taken now, listens on another TCP port (links
/// carry the QUIC address first).
async fn spawn(
    identity: Identity,
    mut listen: Vec<Multiaddr>,
    (max_children, upload_kbps): (u16, Option<u32>),
    settings: &ReachabilitySettings,
    (misbehave, capture): (
        Option<earshot_node::fanout::Misbehave>,
        Option<std::path::PathBuf>,
    ),
) -> anyhow::Result<Node> {
    let config = |listen: Vec<Multiaddr>| NodeConfig {
        misbehave,
        capture: capture.clone(),
        upload_kbps,
        ..settings.node_config(listen, max_children)
    };
    match Node::spawn(identity.clone(), config(listen.clone())).await {
        Ok(node) => Ok(node),
        Err(SpawnError::Listen { addr, .. }) if is_tcp(&addr) => {
            tracing::warn!(%addr, "TCP port taken; listening on another one");
            for entry in &mut listen {
                if *entry == addr {
                    *entry = entry
                        .iter()
                        .map(|p| match p {
                            Protocol::Tcp(_) => Protocol::Tcp(0),
                            p => p,
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

/// Prints an event: as JSON for scripts, as lines for people.
fn show(ctx: &Context, text: &mut Text, event: &Event) {
    if ctx.json {
        print_event(event);
    } else {
        for line in text.lines(event) {
            say!("{line}");
        }
    }
}

/// A room in the terminal.
struct Live<'a> {
    ctx: &'a Context,
    node: &'a Node,
    room: Room,
    /// This node hosts the room.
    host: bool,
    text: Text,
    /// Support said in the room, newest last: who, their name, the message's digest, and
    /// whether the host confirmed it (for `/confirm`).
    supports: Vec<support::Said>,
}

impl<'a> Live<'a> {
    fn new(ctx: &'a Context, node: &'a Node, room: Room, host: bool) -> Self {
        Self {
            ctx,
            node,
            room,
            host,
            text: Text::default(),
            supports: Vec::new(),
        }
    }

    /// Runs until the room closes, `/leave`/`/end`, Ctrl-C or SIGTERM; then waits for this
    /// node's part to finish (children handed over), printing what comes. Returns the exit
    /// code: 1 when removed from the room.
    async fn run(mut self, events: &mut broadcast::Receiver<Event>, lines: bool) -> u8 {
        let code = if lines || !screen::wanted(self.ctx.json) {
            self.follow(events).await
        } else {
            self.follow_on_screen(events).await
        };
        let id = self.room.id();
        let finished = self.room.finished();
        tokio::pin!(finished);
        loop {
            tokio::select! {
                _ = &mut finished => break,
                event = events.recv() => match event {
                    Ok(event) => show_room_event(self.ctx, &mut self.text, id, &event),
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
        }
        while let Ok(event) = events.try_recv() {
            show_room_event(self.ctx, &mut self.text, id, &event);
        }
        code
    }

    async fn follow(&mut self, events: &mut broadcast::Receiver<Event>) -> u8 {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        let mut stdin_open = true;
        let id = self.room.id();
        // Watched for the whole loop: a signal between two turns of it is not missed.
        let stop = stop_requested();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(event) => {
                        self.track(&event);
                        show_room_event(self.ctx, &mut self.text, id, &event);
                        if let Event::Closed { room, reason } = event
                            && room == id
                        {
                            return u8::from(reason == CloseReason::Removed);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "output fell behind the room");
                    }
                    Err(broadcast::error::RecvError::Closed) => return 1,
                },
                line = lines.next_line(), if stdin_open => match line {
                    Ok(Some(line)) => {
                        if self.on_line(&line).await {
                            return 0;
                        }
                    }
                    // Standard input closed (a script, or a service): keep running.
                    Ok(None) | Err(_) => stdin_open = false,
                },
                _ = &mut stop => {
                    self.room.leave().await;
                    return 0;
                }
            }
        }
    }

    /// Carries out a line of input; true when it ends this node's time in the room.
    async fn on_line(&mut self, text: &str) -> bool {
        match self.parse(text).await {
            Ok(line) => self.carry_out(line).await,
            Err(err) => {
                self.print_error(&format!("{err:#}"));
                false
            }
        }
    }

    /// Carries out a command; true when it ends this node's time in the room.
    async fn carry_out(&mut self, line: Line) -> bool {
        let result = match line {
            Line::Nothing => Ok(()),
            Line::Act(body) => self.room.act(body).await,
            Line::Record(on) => self.room.record(on).await,
            Line::MuteSelf(muted) => self.room.set_self_muted(muted).await,
            Line::Consent => self.room.consent_to_recording().await,
            Line::Confirm(who) => match self.unconfirmed_support_of(&who) {
                Ok(body) => self.room.act(body).await,
                Err(err) => {
                    self.print_error(&format!("{err:#}"));
                    Ok(())
                }
            },
            Line::Audio => match self.room.audio_stats().await {
                Ok(stats) if self.ctx.json => {
                    print_event(&Event::AudioStats(stats));
                    Ok(())
                }
                Ok(stats) => {
                    for line in self.text.audio(&stats, self.host) {
                        say!("{line}");
                    }
                    Ok(())
                }
                Err(err) => Err(err),
            },
            Line::Who => self.print_who().await,
            Line::Listeners(page) => self.print_listeners(page).await,
            Line::Tree => self.print_tree().await,
            Line::Relay(addr) => self.room.ask_to_carry(addr).await,
            Line::Invite { role, expires } => {
                let now = earshot_node::clock::now();
                match expires
                    .map(|text| crate::when::parse_expiry(&text, now))
                    .transpose()
                {
                    Ok(expires_at) => self.room.invite(role, expires_at).await.map(|_| ()),
                    Err(err) => {
                        self.print_error(&format!("{err:#}"));
                        Ok(())
                    }
                }
            }
            Line::Help => {
                say!("{}", line::HELP);
                Ok(())
            }
            Line::Leave => {
                self.room.leave().await;
                return true;
            }
            Line::End => match self.room.end().await {
                Ok(()) => return true,
                Err(err) => Err(err),
            },
        };
        if let Err(err) = result {
            self.print_error(&err.to_string());
        }
        false
    }

    async fn parse(&self, text: &str) -> anyhow::Result<Line> {
        let parsed = line::parse(text)?;
        // Names are resolved against the room as it is now.
        match parsed {
            line::Parsed::Ready(line) => Ok(line),
            line::Parsed::NeedsMember { who, make } => {
                let view = self.room.view().await.context("not in the room any more")?;
                let member = earshot_node::room::find_member(&view, &who)?;
                Ok(make(member))
            }
        }
    }

    fn print_error(&self, message: &str) {
        if self.ctx.json {
            print_event(&Event::Error {
                room: None,
                message: message.to_owned(),
            });
        } else {
            shout!("earshot: {message}");
        }
    }

    async fn print_who(&mut self) -> Result<(), earshot_node::room::RoomError> {
        let view = self.room.view().await?;
        let who = Event::who(self.room.id(), &view);
        if self.ctx.json {
            print_event(&who);
            return Ok(());
        }
        let state = &view.state;
        let listeners = view.view.as_ref().map_or(0, |audience| audience.listeners);
        say!(
            "\"{}\": {} on stage, {listeners} listening{}",
            one_line(&view.descriptor.title),
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
                one_line(&member.display_name()),
                member.key.as_peer_id(),
                if notes.is_empty() {
                    String::new()
                } else {
                    format!("  ({})", notes.join(", "))
                }
            );
        }
        // Hands in the audience (the stage's own are marked above).
        if let Some(audience) = &view.view {
            let shown: Vec<_> = audience
                .hands
                .iter()
                .filter(|hand| {
                    !state
                        .members
                        .get(&hand.key)
                        .is_some_and(|m| state.is_present(m))
                })
                .collect();
            if !shown.is_empty() {
                say!(
                    "  hands raised in the audience ({} in all):",
                    audience.hands_total
                );
                for hand in shown {
                    say!(
                        "  {:<10} {:<16} {}",
                        "listener",
                        one_line(&hand.name),
                        hand.key.as_peer_id()
                    );
                }
            }
        }
        if listeners > 0 {
            say!("  (/who listeners: who arrived lately)");
        }
        Ok(())
    }

    /// `/who listeners [PAGE]`: who arrived lately, as the host saw them.
    async fn print_listeners(&mut self, page: u32) -> Result<(), earshot_node::room::RoomError> {
        let event = self.room.listeners(page.saturating_sub(1)).await?;
        if self.ctx.json {
            print_event(&event);
        } else {
            for line in self.text.lines(&event) {
                say!("{line}");
            }
        }
        Ok(())
    }

    /// This node's place in the relay tree: the path from the host, and its children.
    async fn print_tree(&mut self) -> Result<(), earshot_node::room::RoomError> {
        let tree = self.room.tree().await?;
        if self.ctx.json {
            print_event(&tree);
        } else {
            for line in self.text.lines(&tree) {
                say!("{line}");
            }
        }
        Ok(())
    }
}

/// Prints an event that concerns the room `id` (or the node as a whole), not other rooms'.
fn show_room_event(ctx: &Context, text: &mut Text, id: earshot_protocol::RoomId, event: &Event) {
    if ours(ctx, id, event) {
        show(ctx, text, event);
    }
}

/// Whether `event` concerns the room `id` (or the node as a whole), not other rooms'.
fn ours(ctx: &Context, id: earshot_protocol::RoomId, event: &Event) -> bool {
    match event {
        Event::Listening { .. }
        | Event::Announced { .. }
        | Event::CarryRequested(_)
        | Event::WaitingForHost { .. } => false,
        Event::DirectConnection { .. } => ctx.json,
        event => event.room().is_none_or(|room| room == id),
    }
}
