//! Support for creators: the host's payment address signed into the room, a listener's signed
//! support message shown to everyone, the host's signed receipt, and the recording keeping
//! both (a listener cannot confirm support in the host's name).

use earshot_node::Event;

use crate::harness::TestHome;
use crate::live::{listener, local_room_with, tone_host};

const ADDRESS: &str = "https://example.org/tip/ana";

#[test]
fn a_listeners_support_and_the_hosts_receipt_reach_everyone_and_the_recording() {
    let (ana, joe, sue) = (TestHome::new(), TestHome::new(), TestHome::new());
    let room = local_room_with(&ana, "Tips", &["--record", "--support", ADDRESS]);
    let shown = ana.json(&["room", "show", &room]);
    assert_eq!(shown["support"], ADDRESS);
    let mut host = tone_host(&ana, &room, &[]);
    let link = host.listener_link();
    let recording = host.expect_map("recording", |e| match e {
        Event::Recording { recording, .. } => Some(*recording),
        _ => None,
    });
    let mut joe_node = listener("joe", &joe, &link, &[]);
    let mut sue_node = listener("sue", &sue, &link, &[]);
    // Told at once where the host takes support, in the host's signed word.
    for node in [&mut joe_node, &mut sue_node] {
        node.expect(
            "joined, with the support address",
            |e| matches!(e, Event::Joined { support: Some(address), .. } if address == ADDRESS),
        );
    }
    let joe_id = joe.peer_id();
    joe_node.say("/support 5 EUR thanks for the show");
    let said = |e: &Event| {
        matches!(e, Event::Support { from, amount: 5, unit, note, .. }
            if from.as_peer_id().to_string() == joe_id
                && unit == "EUR" && note == "thanks for the show")
    };
    host.expect("joe's support at the host", said);
    sue_node.expect("joe's support at sue", said);
    // Sue cannot confirm it in the host's name.
    sue_node.say("/confirm joe");
    sue_node.expect("sue refused", |e| matches!(e, Event::Error { .. }));
    // The host confirms: everyone sees the receipt.
    host.say("/confirm joe");
    let confirmed = |e: &Event| {
        matches!(e, Event::SupportConfirmed { supporter, .. }
            if supporter.as_peer_id().to_string() == joe_id)
    };
    joe_node.expect("the receipt at joe", confirmed);
    sue_node.expect("the receipt at sue", confirmed);
    // Someone arriving later is told both, with what was said lately.
    let bo = TestHome::new();
    let mut late = listener("bo", &bo, &link, &[]);
    late.expect("joe's support, told to a newcomer", said);
    late.expect("the receipt, told to a newcomer", confirmed);
    host.say("/end");
    host.expect("saved", |e| matches!(e, Event::RecordingSaved { .. }));
    assert_eq!(host.exit_code(), 0);
    let kept = ana.json(&["recordings", "show", &recording.to_string()]);
    let supports = kept["supports"].as_array().expect("supports");
    assert_eq!(supports.len(), 1, "{kept}");
    assert_eq!(supports[0]["name"], "joe");
    assert_eq!(supports[0]["amount"], 5);
    assert_eq!(supports[0]["unit"], "EUR");
    assert_eq!(supports[0]["note"], "thanks for the show");
    assert_eq!(supports[0]["verified"], true);
    assert_eq!(supports[0]["confirmed"], true);
    let text = ana.ok(&["recordings", "show", &recording.to_string()]);
    assert!(
        text.contains("support:  joe") && text.contains("confirmed by the host"),
        "{text}"
    );
    // The replay carries both, checked as signed: fetched by someone who was not there.
    let link = crate::studio::publish(&ana, &recording.to_string());
    let there = crate::studio::verify_elsewhere(&ana, &TestHome::new(), &link);
    let supports = there["supports"].as_array().expect("supports");
    assert_eq!(supports.len(), 1, "{there}");
    assert_eq!(supports[0]["peer_id"], joe_id.as_str());
    assert_eq!(supports[0]["amount"], 5);
    assert_eq!(supports[0]["note"], "thanks for the show");
    assert_eq!(supports[0]["confirmed"], true, "{there}");
}
