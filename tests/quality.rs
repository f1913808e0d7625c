//! What the room does about loss (issue 16): each listener counts the frames it missed at
//! playout, reports go up the tree, the host advises the speakers' encoders in its signed view,
//! and the encoders follow: FEC on while the audience loses frames, off on a clean network.
//! `earshot host` and `earshot join` run as processes; a listener given the hidden
//! `--impair-playout PERCENT` drops that share of frames before its player (seeded, so every
//! run loses the same frames); one given `--impair-delay MS:JITTER` takes each frame from its
//! parent MS plus up to JITTER milliseconds after it was captured (seeded, in order).

use std::time::{Duration, Instant};

use earshot_node::Event;
use earshot_protocol::audience::quality::{EncoderSettings, FALL_AFTER, WINDOW};

use crate::harness::TestHome;
use crate::live::{listener, local_room, tone_host};

#[test]
fn the_encoder_takes_up_fec_while_listeners_lose_frames_and_drops_it_after() {
    let homes = [TestHome::new(), TestHome::new(), TestHome::new()];
    let room = local_room(&homes[0], "Lossy");
    let mut host = tone_host(&homes[0], &room, &[]);
    let link = host.listener_link();
    let mut clean = listener("clean", &homes[1], &link, &[]);
    clean.expect_stats("clean hears the host", |s| s.delivered >= 100);
    // A clean room: the host's encoder runs without FEC.
    let stats = host.expect_stats("the host speaking", |s| s.speaking);
    assert_eq!(stats.audience_loss_permille, 0);
    // The listeners' jitter comes up the tree too: on one machine, small.
    let jitter = host.expect_stats("the audience's jitter", |s| s.audience_jitter_ms.is_some());
    assert!(
        jitter.audience_jitter_ms.is_some_and(|ms| ms <= 160),
        "{jitter:?}"
    );

    // A listener that misses 15 % of the frames at playout: in two listeners, the worse one is
    // the 90th percentile; 15 % falls in the bucket up to 20 %.
    let lossy = listener("lossy", &homes[2], &link, &["--impair-playout", "15"]);
    let started = Instant::now();
    let stats = host.expect_stats("the host advised of the loss", |s| {
        s.audience_loss_permille == 200
    });
    let rose_in = started.elapsed();
    let encoder = EncoderSettings::for_loss(stats.audience_loss_permille);
    assert!(encoder.fec && encoder.loss_percent == 20 && encoder.bitrate == 40_000);
    // The advice is the host's, signed into the view: every member holds it.
    clean.expect_stats("the advice down the tree", |s| {
        s.audience_loss_permille == 200
    });

    // The lossy listener leaves: the advice holds a while (loss often comes back), then falls.
    drop(lossy);
    let left = Instant::now();
    let stats = host.expect_within(
        "the advice back to clean",
        FALL_AFTER + WINDOW * 3 + Duration::from_secs(10),
        |e| matches!(e, Event::AudioStats(s) if s.audience_loss_permille == 0),
    );
    let fell_in = left.elapsed();
    assert!(fell_in >= FALL_AFTER, "fell after {fell_in:?}: {stats:?}");
    clean.expect_stats("clean again down the tree", |s| {
        s.audience_loss_permille == 0
    });
    // The clean listener heard everything meanwhile.
    let heard = clean.expect_stats("the clean listener's delivery", |_| true);
    let missing = crate::live::missing(&heard);
    assert!(
        missing * 100 <= heard.expected,
        "the clean listener missed {missing} of {} frames",
        heard.expected
    );
    eprintln!(
        "advice rose {rose_in:?} after the lossy listener started, fell {fell_in:?} after it left"
    );
}

/// A listener whose parent's path is slow and jittery (the hidden `--impair-delay 40:120`:
/// everything from its parent held back 40 ms plus up to 120 ms more, seeded, in order) waits
/// for its frames rather than losing them, and its jitter goes up the tree: the host sees what
/// nine in ten listeners' buffers hold back rise with it.
#[test]
fn a_jittery_path_is_waited_for_and_its_jitter_reported_up_the_tree() {
    let homes = [TestHome::new(), TestHome::new(), TestHome::new()];
    let room = local_room(&homes[0], "Jittery");
    let mut host = tone_host(&homes[0], &room, &[]);
    let link = host.listener_link();
    let mut clean = listener("clean", &homes[1], &link, &[]);
    clean.expect_stats("clean hears the host", |s| s.delivered >= 100);
    let calm = host.expect_stats("the audience's jitter", |s| s.audience_jitter_ms.is_some());
    let mut jittery = listener("jittery", &homes[2], &link, &["--impair-delay", "40:120"]);
    let start = jittery.expect_stats("the jittery listener hears", |s| s.played >= 100);
    let end = jittery.expect_stats("ten seconds more", |s| s.played >= start.played + 500);
    let due = |s: &earshot_node::event::AudioStats| s.played + s.recovered + s.concealed;
    let (played, missing) = (
        end.played - start.played,
        (end.recovered + end.concealed) - (start.recovered + start.concealed),
    );
    eprintln!(
        "jittery listener: {played} played, {missing} missing at playout of {} due; buffer \
         {:.0} ms; mouth-to-ear p50 {:?} ms; the host saw {:?} ms before",
        due(&end) - due(&start),
        end.buffer_ms,
        end.latency_p50_ms,
        calm.audience_jitter_ms
    );
    assert_eq!(end.delivered, end.expected, "every frame arrives: {end:?}");
    assert!(
        missing * 100 <= due(&end) - due(&start),
        "at most 1 % missing at playout: {end:?}"
    );
    assert!(
        end.buffer_ms >= 60.0,
        "the buffer waits for the jitter: {end:?}"
    );
    let told = host.expect_stats("the host told of the jitter", |s| {
        s.audience_jitter_ms.is_some_and(|ms| ms >= 80)
    });
    eprintln!(
        "the host: nine in ten listeners wait at most {:?} ms",
        told.audience_jitter_ms
    );
    host.say("/end");
    assert_eq!(host.exit_code(), 0);
    let _ = (clean.exit_code(), jittery.exit_code());
}
