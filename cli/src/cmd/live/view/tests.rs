use super::*;
use earshot_node::event::SpeakerLevel;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

const ME: PeerKey = PeerKey([1; 32]);
const ANA: PeerKey = PeerKey([2; 32]);
const BO: PeerKey = PeerKey([3; 32]);

/// A room as a listener sees it: Ana hosting and loud, Bo speaking and muted, two hands.
fn board() -> Board {
    let mut board = Board::new(ME, false);
    board.title = "Book club".into();
    board.recording = true;
    board.listeners = 41;
    board.stage = vec![
        OnStage {
            key: ANA,
            name: "Ana".into(),
            role: RoomRole::Host,
            muted: false,
        },
        OnStage {
            key: BO,
            // A stranger's name: as long as it likes, with an escape sequence in it.
            name: "Bo \u{1b}[2J the very long-winded speaker".into(),
            role: RoomRole::Speaker,
            muted: true,
        },
    ];
    board.hands = vec![(PeerKey([4; 32]), "Cy".into()), (ME, "me".into())];
    board.my_hand = true;
    let mut stats = Box::new(AudioStats {
        room: "aaaaaaaaaaaaaaaaaaaaaaaaaa".parse().expect("room id"),
        parent: None,
        depth: Some(2),
        children: 0,
        received: 0,
        relayed: 0,
        dropped: 0,
        capacity: None,
        child_cost: None,
        not_selected: 0,
        speaking: false,
        self_muted: false,
        expected: 1_000,
        delivered: 1_000,
        played: 0,
        recovered: 0,
        concealed: 0,
        late: 0,
        skipped: 0,
        stretched: 0,
        buffer_ms: 40.0,
        latency_samples: 10,
        latency_p50_ms: Some(48),
        latency_p95_ms: Some(60),
        audience_loss_permille: 0,
        audience_jitter_ms: None,
        studio_chunks: None,
        studio_lost: None,
        levels: vec![SpeakerLevel {
            peer_id: ANA,
            level: 20,
        }],
        r#final: false,
    });
    board.on_stats(stats.clone());
    // 50 frames later, one of them lost: 2 % loss.
    stats.expected += 50;
    stats.delivered += 49;
    board.on_stats(stats);
    board
}

fn screen(board: &Board, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("terminal");
    terminal.draw(|frame| board.draw(frame)).expect("draw");
    let buffer = terminal.backend().buffer();
    (0..height)
        .map(|y| {
            (0..width)
                .map(|x| buffer[(x, y)].symbol().to_owned())
                .collect::<String>()
        })
        .collect()
}

#[test]
fn the_room_fits_an_80_by_24_terminal_and_a_smaller_one() {
    let mut board = board();
    board.on_printed(vec!["[Cy] hello everyone".into()]);
    for (width, height) in [(80, 24), (60, 16), (40, 10)] {
        let rows = screen(&board, width, height);
        let text = rows.join("\n");
        assert!(
            rows[0].contains("Book club") && rows[0].contains("● REC"),
            "{text}"
        );
        assert!(rows[0].contains("41 listening"), "{text}");
        // Ana is loud: her meter is mostly full; Bo is muted.
        let ana = rows.iter().find(|row| row.contains("Ana")).expect(&text);
        assert!(ana.contains("████"), "{text}");
        let bo = rows.iter().find(|row| row.contains("  Bo ")).expect(&text);
        assert!(bo.contains("muted"), "{text}");
        assert!(bo.contains('…'), "a long name is cut: {text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("Hands (2)"), "{text}");
        if height > 10 {
            assert!(text.contains("2. me (you)"), "{text}");
        }
        assert!(text.contains("[Cy] hello"), "{text}");
        let status = &rows[usize::from(height) - 3];
        assert!(
            status.contains("depth 2") && status.contains("loss 2.0 %"),
            "{text}"
        );
        assert!(rows[usize::from(height) - 2].starts_with("> "), "{text}");
    }
    let tiny = screen(&board, 30, 8).join("\n");
    assert!(
        tiny.contains("at least") && tiny.contains("40×10"),
        "{tiny}"
    );
}

#[test]
fn a_speaker_held_by_the_recording_is_told_how_to_agree() {
    let mut board = board();
    board.stage.push(OnStage {
        key: ME,
        name: "me".into(),
        role: RoomRole::Speaker,
        muted: false,
    });
    board.held = true;
    let rows = screen(&board, 80, 24);
    assert!(
        rows[21].contains("microphone is off until you agree"),
        "{rows:#?}"
    );
    assert!(
        rows.iter()
            .any(|row| row.contains("me") && row.contains("muted"))
    );
    assert!(matches!(
        board.key(key(KeyCode::F(4))),
        Action::Do(Command::Consent)
    ));
}

#[test]
fn keys_chat_raise_hands_and_act_on_people() {
    let mut board = board();
    for c in "hi all".chars() {
        assert!(matches!(board.key(key(KeyCode::Char(c))), Action::Nothing));
    }
    assert!(matches!(board.key(key(KeyCode::Enter)), Action::Typed(text) if text == "hi all"));
    assert!(board.input.is_empty());
    // My hand is up: F2 lowers it.
    assert!(matches!(
        board.key(key(KeyCode::F(2))),
        Action::Do(Command::Act(ControlBody::LowerHand))
    ));
    assert!(matches!(
        board.key(key(KeyCode::F(3))),
        Action::Do(Command::MuteSelf(true))
    ));
    // Tab to the people: Ana, Bo (muted), then Cy's hand.
    board.key(key(KeyCode::Tab));
    board.key(key(KeyCode::Down));
    assert!(matches!(
        board.key(key(KeyCode::Char('m'))),
        Action::Do(Command::Act(ControlBody::Unmute { target })) if target == BO
    ));
    board.key(key(KeyCode::Down));
    assert!(matches!(
        board.key(key(KeyCode::Char('u'))),
        Action::Do(Command::Act(ControlBody::Promote { target, role: earshot_protocol::Role::Speaker }))
            if target == PeerKey([4; 32])
    ));
    assert!(matches!(
        board.key(key(KeyCode::Char('x'))),
        Action::Do(Command::Act(ControlBody::Remove { target, .. })) if target == PeerKey([4; 32])
    ));
    // Back to typing; Ctrl-C leaves.
    board.key(key(KeyCode::Tab));
    assert!(matches!(
        board.key(key(KeyCode::Char('u'))),
        Action::Nothing
    ));
    assert_eq!(board.input, "u");
    assert!(matches!(
        board.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Action::Leave
    ));
}

#[test]
fn the_log_keeps_its_end_in_view_and_scrolls_back() {
    let mut board = board();
    board.on_printed((0..100).map(|i| format!("line {i}")).collect());
    let rows = screen(&board, 80, 24).join("\n");
    assert!(
        rows.contains("line 99") && !rows.contains("line 50"),
        "{rows}"
    );
    board.key(key(KeyCode::PageUp));
    let rows = screen(&board, 80, 24).join("\n");
    assert!(
        rows.contains("line 94") && !rows.contains("line 95"),
        "{rows}"
    );
    // A long line wraps at spaces.
    assert_eq!(wrap("the quick brown fox", 10), ["the quick", "brown fox"]);
    assert_eq!(wrap("abcdefghijkl", 5), ["abcde", "fghij", "kl"]);
}
