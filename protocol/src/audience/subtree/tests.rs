use std::time::{Duration, Instant};

use super::*;

fn key(n: u8) -> PeerKey {
    PeerKey([n; 32])
}

fn report(subtree: u32, free: &[(u8, u16, u16)]) -> Report {
    Report {
        subtree,
        reactions: Vec::new(),
        free: free
            .iter()
            .map(|&(n, below, free)| Slot {
                key: key(n),
                addrs: Vec::new(),
                below,
                free,
            })
            .collect(),
        newcomers: Vec::new(),
        loss: Loss::default(),
    }
}

#[test]
fn a_node_takes_as_many_children_as_it_can_one_stream_each() {
    let now = Instant::now();
    let mut node = Subtree::new(key(0), 2, now);
    assert_eq!(node.child_opened(key(1), now), Ok(()));
    assert_eq!(
        node.child_opened(key(1), now),
        Ok(()),
        "the same child again"
    );
    assert_eq!(node.child_opened(key(2), now), Ok(()));
    assert_eq!(node.child_opened(key(3), now), Err(Refused::Full));
    assert_eq!(node.children().count(), 2);
    node.child_closed(&key(1), now);
    assert!(node.lost_lately(&key(1), now));
    assert!(!node.lost_lately(&key(1), now + LOST_REMEMBERED + Duration::from_secs(1)));
    assert_eq!(node.child_opened(key(3), now), Ok(()));
}

#[test]
fn an_ancestor_is_refused_as_a_child() {
    // An orphan placed in its own subtree (by a report from before it was orphaned) would get
    // its audio from itself.
    let now = Instant::now();
    let mut node = Subtree::new(key(5), 8, now);
    node.set_ancestors(
        [4, 3, 0]
            .iter()
            .map(|&n| Ancestor {
                key: key(n),
                addrs: Vec::new(),
            })
            .collect(),
    );
    assert_eq!(node.child_opened(key(3), now), Err(Refused::Loop));
    assert_eq!(node.child_opened(key(6), now), Ok(()));
    assert_eq!(node.children().count(), 1);
}

#[test]
fn a_child_that_missed_two_reports_offers_no_places() {
    // A crashed child's parent hears of it only when their connection times out; meanwhile its
    // places (the best-looking: all free) must not draw newcomers for long.
    let now = Instant::now();
    let mut node = Subtree::new(key(0), 1, now);
    node.child_opened(key(1), now).expect("room");
    node.report_from(&key(1), report(1, &[(1, 0, 8)]), now);
    let late = now + REPORT_INTERVAL * 2;
    assert_eq!(
        node.report(late).free.len(),
        1,
        "one late report is forgiven"
    );
    let gone = late + REPORT_INTERVAL / 2 + Duration::from_millis(1);
    assert!(node.report(gone).free.is_empty());
    assert_eq!(node.place(gone), None);
}

#[test]
fn reports_add_up_and_reactions_are_capped_by_size() {
    let now = Instant::now();
    let mut node = Subtree::new(key(0), 8, now);
    node.child_opened(key(1), now).expect("room");
    node.child_opened(key(2), now).expect("room");
    let mut big = report(40, &[]);
    big.reactions = vec![ReactionCount {
        emoji: "👏".into(),
        count: 1_000_000,
    }];
    big.newcomers = vec![Newcomer {
        key: key(9),
        name: "joe".into(),
    }];
    node.report_from(&key(1), big, now);
    node.report_from(&key(2), report(3, &[]), now);
    node.react("👏");
    let up = node.report(now);
    assert_eq!(up.subtree, 1 + 40 + 3);
    assert_eq!(
        up.reactions,
        vec![ReactionCount {
            emoji: "👏".into(),
            count: 40 * REACTIONS_PER_NODE + 1
        }]
    );
    assert_eq!(up.newcomers.len(), 1);
    // Handed over: not counted twice.
    let again = node.report(now);
    assert!(again.reactions.is_empty() && again.newcomers.is_empty());
    assert_eq!(again.subtree, 44);
    // A report from a stranger (not a child) is ignored.
    node.report_from(&key(7), report(1_000, &[]), now);
    assert_eq!(node.size(), 44);
}

#[test]
fn places_are_offered_shallowest_first_and_promised() {
    let now = Instant::now();
    let mut node = Subtree::new(key(0), 1, now);
    assert_eq!(node.place(now), Some(Placed::Here));
    // The promise holds the only place until the newcomer arrives.
    assert_eq!(node.place(now), None);
    node.child_opened(key(1), now).expect("the promised child");
    assert_eq!(node.free(), 0);
    node.report_from(&key(1), report(5, &[(1, 0, 1), (5, 2, 4)]), now);
    let up = node.report(now);
    assert_eq!(
        up.free
            .iter()
            .map(|s| (s.key, s.below, s.free))
            .collect::<Vec<_>>(),
        vec![(key(1), 1, 1), (key(5), 3, 4)]
    );
    match node.place(now) {
        Some(Placed::Below(slot)) => assert_eq!((slot.key, slot.below), (key(1), 1)),
        other => panic!("{other:?}"),
    }
    // key(1)'s one place is promised now: the next goes deeper.
    match node.place(now) {
        Some(Placed::Below(slot)) => assert_eq!(slot.key, key(5)),
        other => panic!("{other:?}"),
    }
    // A stale report offers nothing.
    let later = now + REPORT_STALE + Duration::from_secs(1);
    assert!(node.report(later).free.is_empty());
}

#[test]
fn a_promise_holds_until_a_report_shows_the_place_taken() {
    // Reports come up a hop at a time: the next one from the child may be from before the
    // newcomers arrived. Counting its places free again would send more newcomers than there
    // are places (each refused, to ask again).
    let now = Instant::now();
    let mut node = Subtree::new(key(0), 1, now);
    node.child_opened(key(1), now).expect("room");
    node.report_from(&key(1), report(3, &[(5, 1, 2)]), now);
    for _ in 0..2 {
        assert!(matches!(node.place(now), Some(Placed::Below(slot)) if slot.key == key(5)));
    }
    assert_eq!(node.place(now), None);
    let mut at = now + REPORT_INTERVAL;
    node.report_from(&key(1), report(3, &[(5, 1, 2)]), at);
    assert_eq!(node.place(at), None, "a report from before they arrived");
    at += REPORT_INTERVAL;
    node.report_from(&key(1), report(4, &[(5, 1, 1)]), at);
    assert_eq!(node.place(at), None, "one arrived, one is on its way");
    // The other never comes: its place is offered again once the promise is dropped.
    at += PROMISE_KEPT;
    node.report_from(&key(1), report(4, &[(5, 1, 1)]), at);
    assert!(matches!(node.place(at), Some(Placed::Below(slot)) if slot.key == key(5)));
}

#[test]
fn promises_under_nodes_no_report_names_again_are_forgotten() {
    // A child reports one free place after another, each under a node that then fills up (no
    // report names it again): the promises kept are the recent ones, not one per node ever.
    let now = Instant::now();
    let mut node = Subtree::new(key(0), 1, now);
    node.child_opened(key(1), now).expect("room");
    for i in 0..100u8 {
        let at = now + REPORT_INTERVAL * u32::from(i);
        node.report_from(&key(1), report(2, &[(100 + i, 1, 1)]), at);
        match node.place(at) {
            Some(Placed::Below(slot)) => assert_eq!(slot.key, key(100 + i)),
            other => panic!("{other:?}"),
        }
        // The promise holds the place until a report names its holder again.
        assert_eq!(node.place(at), None);
    }
    let kept = (PROMISE_KEPT.as_secs() / REPORT_INTERVAL.as_secs() + 1) as usize;
    assert!(
        node.promised.len() <= kept,
        "{} promises kept",
        node.promised.len()
    );
}

#[test]
fn actions_go_up_within_budgets_and_notices_find_their_way_down() {
    let now = Instant::now();
    let mut node = Subtree::new(key(0), 4, now);
    node.child_opened(key(1), now).expect("room");
    let mut passed = 0;
    let mut refused = 0;
    for i in 0..20u8 {
        match node.act_from(&key(1), key(50), vec![i], vec![key(50)], now) {
            Ok(()) => passed += 1,
            Err(Refused::ChildTooFast) => refused += 1,
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(passed, CHILD_ACTS_BURST as usize);
    assert_eq!(refused, 20 - passed);
    // A second later one more token.
    assert!(
        node.act_from(
            &key(1),
            key(50),
            vec![99],
            vec![key(50)],
            now + Duration::from_secs(1)
        )
        .is_ok()
    );
    assert_eq!(node.route(&key(50)), Some(key(1)));
    assert_eq!(node.route(&key(1)), Some(key(1)));
    assert_eq!(node.route(&key(77)), None);
    // What goes up is bounded by this node's own budget (under what its parent takes from a
    // child), each with its path: the child first.
    let sent = node.take_acts(now);
    assert_eq!(sent.len(), UP_ACTS_BURST as usize);
    assert!(sent.iter().all(|(_, via)| via == &vec![key(1), key(50)]));
    let rest = node.take_acts(now + Duration::from_secs(5));
    assert_eq!(rest.len(), passed + 1 - sent.len());
    // This node's own, under its own key, go up at once, all of them, its children's waiting;
    // past its share of the queue, refused.
    for i in 0..MAX_QUEUED_FROM_ONE as u8 {
        assert_eq!(node.own_act(vec![i]), Ok(()));
    }
    assert_eq!(node.own_act(vec![0]), Err(Refused::QueueFull));
    for i in 0..3 {
        node.act_from(
            &key(1),
            key(50),
            vec![i],
            vec![],
            now + Duration::from_secs(60),
        )
        .expect("queued");
    }
    let burst = node.take_acts(now + Duration::from_secs(60));
    assert_eq!(burst.len(), MAX_QUEUED_FROM_ONE + UP_ACTS_BURST as usize);
    assert!(
        burst[..MAX_QUEUED_FROM_ONE]
            .iter()
            .all(|(_, via)| via == &vec![key(0)])
    );
    // Acts from something that is not a child go nowhere.
    assert!(
        node.act_from(&key(9), key(9), vec![1], vec![], now)
            .is_err()
    );
}

#[test]
fn a_child_flooding_actions_waits_its_turn_and_the_others_go_up_beside_it() {
    let now = Instant::now();
    let mut node = Subtree::new(key(0), 4, now);
    for child in 1..=3 {
        node.child_opened(key(child), now).expect("room");
    }
    // Child 1 (a relay of the attacker's) passes up all it may, second after second; child 2
    // one line now and then; this node's own hand goes up too.
    let mut up = Vec::new();
    let mut flood_refused = 0;
    for second in 0..30u64 {
        let at = now + Duration::from_secs(second);
        for i in 0..10u8 {
            if node
                .act_from(&key(1), key(100 + i), vec![1, i], vec![key(100 + i)], at)
                .is_err()
            {
                flood_refused += 1;
            }
        }
        if second % 10 == 5 {
            node.act_from(&key(2), key(2), vec![2], Vec::new(), at)
                .expect("the honest child's line is queued");
        }
        if second == 7 {
            node.own_act(vec![0]).expect("queued");
        }
        up.extend(
            node.take_acts(at)
                .into_iter()
                .map(|(act, via)| (second, act, via)),
        );
    }
    // The flood is held to what its queue holds; the honest child's three lines and the node's
    // own went up within two seconds each, with their paths.
    assert!(flood_refused > 200, "{flood_refused}");
    let honest: Vec<_> = up.iter().filter(|(_, act, _)| act == &vec![2]).collect();
    assert_eq!(honest.len(), 3, "{up:?}");
    for (second, _, via) in &honest {
        assert_eq!(second % 10, 5, "went up in its turn, at once");
        assert_eq!(via, &vec![key(2)]);
    }
    let own: Vec<_> = up.iter().filter(|(_, act, _)| act == &vec![0]).collect();
    assert_eq!(own.len(), 1);
    assert!(own[0].0 <= 8 && own[0].2 == vec![key(0)], "{own:?}");
    // Never more than the parent takes.
    assert!(up.len() <= 30 + UP_ACTS_BURST as usize, "{}", up.len());
}

#[test]
fn the_path_children_are_told_starts_here() {
    let now = Instant::now();
    let mut node = Subtree::new(key(3), 4, now);
    node.set_ancestors(vec![
        Ancestor {
            key: key(2),
            addrs: Vec::new(),
        },
        Ancestor {
            key: key(0),
            addrs: Vec::new(),
        },
    ]);
    let path: Vec<PeerKey> = node.path_for_children().iter().map(|a| a.key).collect();
    assert_eq!(path, vec![key(3), key(2), key(0)]);
    assert_eq!(node.ancestor_keys(), vec![key(2), key(0)]);
}

#[test]
fn a_claim_of_room_for_thousands_is_believed_up_to_a_members_share() {
    let now = Instant::now();
    let mut node = Subtree::new(key(0), 1, now);
    assert_eq!(node.child_opened(key(1), now), Ok(()));
    // The child (a liar) says it can take 65,535 listeners; its parent places only a handful
    // there before the child's next report has to show them arrived.
    node.report_from(&key(1), report(1, &[(1, 0, u16::MAX)]), now);
    let mut placed_below = 0;
    while let Some(Placed::Below(slot)) = node.place(now) {
        assert_eq!(slot.key, key(1));
        placed_below += 1;
        assert!(placed_below <= 100, "placement never stops");
    }
    assert_eq!(placed_below, usize::from(MEMBER_MAX_CHILDREN));
    // A community relay the host listed is believed up to its share.
    let mut node = Subtree::new(key(0), 1, now);
    node.set_carriers([(key(2), 500)]);
    assert_eq!(node.child_opened(key(2), now), Ok(()));
    node.report_from(&key(2), report(1, &[(2, 0, 600)]), now);
    let mut placed = 0;
    while let Some(Placed::Below(_)) = node.place(now) {
        placed += 1;
        assert!(placed <= 1_000, "placement never stops");
    }
    assert_eq!(placed, 500);
}

#[test]
fn an_excluded_relay_is_offered_no_children_and_takes_none() {
    let now = Instant::now();
    let mut node = Subtree::new(key(0), 1, now);
    assert_eq!(node.child_opened(key(1), now), Ok(()));
    node.report_from(&key(1), report(1, &[(1, 0, 8), (3, 1, 4)]), now);
    // Excluded after its report came: its places are no longer offered, those below it are.
    node.set_excluded([key(1)]);
    match node.place(now) {
        Some(Placed::Below(slot)) => assert_eq!(slot.key, key(3)),
        other => panic!("placed {other:?}"),
    }
    // Its next report's places are not believed either.
    node.report_from(&key(1), report(1, &[(1, 0, 8)]), now);
    assert_eq!(node.place(now), None);
    // Excluded itself, a node takes no new children and offers no places; it keeps those it has.
    let mut bad = Subtree::new(key(1), 8, now);
    assert_eq!(bad.child_opened(key(5), now), Ok(()));
    bad.set_excluded([key(1)]);
    assert_eq!(bad.free(), 0);
    assert_eq!(bad.child_opened(key(6), now), Err(Refused::Full));
    assert_eq!(bad.child_opened(key(5), now), Ok(()), "a child it had");
    assert!(bad.report(now).free.is_empty());
}

#[test]
fn a_place_promised_here_to_a_newcomer_who_never_came_is_free_again_in_time() {
    let now = Instant::now();
    let mut node = Subtree::new(key(0), 1, now);
    assert_eq!(node.place(now), Some(Placed::Here));
    // The newcomer never opens its stream: the place stays promised for a while…
    assert_eq!(node.place(now + Duration::from_secs(1)), None);
    // …and is offered again once the promise is old.
    let later = now + PROMISE_KEPT + Duration::from_secs(1);
    assert_eq!(node.place(later), Some(Placed::Here));
}

#[test]
fn placed_below_is_never_here_and_promises_nothing_here() {
    // A node with a free place of its own and one below: a newcomer it must not take (it shed
    // it lately) goes below; with nothing below, nowhere, and this node's place stays free.
    let now = Instant::now();
    let mut node = Subtree::new(key(0), 2, now);
    node.child_opened(key(1), now).expect("a child");
    node.report_from(&key(1), report(2, &[(1, 0, 1)]), now);
    match node.place_for(&key(9), false, now) {
        Some(Placed::Below(slot)) => assert_eq!(slot.key, key(1)),
        other => panic!("{other:?}"),
    }
    assert_eq!(node.place_for(&key(9), false, now), None);
    assert_eq!(node.free(), 1);
    assert_eq!(node.place(now), Some(Placed::Here));
}

#[test]
fn a_child_asking_for_a_place_is_never_sent_into_its_own_subtree() {
    // Its stream has not ended yet (it was shed, or it took this node for dead): its report
    // still offers its own places, and its children's.
    let now = Instant::now();
    let mut node = Subtree::new(key(0), 1, now);
    node.child_opened(key(1), now).expect("a child");
    node.report_from(&key(1), report(3, &[(1, 0, 4), (2, 1, 4)]), now);
    assert_eq!(node.place_for(&key(1), false, now), None);
    assert_eq!(node.place_for(&key(1), true, now), None);
    match node.place_for(&key(9), true, now) {
        Some(Placed::Below(slot)) => assert_eq!(slot.key, key(1)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_line_refused_because_a_relay_below_floods_does_not_tell_its_author_to_slow_down() {
    let now = Instant::now();
    let mut node = Subtree::new(key(0), 4, now);
    node.child_opened(key(1), now).expect("room");
    // Child 1 passes up more than it may: the rest refused, whoever wrote it.
    let refused: Vec<(PeerKey, Refused)> = (0..10u8)
        .filter_map(|i| {
            let author = if i % 2 == 0 { key(1) } else { key(50 + i) };
            node.act_from(&key(1), author, vec![i], vec![author], now)
                .err()
                .map(|refused| (author, refused))
        })
        .collect();
    assert!(refused.len() >= 4, "{refused:?}");
    for (author, refused) in refused {
        let notice = refused.notice(author == key(1));
        if author == key(1) {
            assert!(notice.contains("slow down"), "{notice}");
        } else {
            // A listener below it did nothing wrong: its line goes to the host straight.
            assert!(!notice.contains("slow down"), "{notice}");
            assert!(notice.contains("relay on your way"), "{notice}");
        }
    }
}
