use std::collections::HashMap;
use std::time::{Duration, Instant};

use earshot_protocol::RoomId;

use super::*;
use crate::session::AudioStatus;

fn status(received: u64, bytes: u64) -> AudioStatus {
    AudioStatus {
        position: None,
        children: 0,
        received,
        relayed: received,
        dropped: 0,
        bytes_sent: bytes,
        capacity: None,
        child_cost: None,
        not_selected: 0,
        speaking: false,
        self_muted: true,
        playback: Default::default(),
        audience_loss: 0,
        audience_jitter_ms: 0,
        studio: None,
        levels: Vec::new(),
    }
}

#[test]
fn totals_keep_what_rooms_that_ended_carried() {
    let mut totals = Totals::default();
    let (a, b) = (RoomId([1; 16]), RoomId([2; 16]));
    let now = HashMap::from([(a, status(100, 1_000)), (b, status(10, 100))]);
    assert_eq!(
        totals.update(&now),
        Total {
            frames: 110,
            dropped: 0,
            bytes: 1_100
        }
    );
    // Room a ends; b goes on. The total does not step down.
    let later = HashMap::from([(b, status(20, 200))]);
    assert_eq!(totals.update(&later).frames, 120);
    assert_eq!(totals.update(&HashMap::new()).bytes, 1_200);
}

#[test]
fn upload_is_measured_over_the_window() {
    let mut upload = Upload::default();
    let start = Instant::now();
    assert_eq!(upload.sample(start, 0), 0);
    // 5,000 bytes a second: 40 kbit/s.
    for i in 1..=10u64 {
        let kbps = upload.sample(start + Duration::from_millis(500 * i), 2_500 * i);
        assert_eq!(kbps, 40, "sample {i}");
    }
    // It stops: after a window of samples the rate is zero again.
    for i in 11..=17u64 {
        upload.sample(start + Duration::from_millis(500 * i), 25_000);
    }
    assert_eq!(
        upload.sample(start + Duration::from_millis(9_000), 25_000),
        0
    );
}
