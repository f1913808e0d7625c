//! Scheduled rooms: created with a start time and a description, announced ahead to a
//! community relay that lists them as upcoming (whether or not the host's node runs), a
//! calendar entry a calendar parser reads, and a joiner early waiting for the host.

use earshot_node::Event;
use serde_json::Value;

use crate::harness::TestHome;
use crate::live::{LOCAL, Live, listener};

const ABOUT: &str = "Chapter three, and what comes next; bring questions";

/// A relay on 127.0.0.1: its address (ending in /p2p/…).
fn relay(home: &TestHome) -> (Live, String) {
    let mut relay = Live::start("relay", home, &["relay", "--listen", LOCAL]);
    let addr = relay.expect_map("relay", |e| match e {
        Event::Relay { addrs, .. } => addrs.first().map(ToString::to_string),
        _ => None,
    });
    (relay, addr)
}

/// The lobby as the relay at `addr` answers it.
fn lobby(asker: &TestHome, addr: &str) -> Vec<Value> {
    asker
        .json(&["rooms", "--bootstrap", addr])
        .as_array()
        .expect("a list of rooms")
        .clone()
}

#[test]
fn a_room_announced_ahead_is_listed_by_a_relay_and_its_early_joiner_waits_for_the_host() {
    let (operator, ana, bob, joe) = (
        TestHome::new(),
        TestHome::new(),
        TestHome::new(),
        TestHome::new(),
    );
    let (relay, relay_addr) = relay(&operator);
    let room = ana.json(&[
        "room",
        "new",
        "Book club",
        "--public",
        "--at",
        "2h",
        "--about",
        ABOUT,
        "--listen",
        LOCAL,
    ]);
    let id = room["id"].as_str().expect("id").to_owned();
    let starts_at: earshot_protocol::Timestamp = room["starts_at"]
        .as_str()
        .expect("a start time")
        .parse()
        .expect("a time");
    assert_eq!(room["about"], ABOUT);
    // Nobody hosts it yet: handed to the relay, which lists it as upcoming.
    let announced = ana.ok(&["room", "announce", &id, "--bootstrap", &relay_addr]);
    assert!(announced.contains("Kept by"), "{announced}");
    let rooms = lobby(&bob, &relay_addr);
    let listed = rooms
        .iter()
        .find(|r| r["room"] == id.as_str())
        .unwrap_or_else(|| panic!("the room on the lobby: {rooms:?}"));
    assert_eq!(listed["upcoming"], true);
    assert_eq!(listed["starts_at"], starts_at.to_string());
    assert_eq!(listed["about"], ABOUT);
    assert_eq!(listed["title"], "Book club");
    // The people's listing says when it begins.
    let text = bob.ok(&["rooms", "--bootstrap", &relay_addr]);
    assert!(
        text.contains("Upcoming:") && text.contains("begins") && text.contains("(in 2 h)"),
        "{text}"
    );
    // Joe joins with the lobby's link before the host is there: he waits, told when it begins.
    let link = listed["link"].as_str().expect("a link").to_owned();
    let mut early = listener("joe", &joe, &link, &[]);
    early.expect(
        "waiting for the host",
        |e| matches!(e, Event::WaitingForHost { starts_at: at, .. } if *at == starts_at),
    );
    // The host opens the room (early): Joe is in, told it begins later.
    let mut host = Live::start(
        "ana",
        &ana,
        &["host", &id, "--input", "sine", "--output", "null"],
    );
    early.expect(
        "joined, early",
        |e| matches!(e, Event::Joined { starts_at: Some(at), .. } if *at == starts_at),
    );
    host.expect("joe in", |e| {
        matches!(e, Event::MemberJoined { name, .. } if name == "joe")
            || matches!(e, Event::Audience { listeners: 1, .. })
    });
    host.say("/end");
    assert_eq!(host.exit_code(), 0);
    // The relay keeps the announcement ahead after the host's node is gone.
    let rooms = lobby(&bob, &relay_addr);
    assert!(
        rooms
            .iter()
            .any(|r| r["room"] == id.as_str() && r["upcoming"] == true),
        "{rooms:?}"
    );
    drop(early);
    drop(relay);
}

#[test]
fn a_scheduled_room_makes_a_calendar_entry_and_an_unscheduled_one_says_why_not() {
    use icalendar::Component;
    let ana = TestHome::new();
    let room = ana.json(&[
        "room",
        "new",
        "Late, night; radio",
        "--at",
        "2026-12-24T18:00Z",
        "--about",
        ABOUT,
        "--listen",
        LOCAL,
    ]);
    let id = room["id"].as_str().expect("id");
    let ics = ana.ok(&["room", "show", id, "--ics"]);
    assert!(ics.contains("\r\n"), "CRLF line ends");
    let calendar: icalendar::Calendar = ics.parse().expect("a calendar parser reads it");
    let events: Vec<&icalendar::Event> = calendar
        .components
        .iter()
        .filter_map(|c| c.as_event())
        .collect();
    let [event] = events.as_slice() else {
        panic!("one event: {ics}")
    };
    assert_eq!(event.get_summary(), Some("Late, night; radio"));
    let start = match event.get_start() {
        Some(icalendar::DatePerhapsTime::DateTime(icalendar::CalendarDateTime::Utc(at))) => {
            at.timestamp()
        }
        other => panic!("a UTC start: {other:?}"),
    };
    assert_eq!(start, 1_798_135_200, "2026-12-24T18:00Z");
    let description = event.get_description().expect("a description");
    assert!(description.contains(ABOUT), "{description}");
    // The link in it joins the room (and says when it begins).
    let link = description
        .split_whitespace()
        .find(|word| word.starts_with("earshot://join/"))
        .expect("a link");
    let inspected = ana.json(&["invite", "inspect", link]);
    assert_eq!(inspected["room"], id);
    assert_eq!(inspected["starts_at"], "2026-12-24T18:00:00Z");
    // A room without a start has no calendar entry.
    let plain = ana.json(&["room", "new", "Anytime", "--listen", LOCAL]);
    let output = ana.run(&["room", "show", plain["id"].as_str().expect("id"), "--ics"]);
    assert_ne!(output.status.code(), Some(0));
    assert!(
        crate::harness::stderr(&output).contains("has no start time"),
        "{}",
        crate::harness::stderr(&output)
    );
}
