use super::*;

/// The committed example, which must stay the defaults printed by `to_toml`.
const EXAMPLE: &str = include_str!("../../../examples/relay.toml");

fn parse_err(text: &str) -> ConfigError {
    RelayConfig::parse(text).expect_err(text)
}

/// Checks that `text` is refused for `setting`, with `value` named, and returns the problem.
fn refused(text: &str, setting: &str, value: &str) -> Problem {
    match parse_err(text) {
        ConfigError::Invalid {
            setting: s,
            value: v,
            problem,
        } => {
            assert_eq!((s, v.as_str()), (setting, value), "{text}");
            problem
        }
        other => panic!("{text}: expected an invalid setting, got {other}"),
    }
}

#[test]
fn defaults() {
    let config = RelayConfig::default();
    assert_eq!(load(None).expect("defaults"), config);
    assert_eq!(RelayConfig::parse("").expect("empty file"), config);
    let listen: Vec<String> = config.listen.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        listen,
        ["/ip4/0.0.0.0/udp/4001/quic-v1", "/ip4/0.0.0.0/tcp/4001"]
    );
    assert_eq!(config.metrics, None);
    assert_eq!(config.max_rooms.get(), 16);
    assert_eq!(config.max_children_per_room.get(), 100);
    assert_eq!(config.upload_kbps.get(), 20_000);
    assert_eq!(config.max_children_total(), 500);
    assert_eq!(config.children_per_room(), 100);
    assert_eq!(config.max_connections.get(), 1024);
    assert_eq!(config.max_connections_per_peer.get(), 4);
    assert_eq!(config.max_reservations.get(), 512);
    assert_eq!(config.max_reservations_per_peer.get(), 4);
    assert_eq!(config.reservation_duration, Duration::from_secs(3600));
    assert_eq!(config.max_circuits.get(), 256);
    assert_eq!(config.max_circuits_per_peer.get(), 8);
    assert_eq!(config.circuit_duration, Duration::from_secs(4 * 3600));
    assert_eq!(config.circuit_bytes.get(), 1 << 30);
    assert_eq!(config.memory_limit, None);
    // A live room at 32 kbit/s (with framing, 40) fits a default circuit for its duration.
    let room_bytes = config.circuit_duration.as_secs() * u64::from(KBPS_PER_CHILD) * 1000 / 8;
    assert!(room_bytes < config.circuit_bytes.get());
}

#[test]
fn the_example_file_is_the_defaults() {
    assert_eq!(
        RelayConfig::parse(EXAMPLE).expect("the example parses"),
        RelayConfig::default()
    );
    // Regenerate with `earshot relay --print-config > examples/relay.toml`.
    assert_eq!(
        EXAMPLE,
        RelayConfig::default().to_toml(),
        "examples/relay.toml is stale"
    );
}

#[test]
fn a_file_sets_every_setting() {
    let config = RelayConfig::parse(
        r#"
        listen = ["/ip6/::/udp/4002/quic-v1", "/dns4/relay.example.org/tcp/443"]
        metrics = "[::1]:9100"
        max_rooms = 2
        max_children_per_room = 3
        upload_kbps = 40
        max_connections = 5
        max_connections_per_peer = 6
        max_reservations = 7
        max_reservations_per_peer = 8
        reservation_duration = "90min"
        max_circuits = 9
        max_circuits_per_peer = 10
        circuit_duration = "2s"
        circuit_bytes = "100 kB"
        memory_limit = "1536MiB"
        "#,
    )
    .expect("a full file");
    assert_eq!(config.listen.len(), 2);
    assert_eq!(config.metrics, Some("[::1]:9100".parse().expect("addr")));
    assert_eq!(config.max_rooms.get(), 2);
    assert_eq!(config.max_children_per_room.get(), 3);
    assert_eq!(config.max_children_total(), 1);
    assert_eq!(config.children_per_room(), 1);
    assert_eq!(config.max_connections.get(), 5);
    assert_eq!(config.max_connections_per_peer.get(), 6);
    assert_eq!(config.max_reservations.get(), 7);
    assert_eq!(config.max_reservations_per_peer.get(), 8);
    assert_eq!(config.reservation_duration, Duration::from_secs(90 * 60));
    assert_eq!(config.max_circuits.get(), 9);
    assert_eq!(config.max_circuits_per_peer.get(), 10);
    assert_eq!(config.circuit_duration, Duration::from_secs(2));
    assert_eq!(config.circuit_bytes.get(), 100_000);
    assert_eq!(config.memory_limit.map(NonZeroU64::get), Some(1536 << 20));
    assert_eq!(
        RelayConfig::parse(&config.to_toml()).expect("round trip"),
        config
    );
}

#[test]
fn to_toml_round_trips() {
    let mut config = RelayConfig::default();
    assert_eq!(
        RelayConfig::parse(&config.to_toml()).expect("defaults"),
        config
    );
    config.metrics = Some("127.0.0.1:1".parse().expect("addr"));
    config.memory_limit = NonZeroU64::new(1_000_001);
    config.circuit_bytes = NonZeroU64::new(3 << 40).expect("non-zero");
    config.circuit_duration = Duration::from_millis(90_061_500);
    config.reservation_duration = Duration::from_secs(1);
    config.listen = vec!["/unix/%2Ftmp%2Fa%22b".parse().expect("multiaddr")];
    let text = config.to_toml();
    assert!(text.contains("circuit_bytes = \"3TiB\""), "{text}");
    assert!(text.contains("memory_limit = \"1000001B\""), "{text}");
    assert_eq!(RelayConfig::parse(&text).expect("round trip"), config);
    // Every setting is printed, each after a comment.
    for setting in [
        "listen",
        "metrics",
        "max_rooms",
        "max_children_per_room",
        "upload_kbps",
        "max_connections",
        "max_connections_per_peer",
        "memory_limit",
        "max_reservations",
        "max_reservations_per_peer",
        "reservation_duration",
        "max_circuits",
        "max_circuits_per_peer",
        "circuit_duration",
        "circuit_bytes",
        "new_per_ip_per_minute",
    ] {
        let at = text
            .lines()
            .position(|l| l.starts_with(&format!("{setting} = ")))
            .unwrap_or_else(|| panic!("{setting} missing from\n{text}"));
        let before = text.lines().nth(at - 1).expect("a line before");
        assert!(before.starts_with('#'), "{setting} has no comment");
    }
}

#[test]
fn command_line_flags_override_the_file() {
    let mut config = RelayConfig::parse("metrics = \"127.0.0.1:1\"").expect("config");
    config.merge_cli(Vec::new(), None);
    assert_eq!(config.listen, RelayConfig::default().listen);
    assert_eq!(config.metrics, Some("127.0.0.1:1".parse().expect("addr")));
    let listen: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr");
    let metrics: SocketAddr = "127.0.0.1:2".parse().expect("addr");
    config.merge_cli(vec![listen.clone()], Some(metrics));
    assert_eq!(config.listen, [listen]);
    assert_eq!(config.metrics, Some(metrics));
}

#[test]
fn load_reads_a_file_and_needs_it_to_exist() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, "max_rooms = 3\n").expect("write");
    let config = load(Some(&path)).expect("load");
    assert_eq!(config.max_rooms.get(), 3);
    let missing = dir.path().join("missing.toml");
    match load(Some(&missing)) {
        Err(err @ ConfigError::Read { .. }) => {
            assert!(err.to_string().contains("missing.toml"), "{err}");
        }
        other => panic!("expected a read error, got {other:?}"),
    }
}

#[test]
fn zero_limits_are_refused() {
    for setting in [
        "max_rooms",
        "max_children_per_room",
        "upload_kbps",
        "max_connections",
        "max_connections_per_peer",
        "max_reservations",
        "max_reservations_per_peer",
        "max_circuits",
        "max_circuits_per_peer",
        "new_per_ip_per_minute",
    ] {
        let problem = refused(&format!("{setting} = 0"), setting, "0");
        assert!(matches!(problem, Problem::Zero), "{setting}: {problem}");
    }
    let err = parse_err("max_circuits = 0");
    assert_eq!(err.to_string(), "max_circuits = 0: must be at least 1");
}

#[test]
fn a_limit_too_large_for_its_type_is_refused() {
    let problem = refused(
        "max_connections = 4294967296",
        "max_connections",
        "4294967296",
    );
    assert!(matches!(problem, Problem::TooLarge), "{problem}");
    let problem = refused(
        "max_children_per_room = 65536",
        "max_children_per_room",
        "65536",
    );
    assert!(matches!(problem, Problem::TooLarge), "{problem}");
    let config = RelayConfig::parse(
        "max_children_per_room = 65535
upload_kbps = 400",
    )
    .expect("config");
    assert_eq!(config.children_per_room(), 10);
}

#[test]
fn upload_must_carry_one_child() {
    let problem = refused("upload_kbps = 39", "upload_kbps", "39");
    assert!(matches!(problem, Problem::BelowOneChild), "{problem}");
}

#[test]
fn bad_addresses_are_refused() {
    let problem = refused(
        r#"listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/nope"]"#,
        "listen",
        "\"/ip4/nope\"",
    );
    assert!(matches!(problem, Problem::Multiaddr(_)), "{problem}");
    let problem = refused("listen = []", "listen", "[]");
    assert!(matches!(problem, Problem::NoAddress), "{problem}");
    let problem = refused(r#"metrics = "localhost""#, "metrics", "\"localhost\"");
    assert!(matches!(problem, Problem::SocketAddr(_)), "{problem}");
    let err = parse_err(r#"metrics = "9464""#);
    assert!(
        err.to_string()
            .starts_with("metrics = \"9464\": not an IP address and port"),
        "{err}"
    );
}

#[test]
fn bad_durations_are_refused() {
    for setting in ["circuit_duration", "reservation_duration"] {
        let problem = refused(
            &format!("{setting} = \"4 hours-ish\""),
            setting,
            "\"4 hours-ish\"",
        );
        assert!(
            matches!(problem, Problem::Duration(_)),
            "{setting}: {problem}"
        );
        let problem = refused(&format!("{setting} = \"0s\""), setting, "\"0s\"");
        assert!(
            matches!(problem, Problem::ZeroDuration),
            "{setting}: {problem}"
        );
    }
}

#[test]
fn bad_sizes_are_refused() {
    for setting in ["circuit_bytes", "memory_limit"] {
        let problem = refused(&format!("{setting} = \"1 GeB\""), setting, "\"1 GeB\"");
        assert!(
            matches!(problem, Problem::Size(SizeError::UnknownUnit { .. })),
            "{problem}"
        );
        let problem = refused(&format!("{setting} = \"0MiB\""), setting, "\"0MiB\"");
        assert!(matches!(problem, Problem::Zero), "{problem}");
    }
    let err = parse_err(r#"circuit_bytes = "lots""#);
    assert_eq!(
        err.to_string(),
        "circuit_bytes = \"lots\": not a size such as \"512MiB\" (it does not start with a \
         whole number)"
    );
}

#[test]
fn unknown_keys_and_wrong_types_are_refused() {
    let err = parse_err("max_room = 3");
    assert!(matches!(err, ConfigError::Syntax(_)), "{err}");
    assert!(
        err.to_string().contains("unknown field `max_room`"),
        "{err}"
    );
    let err = parse_err("[relay]\nmax_rooms = 3");
    assert!(matches!(err, ConfigError::Syntax(_)), "{err}");
    let err = parse_err("circuit_bytes = 1024");
    assert!(err.to_string().contains("circuit_bytes"), "{err}");
    let err = parse_err("max_rooms = -1");
    assert!(err.to_string().contains("max_rooms"), "{err}");
    let err = parse_err("max_rooms = ");
    assert!(matches!(err, ConfigError::Syntax(_)), "{err}");
}

#[test]
fn sizes() {
    let check = |text: &str, expected: Result<u64, SizeError>| {
        assert_eq!(parse_size(text), expected, "{text}");
    };
    check("0", Ok(0));
    check("512", Ok(512));
    check("512B", Ok(512));
    check(" 512 B ", Ok(512));
    check("1kB", Ok(1000));
    check("1KiB", Ok(1024));
    check("2 MB", Ok(2_000_000));
    check("2MiB", Ok(2 << 20));
    check("3GB", Ok(3_000_000_000));
    check("3GiB", Ok(3 << 30));
    check("1TB", Ok(1_000_000_000_000));
    check("1TiB", Ok(1 << 40));
    check("16777215TiB", Ok(16_777_215 << 40));
    check("16777216TiB", Err(SizeError::Overflow));
    check("99999999999999999999", Err(SizeError::Overflow));
    check("", Err(SizeError::NoNumber));
    check("MiB", Err(SizeError::NoNumber));
    check("-1MiB", Err(SizeError::NoNumber));
    check(
        "1.5GiB",
        Err(SizeError::UnknownUnit {
            unit: ".5GiB".into(),
        }),
    );
    check("1KB", Err(SizeError::UnknownUnit { unit: "KB".into() }));
    check("1mib", Err(SizeError::UnknownUnit { unit: "mib".into() }));
    for bytes in [1, 999, 1000, 1024, 1536, 1_000_000, 3 << 30, u64::MAX] {
        assert_eq!(parse_size(&format_size(bytes)), Ok(bytes), "{bytes}");
    }
    assert_eq!(format_size(1 << 30), "1GiB");
    assert_eq!(format_size(2_000), "2kB");
    assert_eq!(format_size(1536), "1536B");
}

#[test]
fn refused_values_are_shown_as_toml() {
    assert_eq!(quote("/ip4/nope"), "\"/ip4/nope\"");
    for text in ["a\"b", "a\\c", "line\nbreak", "\u{1}", "'both\" quotes'"] {
        let shown = quote(text);
        let doc: DocumentMut = format!("v = {shown}").parse().expect(&shown);
        assert_eq!(doc["v"].as_str(), Some(text), "{shown}");
        assert!(!shown.contains('\n'), "{shown}");
    }
}
