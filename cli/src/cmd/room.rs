//! `earshot room new|list|show`.

use clap::{ArgGroup, Args, Subcommand};
use earshot_node::clock;
use earshot_node::home::NewRoom;
use earshot_node::store::RoomRecord;
use earshot_protocol::room::{MAX_LISTENERS_LIMIT, MAX_STAGE_LIMIT};
use earshot_protocol::{Audience, Grant, RecordingPolicy, Role, RoomLimits, Visibility};
use multiaddr::Multiaddr;
use serde_json::{Value, json};

use super::Context;
use crate::Exit;
use crate::output::say;
use crate::output::{self, print_json};
use crate::when::parse_expiry;

#[derive(Debug, Subcommand)]
pub enum RoomCommand {
    /// Create a room hosted by this node and print invite links for it.
    New(NewArgs),
    /// List the rooms this node hosts.
    List,
    /// Show one room: its descriptor, addresses and the invites issued for it.
    Show {
        /// Room id, a unique prefix of it, or the exact title.
        room: String,
        /// Print a calendar entry (iCalendar) for a scheduled room instead, with a listener
        /// link valid until 12 hours after its start.
        #[arg(long)]
        ics: bool,
    },
    /// Hand a scheduled public room's announcement to community relays, which keep it on the
    /// lobby until a quarter of an hour after its start (`earshot rooms` lists it as upcoming),
    /// whether or not this node is running then.
    Announce(AnnounceArgs),
}

#[derive(Debug, Args)]
pub struct AnnounceArgs {
    /// Room id, a unique prefix of it, or the exact title.
    room: String,
    /// A community relay (or any node on the lobby) to keep it, as a multiaddr ending in
    /// /p2p/<PeerId> (repeatable).
    #[arg(long, value_name = "MULTIADDR", required = true)]
    bootstrap: Vec<Multiaddr>,
    /// The host's name as the lobby lists it.
    #[arg(long, default_value = "host")]
    name: String,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("visibility").args(["public", "unlisted", "private"])))]
pub struct NewArgs {
    /// The room's title.
    title: String,
    /// Announce the room on the lobby so anyone can find it.
    #[arg(long)]
    public: bool,
    /// Only people with a link can find it (the default).
    #[arg(long)]
    unlisted: bool,
    /// Only people with a link can find it, and only its members can hear or read it: its
    /// audio, chat, names and recordings are end-to-end encrypted (at most 1,000 members;
    /// community relays and listeners relay what they cannot read).
    #[arg(long)]
    private: bool,
    /// Record the room from the moment it goes live.
    #[arg(long)]
    record: bool,
    /// Let every member record what they hear, for themselves (`/record start`); everyone is
    /// told when someone does.
    #[arg(long)]
    members_may_record: bool,
    /// Where the host will listen (repeatable). Default: a free port on all interfaces.
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<Multiaddr>,
    /// Address to put in invite links (repeatable). Default: this machine's interfaces.
    #[arg(long, value_name = "MULTIADDR")]
    addr: Vec<Multiaddr>,
    /// How long the printed links stay valid (2h, 7d, or a UTC time).
    #[arg(long, default_value = "7d", value_name = "WHEN")]
    expires: String,
    /// Most listeners at once; joiners past it are told the room is full.
    #[arg(long, default_value_t = RoomLimits::default().listeners, value_name = "N",
          value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_LISTENERS_LIMIT)))]
    max_listeners: u32,
    /// Most people on stage at once, the host included.
    #[arg(long, default_value_t = RoomLimits::default().stage, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_STAGE_LIMIT)))]
    max_stage: u16,
    /// When the room begins: in a while (90m, 2d) or a UTC time (2026-12-24T18:00Z). Signed
    /// into the room; joiners before then are told, and wait for the host. A public room can
    /// then be announced ahead (`room announce`), and `room show --ics` makes a calendar entry.
    #[arg(long, value_name = "WHEN")]
    at: Option<String>,
    /// What the room is about (a few sentences, at most 500 bytes; with --at).
    #[arg(long, value_name = "TEXT", requires = "at")]
    about: Option<String>,
    /// Where listeners can support you: a payment address or URL (at most 200 bytes), signed
    /// into the room and shown to everyone who joins. Earshot moves no money: listeners say
    /// what they sent (`/support`), and you confirm what you received (`/confirm`).
    #[arg(long, value_name = "ADDRESS|URL")]
    support: Option<String>,
}

pub fn run(ctx: &Context, command: RoomCommand) -> anyhow::Result<Exit> {
    let home = ctx.open_home()?;
    match command {
        RoomCommand::New(args) => {
            let now = clock::now();
            let expires_at = parse_expiry(&args.expires, now)?;
            let visibility = if args.public {
                Visibility::Public
            } else if args.private {
                Visibility::Private
            } else {
                Visibility::Unlisted
            };
            let schedule = args
                .at
                .as_deref()
                .map(|at| {
                    anyhow::Ok(earshot_protocol::Schedule {
                        starts_at: parse_expiry(at, now)
                            .map_err(|err| anyhow::anyhow!("--at: {err:#}"))?,
                        about: args.about.clone().unwrap_or_default(),
                    })
                })
                .transpose()?;
            let room = home.create_room(
                NewRoom {
                    title: args.title,
                    visibility,
                    recording: RecordingPolicy {
                        host_records: args.record,
                        members_may_record: args.members_may_record,
                    },
                    listen: (!args.listen.is_empty()).then_some(args.listen),
                    advertise: (!args.addr.is_empty()).then_some(args.addr),
                    limits: RoomLimits {
                        stage: args.max_stage,
                        listeners: args.max_listeners,
                    },
                    schedule,
                    support: args.support,
                },
                now,
            )?;
            let mut links = Vec::new();
            for role in [Role::Listener, Role::Speaker] {
                let grant = Grant {
                    audience: Audience::Bearer,
                    role,
                    not_before: now,
                    expires_at,
                    depth: 0,
                };
                links.push((role, home.create_invite(&room, grant, now)?));
            }
            if ctx.json {
                let mut value = room_json(&room);
                value["links"] = links
                    .iter()
                    .map(|(role, link)| (role.as_str().to_owned(), json!(link.encode())))
                    .collect::<serde_json::Map<_, _>>()
                    .into();
                print_json(&value);
            } else {
                let d = &room.descriptor;
                say!("Created room \"{}\" ({})", d.title, d.visibility);
                say!("  id: {}", d.id);
                if d.recording.host_records {
                    say!("  recording: on when the room goes live");
                }
                if let Some(schedule) = &d.schedule {
                    say!(
                        "  begins:    {}",
                        crate::when::describe(schedule.starts_at, now)
                    );
                }
                if let Some(support) = &d.support {
                    say!("  support:   {}", output::one_line(support));
                }
                for (role, link) in &links {
                    say!();
                    say!(
                        "{} link (valid until {expires_at}):",
                        capitalise(role.as_str())
                    );
                    say!("{link}");
                }
                say!();
                say!(
                    "More links: earshot invite create {} --role listener|speaker|moderator",
                    d.id.short()
                );
            }
        }
        RoomCommand::List => {
            let rooms = home.store().rooms()?;
            if ctx.json {
                print_json(&rooms.iter().map(room_json).collect());
            } else if rooms.is_empty() {
                say!("No rooms yet. Create one with: earshot room new \"TITLE\"");
            } else {
                say!("{:<10} {:<9} {:<20}  TITLE", "ID", "VISIBLE", "CREATED");
                for room in &rooms {
                    let d = &room.descriptor;
                    say!(
                        "{:<10} {:<9} {:<20}  {}",
                        d.id.short(),
                        d.visibility.as_str(),
                        d.created_at.to_string(),
                        d.title
                    );
                }
            }
        }
        RoomCommand::Show { room, ics: true } => {
            let room = home.find_room(&room)?;
            let now = clock::now();
            let Some(starts_at) = room.descriptor.starts_at() else {
                anyhow::bail!(
                    "room \"{}\" has no start time: a calendar entry needs one (room new --at)",
                    room.descriptor.title
                );
            };
            let grant = Grant {
                audience: Audience::Bearer,
                role: Role::Listener,
                not_before: now,
                expires_at: starts_at.plus_millis(earshot_node::home::AHEAD_LINK_MS),
                depth: 0,
            };
            let link = home.create_invite(&room, grant, now)?;
            print!("{}", crate::ics::event(&room.descriptor, &link, now));
        }
        RoomCommand::Announce(args) => announce(&home, args)?,
        RoomCommand::Show { room, ics: false } => {
            let room = home.find_room(&room)?;
            let invites = home.store().invites(&room.descriptor.id)?;
            if ctx.json {
                let mut value = room_json(&room);
                value["invites"] = invites
                    .iter()
                    .map(|invite| {
                        json!({
                            "id": invite.id.to_string(),
                            "role": invite.role.as_str(),
                            "audience": output::audience_json(&invite.audience),
                            "issued_at": invite.issued_at.to_string(),
                            "expires_at": invite.expires_at.to_string(),
                        })
                    })
                    .collect();
                print_json(&value);
            } else {
                let d = &room.descriptor;
                say!("Room \"{}\"", d.title);
                say!("  id:         {}", d.id);
                say!("  host:       {}", output::peer(&d.host));
                say!("  visibility: {}", d.visibility);
                say!(
                    "  recording:  {}",
                    if d.recording.host_records {
                        "host records"
                    } else {
                        "off"
                    }
                );
                say!("  created:    {}", d.created_at);
                if let Some(schedule) = &d.schedule {
                    say!(
                        "  begins:     {}",
                        crate::when::describe(schedule.starts_at, clock::now())
                    );
                    if !schedule.about.is_empty() {
                        say!("  about:      {}", output::one_line(&schedule.about));
                    }
                }
                if let Some(support) = &d.support {
                    say!("  support:    {}", output::one_line(support));
                }
                say!(
                    "  takes:      {} on stage, {} listeners",
                    d.limits.stage,
                    d.limits.listeners
                );
                for addr in &room.listen {
                    say!("  listens on: {addr}");
                }
                for addr in d.addrs() {
                    say!("  in links:   {addr}");
                }
                say!("  invites issued: {}", invites.len());
                for invite in &invites {
                    say!(
                        "    {} {:<9} {} until {}",
                        invite.id.short(),
                        invite.role.as_str(),
                        output::audience_text(&invite.audience),
                        invite.expires_at
                    );
                }
            }
        }
    }
    Ok(Exit(0))
}

fn room_json(room: &RoomRecord) -> Value {
    let d = &room.descriptor;
    json!({
        "id": d.id.to_string(),
        "title": d.title,
        "visibility": d.visibility.as_str(),
        "record": d.recording.host_records,
        "members_may_record": d.recording.members_may_record,
        "host": output::peer(&d.host),
        "created_at": d.created_at.to_string(),
        "max_stage": d.limits.stage,
        "max_listeners": d.limits.listeners,
        "listen": room.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "addrs": d.addrs().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "starts_at": d.starts_at().map(|at| at.to_string()),
        "about": d.schedule.as_ref().map(|s| s.about.clone()),
        "support": d.support,
    })
}

/// `room announce`: the announcement ahead, handed to each relay given.
fn announce(home: &earshot_node::home::Home, args: AnnounceArgs) -> anyhow::Result<()> {
    let room = home.find_room(&args.room)?;
    let now = clock::now();
    let announcement = home.announce_ahead(&room, &args.name, now)?;
    let mut relays = Vec::new();
    for addr in &args.bootstrap {
        let Some(multiaddr::Protocol::P2p(peer)) = addr.iter().last() else {
            anyhow::bail!("--bootstrap {addr}: add /p2p/<PeerId> at the end");
        };
        relays.push((peer, addr.clone()));
    }
    let bytes = announcement.encode();
    // A throwaway identity carries it: the announcement is the host's, signed already.
    let identity = earshot_node::identity::Identity::ephemeral()?;
    let results = crate::runtime::Runtime::new()?.run(async {
        let node = earshot_node::node::Node::spawn(
            identity,
            earshot_node::node::NodeConfig {
                listen: vec![
                    "/ip4/0.0.0.0/udp/0/quic-v1"
                        .parse()
                        .expect("valid multiaddr"),
                ],
                ..earshot_node::node::NodeConfig::default()
            },
        )
        .await?;
        let mut results = Vec::new();
        for (peer, addr) in relays {
            let result = node
                .announce_to(peer, vec![addr.clone()], bytes.clone())
                .await;
            results.push((addr, result));
        }
        node.shutdown().await;
        anyhow::Ok(results)
    })?;
    let kept = results.iter().filter(|(_, result)| result.is_ok()).count();
    for (addr, result) in &results {
        match result {
            Ok(()) => say!("Kept by {addr}"),
            Err(err) => crate::output::shout!("earshot: {addr}: {err}"),
        }
    }
    if kept == 0 {
        anyhow::bail!("no relay kept the announcement");
    }
    say!(
        "\"{}\" is on the lobby as upcoming until {}.",
        room.descriptor.title,
        announcement.expires_at
    );
    Ok(())
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
