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
    },
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
        RoomCommand::Show { room } => {
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
    })
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
