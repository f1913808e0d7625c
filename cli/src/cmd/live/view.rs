//! The room view: `earshot host` and `join` on a terminal, drawn with ratatui.
//!
//! What it shows comes from three places: the node's events (chat, reactions, joins, notices:
//! the lines the line mode prints, in a log), the room as this node knows it (the stage, raised
//! hands, listeners, recording; asked for a few times a second), and this node's audio report
//! (who is loud now, its place in the tree, loss, latency; asked for as often). Everything a
//! stranger wrote (names, titles, chat) is shown through [`one_line`], so it can neither move
//! the cursor nor fake a line.
//!
//! Typing is chat, or a slash command as in the line mode; a few keys do the common things
//! (see [`Board::key`]).

use std::collections::{HashMap, VecDeque};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use earshot_node::event::{AudioStats, Event};
use earshot_node::node::RoomView;
use earshot_protocol::state::RoomRole;
use earshot_protocol::{ControlBody, PeerKey};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use unicode_width::UnicodeWidthChar;

use super::line::Line as Command;
use crate::output::one_line;
use crate::render::Text;

/// Lines of the log kept (chat, events, answers to commands).
const LOG_LINES: usize = 500;
/// Audio reports kept to tell recent loss from (one a second at most counted).
const LOSS_WINDOW: usize = 6;
/// The smallest terminal the view draws in.
const MIN_SIZE: (u16, u16) = (40, 10);
/// Cells of a level meter, and the level (RFC 6464, -dBov) that fills none: quieter than
/// -60 dBov is silence to the eye.
const METER: usize = 6;
const METER_FLOOR: u8 = 60;
/// Louder than this (-50 dBov) is talking.
const TALKING: u8 = 50;

/// One person on the stage.
#[derive(Debug, Clone, PartialEq)]
struct OnStage {
    key: PeerKey,
    name: String,
    role: RoomRole,
    muted: bool,
}

/// Where the keys go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Focus {
    /// The input line: typing is chat or a command.
    Input,
    /// The people list: the arrows pick someone, letters act on them.
    People(usize),
}

/// What a key asks the room for.
#[derive(Debug)]
pub enum Action {
    Nothing,
    /// A line typed, carried out as in the line mode.
    Typed(String),
    /// A command of a key's.
    Do(Command),
    Leave,
}

/// Everything the view shows.
pub struct Board {
    me: PeerKey,
    host: bool,
    title: String,
    /// When the room begins, if it was scheduled.
    starts_at: Option<earshot_protocol::Timestamp>,
    recording: bool,
    /// On stage in a recorded room without having agreed: the microphone is held off.
    held: bool,
    stage: Vec<OnStage>,
    /// Raised hands, first raised first: key and name.
    hands: Vec<(PeerKey, String)>,
    /// Support said in the room while this node was in it: name, amount and unit, its id,
    /// whether the host confirmed it (newest last, the latest hundred).
    supporters: Vec<(String, String, String, bool)>,
    listeners: u32,
    my_role: RoomRole,
    my_hand: bool,
    self_muted: bool,
    levels: HashMap<PeerKey, u8>,
    stats: Option<Box<AudioStats>>,
    /// (expected, delivered) of the last reports, oldest first.
    counts: VecDeque<(u64, u64)>,
    log: VecDeque<Line<'static>>,
    /// Lines scrolled back from the end of the log.
    scroll: usize,
    input: String,
    focus: Focus,
    text: Text,
}

impl Board {
    pub fn new(me: PeerKey, host: bool) -> Self {
        Self {
            me,
            host,
            title: String::new(),
            starts_at: None,
            recording: false,
            held: false,
            stage: Vec::new(),
            hands: Vec::new(),
            supporters: Vec::new(),
            listeners: 0,
            my_role: if host {
                RoomRole::Host
            } else {
                RoomRole::Listener
            },
            my_hand: false,
            self_muted: false,
            levels: HashMap::new(),
            stats: None,
            counts: VecDeque::new(),
            log: VecDeque::new(),
            scroll: 0,
            input: String::new(),
            focus: Focus::Input,
            text: Text::default(),
        }
    }

    /// An event of the node's: its lines go in the log; some change what is shown at once.
    pub fn on_event(&mut self, event: &Event) {
        match event {
            Event::AudioStats(stats) => return self.on_stats(stats.clone()),
            Event::RecordingStarted { .. } => self.recording = true,
            Event::RecordingStopped { .. } => (self.recording, self.held) = (false, false),
            Event::ConsentAsked { .. } => self.held = true,
            Event::RecordingConsent { member, .. } if *member == self.me => self.held = false,
            Event::SelfMuted { muted } => self.self_muted = *muted,
            Event::Audience { listeners, .. } => self.listeners = *listeners,
            Event::Joined {
                title,
                recording,
                starts_at,
                ..
            } => {
                (self.title, self.recording) = (title.clone(), *recording);
                self.starts_at = *starts_at;
            }
            Event::Hosting { title, .. } => self.title = title.clone(),
            Event::Support {
                name,
                amount,
                unit,
                id,
                ..
            } => {
                if self.supporters.len() == 100 {
                    self.supporters.remove(0);
                }
                self.supporters.push((
                    name.clone(),
                    format!("{amount} {}", one_line(unit)),
                    id.clone(),
                    false,
                ));
            }
            Event::SupportConfirmed { id, .. } => {
                for supporter in &mut self.supporters {
                    supporter.3 |= supporter.2 == *id;
                }
            }
            _ => {}
        }
        let style = match event {
            Event::Chat { .. } => Style::new(),
            Event::Error { .. } | Event::Rejected { .. } => Style::new().fg(Color::Red),
            Event::RecordingStarted { .. } | Event::ConsentAsked { .. } => {
                Style::new().fg(Color::Red)
            }
            _ => Style::new().fg(Color::DarkGray),
        };
        for line in self.text.lines(event) {
            self.push_log(Line::styled(line, style));
        }
    }

    /// Lines printed while the view had the terminal (answers to commands, errors, logs).
    pub fn on_printed(&mut self, lines: Vec<String>) {
        for line in lines {
            let style = if line.starts_with("earshot:") || line.contains(" WARN ") {
                Style::new().fg(Color::Red)
            } else {
                Style::new().fg(Color::Cyan)
            };
            self.push_log(Line::styled(one_line(&line).into_owned(), style));
        }
    }

    fn push_log(&mut self, line: Line<'static>) {
        if self.log.len() == LOG_LINES {
            self.log.pop_front();
        }
        self.log.push_back(line);
    }

    /// The room as this node knows it now.
    pub fn on_view(&mut self, view: &RoomView) {
        let state = &view.state;
        self.title = view.descriptor.title.clone();
        self.starts_at = view.descriptor.starts_at();
        self.recording = state.recording.value;
        self.held = !self.host && state.needs_consent(&self.me);
        self.stage = state
            .stage()
            .into_iter()
            .map(|member| OnStage {
                key: member.key,
                name: member.display_name(),
                role: member.role(),
                muted: member.muted.value,
            })
            .collect();
        // The host's list first (the audience's hands, in the order raised), then hands only
        // the stage's fold knows.
        let mut hands: Vec<(PeerKey, String)> = view
            .view
            .as_ref()
            .map(|audience| {
                audience
                    .hands
                    .iter()
                    .map(|hand| (hand.key, hand.name.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for member in state.hands() {
            if !hands.iter().any(|(key, _)| *key == member.key) {
                hands.push((member.key, member.display_name()));
            }
        }
        self.hands = hands;
        if let Some(audience) = &view.view {
            self.listeners = audience.listeners;
        }
        self.my_role = state.role_of(&self.me).unwrap_or(RoomRole::Listener);
        self.my_hand = self.hands.iter().any(|(key, _)| *key == self.me);
        if let Focus::People(at) = self.focus {
            self.focus = Focus::People(at.min(self.people().len().saturating_sub(1)));
        }
    }

    /// This node's audio now: who is loud, and the connection's health.
    pub fn on_stats(&mut self, stats: Box<AudioStats>) {
        self.levels = stats
            .levels
            .iter()
            .map(|level| (level.peer_id, level.level))
            .collect();
        self.self_muted = stats.self_muted;
        let counts = (stats.expected, stats.delivered);
        if self.counts.back() != Some(&counts) {
            if self.counts.len() == LOSS_WINDOW {
                self.counts.pop_front();
            }
            self.counts.push_back(counts);
        }
        self.stats = Some(stats);
    }

    /// Loss over the last few reports, in per cent (`None` before two reports with frames).
    fn recent_loss(&self) -> Option<f64> {
        let (first, last) = (self.counts.front()?, self.counts.back()?);
        let expected = last.0.checked_sub(first.0).filter(|n| *n > 0)?;
        let delivered = last.1.saturating_sub(first.1);
        Some(100.0 * expected.saturating_sub(delivered) as f64 / expected as f64)
    }

    /// The people the arrows pick from: the stage, then the raised hands.
    fn people(&self) -> Vec<(PeerKey, String, bool)> {
        let mut people: Vec<(PeerKey, String, bool)> = self
            .stage
            .iter()
            .map(|member| (member.key, member.name.clone(), member.muted))
            .collect();
        people.extend(
            self.hands
                .iter()
                .filter(|(key, _)| !self.stage.iter().any(|m| m.key == *key))
                .map(|(key, name)| (*key, name.clone(), false)),
        );
        people
    }

    /// A key pressed.
    pub fn key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::Nothing;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c' | 'd') if ctrl => return Action::Leave,
            KeyCode::F(2) => {
                return Action::Do(Command::Act(if self.my_hand {
                    ControlBody::LowerHand
                } else {
                    ControlBody::RaiseHand
                }));
            }
            KeyCode::F(3) => return Action::Do(Command::MuteSelf(!self.self_muted)),
            KeyCode::F(4) => return Action::Do(Command::Consent),
            KeyCode::PageUp => {
                self.scroll = (self.scroll + 5).min(self.log.len().saturating_sub(1));
                return Action::Nothing;
            }
            KeyCode::PageDown => {
                self.scroll = self.scroll.saturating_sub(5);
                return Action::Nothing;
            }
            KeyCode::Tab | KeyCode::BackTab => {
                self.focus = match self.focus {
                    Focus::Input if !self.people().is_empty() => Focus::People(0),
                    _ => Focus::Input,
                };
                return Action::Nothing;
            }
            _ => {}
        }
        match self.focus {
            Focus::Input => self.key_in_input(key, ctrl),
            Focus::People(at) => self.key_on_people(key, at),
        }
    }

    fn key_in_input(&mut self, key: KeyEvent, ctrl: bool) -> Action {
        match key.code {
            KeyCode::Enter => {
                self.scroll = 0;
                let typed = std::mem::take(&mut self.input);
                if typed.trim().is_empty() {
                    Action::Nothing
                } else {
                    Action::Typed(typed)
                }
            }
            KeyCode::Char('u') if ctrl => {
                self.input.clear();
                Action::Nothing
            }
            KeyCode::Char(c) if !ctrl => {
                if self.input.len() < 1_000 {
                    self.input.push(c);
                }
                Action::Nothing
            }
            KeyCode::Backspace => {
                self.input.pop();
                Action::Nothing
            }
            KeyCode::Esc => {
                self.input.clear();
                Action::Nothing
            }
            _ => Action::Nothing,
        }
    }

    fn key_on_people(&mut self, key: KeyEvent, at: usize) -> Action {
        let people = self.people();
        let Some((target, _, muted)) = people.get(at).cloned() else {
            self.focus = Focus::Input;
            return Action::Nothing;
        };
        let act = |body| Action::Do(Command::Act(body));
        match key.code {
            KeyCode::Up => {
                self.focus = Focus::People(at.saturating_sub(1));
                Action::Nothing
            }
            KeyCode::Down => {
                self.focus = Focus::People((at + 1).min(people.len() - 1));
                Action::Nothing
            }
            KeyCode::Esc => {
                self.focus = Focus::Input;
                Action::Nothing
            }
            KeyCode::Char('u') => act(ControlBody::Promote {
                target,
                role: earshot_protocol::Role::Speaker,
            }),
            KeyCode::Char('d') => act(ControlBody::Demote { target }),
            KeyCode::Char('m') if muted => act(ControlBody::Unmute { target }),
            KeyCode::Char('m') => act(ControlBody::Mute { target }),
            KeyCode::Char('x') => act(ControlBody::Remove {
                target,
                revoke: Vec::new(),
            }),
            _ => Action::Nothing,
        }
    }

    /// Draws the room in `frame`.
    pub fn draw(&self, frame: &mut Frame) {
        let area = frame.area();
        if area.width < MIN_SIZE.0 || area.height < MIN_SIZE.1 {
            frame.render_widget(
                Paragraph::new(format!(
                    "Make the terminal at least {}×{} to see the room.",
                    MIN_SIZE.0, MIN_SIZE.1
                ))
                .wrap(ratatui::widgets::Wrap { trim: true }),
                area,
            );
            return;
        }
        let [header, body, status, input, hints] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(3),
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(area);
        let side = (area.width / 3).clamp(20, 34);
        let [people, rule, log] = Layout::horizontal([
            Constraint::Length(side),
            Constraint::Length(2),
            Constraint::Min(10),
        ])
        .areas(body);
        frame.render_widget(
            Paragraph::new(vec![Line::from("│"); usize::from(rule.height)])
                .style(Style::new().fg(Color::DarkGray)),
            rule,
        );
        frame.render_widget(Paragraph::new(self.header_line()), header);
        frame.render_widget(Paragraph::new(self.people_lines(people)), people);
        frame.render_widget(Paragraph::new(self.log_lines(log)), log);
        frame.render_widget(Paragraph::new(self.status_line()), status);
        let prompt = "> ";
        let shown = tail_fitting(&self.input, usize::from(input.width) - prompt.len() - 1);
        frame.render_widget(
            Paragraph::new(Line::from(vec![Span::raw(prompt).bold(), Span::raw(shown)])),
            input,
        );
        if self.focus == Focus::Input {
            let x = input.x + (prompt.len() + text_width(shown)) as u16;
            frame.set_cursor_position((x.min(input.right().saturating_sub(1)), input.y));
        }
        frame.render_widget(
            Paragraph::new(self.hints()).style(Style::new().fg(Color::DarkGray)),
            hints,
        );
    }

    /// The recording first (it must show however narrow the terminal), then the room.
    fn header_line(&self) -> Line<'static> {
        let mut spans = Vec::new();
        if self.recording {
            spans.push(Span::raw("● REC ").fg(Color::Red).bold());
        }
        spans.push(
            Span::raw(format!(" {} ", one_line(&self.title)))
                .bold()
                .reversed(),
        );
        let now = earshot_node::clock::now();
        if let Some(starts_at) = self.starts_at.filter(|at| *at > now) {
            let minutes = (starts_at.0 - now.0).div_ceil(60_000);
            spans.push(Span::raw(format!(" begins in {minutes} min ·")).fg(Color::Yellow));
        }
        spans.push(Span::raw(format!(" {} listening", self.listeners)));
        if !self.hands.is_empty() {
            spans.push(Span::raw(format!(" · ✋ {}", self.hands.len())));
        }
        spans.push(Span::raw(format!(" · you: {}", self.my_role.as_str())));
        Line::from(spans)
    }

    fn people_lines(&self, area: Rect) -> Vec<Line<'static>> {
        let width = usize::from(area.width).saturating_sub(1);
        let selected = match self.focus {
            Focus::People(at) => Some(at),
            Focus::Input => None,
        };
        let mut lines = vec![Line::from("Stage".bold())];
        let name_width = width.saturating_sub(3 + METER + 1);
        for (i, member) in self.stage.iter().enumerate() {
            let mark = match member.role {
                RoomRole::Host => "★",
                RoomRole::Moderator => "◆",
                RoomRole::Speaker | RoomRole::Listener => " ",
            };
            let level = self.levels.get(&member.key).copied();
            let talking = level.is_some_and(|level| level < TALKING);
            let name = fit(&one_line(&member.name), name_width);
            let mut name_style = Style::new();
            if talking {
                name_style = name_style.fg(Color::Green).add_modifier(Modifier::BOLD);
            }
            let mut spans = vec![
                Span::raw(format!("{mark} ")),
                Span::styled(name, name_style),
                Span::raw(" "),
            ];
            if member.muted || (member.key == self.me && (self.self_muted || self.held)) {
                spans.push(Span::raw("muted").fg(Color::Yellow));
            } else {
                spans.push(Span::raw(meter(level)).fg(Color::Green));
            }
            let mut line = Line::from(spans);
            if selected == Some(i) {
                line = line.reversed();
            }
            lines.push(line);
        }
        lines.push(Line::default());
        let hands: Vec<&(PeerKey, String)> = self
            .hands
            .iter()
            .filter(|(key, _)| !self.stage.iter().any(|m| m.key == *key))
            .collect();
        lines.push(Line::from(format!("Hands ({})", hands.len()).bold()));
        for (i, (key, name)) in hands.iter().enumerate() {
            let you = if *key == self.me { " (you)" } else { "" };
            let name = fit(&one_line(name), width.saturating_sub(4 + you.len()));
            let mut line = Line::from(format!("{:>2}. {}{you}", i + 1, name.trim_end()));
            if selected == Some(self.stage.len() + i) {
                line = line.reversed();
            }
            lines.push(line);
        }
        if !self.supporters.is_empty() {
            lines.push(Line::default());
            lines.push(Line::from(
                format!("Support ({})", self.supporters.len()).bold(),
            ));
            for (name, amount, _, confirmed) in self.supporters.iter().rev() {
                let mark = if *confirmed { " ✔" } else { "" };
                let room = width.saturating_sub(3 + text_width(amount) + 1 + mark.len());
                let name = fit(&one_line(name), room);
                lines.push(Line::from(vec![
                    Span::raw("♥ ").fg(Color::Yellow),
                    Span::raw(format!("{} {amount}", name.trim_end())),
                    Span::raw(mark).fg(Color::Green),
                ]));
            }
        }
        lines
    }

    /// The end of the log (or as far back as scrolled), wrapped to the pane.
    fn log_lines(&self, area: Rect) -> Vec<Line<'static>> {
        let width = usize::from(area.width).max(1);
        let height = usize::from(area.height);
        let mut rows: Vec<Line<'static>> = Vec::new();
        let end = self.log.len().saturating_sub(self.scroll);
        for line in self.log.iter().take(end).rev() {
            let text: String = line
                .spans
                .iter()
                .map(|span| span.content.as_ref())
                .collect();
            let mut pieces = wrap(&text, width);
            while let Some(piece) = pieces.pop() {
                rows.push(Line::styled(piece, line.style));
            }
            if rows.len() >= height {
                break;
            }
        }
        rows.truncate(height);
        rows.reverse();
        rows
    }

    fn status_line(&self) -> Line<'static> {
        if self.held {
            return Line::from(
                "● Recorded: your microphone is off until you agree (F4 or /consent)"
                    .fg(Color::Red)
                    .bold(),
            );
        }
        let mut parts = Vec::new();
        if let Some(stats) = &self.stats {
            if self.host {
                parts.push(format!("{} children", stats.children));
                parts.push(format!(
                    "audience loss {:.1} %",
                    f64::from(stats.audience_loss_permille) / 10.0
                ));
            } else {
                match stats.depth {
                    Some(depth) => parts.push(format!("depth {depth}")),
                    None => parts.push("finding a place in the tree…".into()),
                }
                if let Some(loss) = self.recent_loss() {
                    parts.push(format!("loss {loss:.1} %"));
                }
                if let Some(ms) = stats.latency_p50_ms {
                    parts.push(format!("latency {ms} ms"));
                }
                parts.push(format!("buffer {:.0} ms", stats.buffer_ms));
                if stats.children > 0 {
                    parts.push(format!("relaying to {}", stats.children));
                }
            }
            if stats.speaking {
                parts.push(
                    if stats.self_muted {
                        "mic off"
                    } else {
                        "mic on"
                    }
                    .into(),
                );
            }
        } else {
            parts.push("connecting…".into());
        }
        Line::from(parts.join(" · "))
    }

    fn hints(&self) -> &'static str {
        match self.focus {
            Focus::People(_) if self.host || self.my_role == RoomRole::Moderator => {
                "↑↓ pick · u: bring up · d: down · m: mute · x: remove · Tab: back"
            }
            Focus::People(_) => "↑↓ pick · Tab: back (the host and moderators act on people)",
            Focus::Input => {
                "Enter: chat, /cmd · Tab: people · F2 hand · F3 mic · PgUp/Dn · ^C leave"
            }
        }
    }
}

/// A level meter: [`METER`] cells, full at 0 dBov, empty at [`METER_FLOOR`] or no sound.
fn meter(level: Option<u8>) -> String {
    let loud = level.map_or(0, |level| METER_FLOOR.saturating_sub(level));
    let cells = (usize::from(loud) * METER).div_ceil(usize::from(METER_FLOOR));
    format!("{}{}", "█".repeat(cells), "·".repeat(METER - cells))
}

fn text_width(text: &str) -> usize {
    text.chars().map(|c| c.width().unwrap_or(0)).sum()
}

/// `text` cut to `width` columns (an ellipsis marking the cut), padded to it.
fn fit(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut used = 0;
    if text_width(text) <= width {
        out.push_str(text);
        used = text_width(text);
    } else {
        for c in text.chars() {
            let w = c.width().unwrap_or(0);
            if used + w + 1 > width {
                break;
            }
            out.push(c);
            used += w;
        }
        out.push('…');
        used += 1;
    }
    out.push_str(&" ".repeat(width.saturating_sub(used)));
    out
}

/// The end of `text` that fits in `width` columns (the input line shows what is being typed).
fn tail_fitting(text: &str, width: usize) -> &str {
    let mut used = 0;
    let mut start = text.len();
    for (at, c) in text.char_indices().rev() {
        let w = c.width().unwrap_or(0);
        if used + w > width {
            break;
        }
        used += w;
        start = at;
    }
    &text[start..]
}

/// `text` in rows of at most `width` columns, broken at spaces where a word fits in a row.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut rows = Vec::new();
    let mut row = String::new();
    let mut used = 0;
    for word in text.split_inclusive(' ') {
        let needed = text_width(word.trim_end());
        if used > 0 && used + needed > width && needed <= width {
            rows.push(std::mem::take(&mut row).trim_end().to_owned());
            used = 0;
        }
        for c in word.chars() {
            let w = c.width().unwrap_or(0);
            // A space past the end is left hanging (drawn nowhere).
            if used + w > width && c != ' ' {
                rows.push(std::mem::take(&mut row));
                used = 0;
            }
            row.push(c);
            used += w;
        }
    }
    rows.push(row);
    rows
}

#[cfg(test)]
mod tests;
