//! The wall clock. `protocol` never reads it; the node reads it here and passes `now` in.

use std::time::{SystemTime, UNIX_EPOCH};

use earshot_protocol::Timestamp;

/// Now, as milliseconds since the Unix epoch (0 if the clock is set before 1970).
pub fn now() -> Timestamp {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis())
        .unwrap_or(0);
    Timestamp(u64::try_from(millis).unwrap_or(u64::MAX))
}
