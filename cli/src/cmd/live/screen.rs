//! The room view's loop: keys, the node's events, and the room and this node's audio asked
//! for a few times a second; the terminal is given back however it ends.

use std::io::IsTerminal as _;
use std::time::Duration;

use crossterm::event::EventStream;
use earshot_node::event::{CloseReason, Event};
use futures::StreamExt as _;
use tokio::sync::broadcast;

use super::view::{Action, Board};
use super::{Live, ours};
use crate::output::{say, take_for_view, to_view};
use crate::runtime::stop_requested;

/// How often the room and the levels are looked at again.
const REFRESH: Duration = Duration::from_millis(200);

/// Whether to draw the room view: people at a terminal (both ways), not scripts.
pub fn wanted(json: bool) -> bool {
    !json && std::io::stdout().is_terminal() && std::io::stdin().is_terminal()
}

/// The terminal in the view's hands (raw, the alternate screen; what is printed is held for
/// the view) while this lives.
struct Screen {
    terminal: ratatui::DefaultTerminal,
}

impl Screen {
    fn open() -> std::io::Result<Self> {
        let terminal = ratatui::try_init()?;
        to_view(true);
        Ok(Self { terminal })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let held = take_for_view();
        to_view(false);
        ratatui::restore();
        for line in held {
            say!("{line}");
        }
    }
}

impl Live<'_> {
    /// [`Live::follow`] in the room view.
    pub(super) async fn follow_on_screen(&mut self, events: &mut broadcast::Receiver<Event>) -> u8 {
        let mut screen = match Screen::open() {
            Ok(screen) => screen,
            Err(err) => {
                tracing::warn!(%err, "cannot draw the room view; printing lines instead");
                return self.follow(events).await;
            }
        };
        let mut board = Board::new(self.node.key(), self.host);
        let mut keys = EventStream::new();
        let mut keys_open = true;
        let mut refresh = tokio::time::interval(REFRESH);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let id = self.room.id();
        let stop = stop_requested();
        tokio::pin!(stop);
        let code = loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(event) => {
                        self.track(&event);
                        if ours(self.ctx, id, &event) {
                            board.on_event(&event);
                        }
                        if let Event::Closed { room, reason } = event
                            && room == id
                        {
                            break u8::from(reason == CloseReason::Removed);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "the view fell behind the room");
                    }
                    Err(broadcast::error::RecvError::Closed) => break 1,
                },
                key = keys.next(), if keys_open => match key {
                    Some(Ok(crossterm::event::Event::Key(key))) => match board.key(key) {
                        Action::Nothing => {}
                        Action::Typed(text) => {
                            if self.on_line(&text).await {
                                break 0;
                            }
                        }
                        Action::Do(line) => {
                            if self.carry_out(line).await {
                                break 0;
                            }
                        }
                        Action::Leave => {
                            self.room.leave().await;
                            break 0;
                        }
                    },
                    // A resize, a paste, focus: drawn again below.
                    Some(Ok(_)) => {}
                    // The terminal is gone: the room goes on until a signal, as with a closed
                    // standard input.
                    Some(Err(_)) | None => keys_open = false,
                },
                _ = refresh.tick() => {
                    if let Ok(view) = self.room.view().await {
                        board.on_view(&view);
                    }
                    if let Ok(stats) = self.room.audio_stats().await {
                        board.on_stats(stats);
                    }
                }
                _ = &mut stop => {
                    self.room.leave().await;
                    break 0;
                }
            }
            board.on_printed(take_for_view());
            if let Err(err) = screen.terminal.draw(|frame| board.draw(frame)) {
                tracing::warn!(%err, "cannot draw the room view");
            }
        };
        drop(screen);
        code
    }
}
