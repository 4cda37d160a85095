//! What the viewer's user can ask for, and how keys (desktop) and touches (Android) ask for it.
//! Platform-free so that the gestures are tested on the host with the code the app runs.
//!
//! Keys: Space pauses and resumes; S saves a snapshot; Esc (or Back) stops and saves; `+` / `-`
//! double or halve the style weight; Tab toggles between the image and the content photo.
//! Touches: a tap pauses and resumes; a two-finger tap or a long press toggles the content photo;
//! a vertical swipe up doubles the style weight, down halves it.

use std::collections::HashMap;
use std::time::Duration;

/// One thing the user asked the viewer for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Pause, or resume.
    TogglePause,
    /// Show the content photo instead of the image, or back.
    ToggleContent,
    /// Save a snapshot of the current image.
    Snapshot,
    /// Double the style weight (the optimizer restarts from the current image).
    DoubleStyle,
    /// Halve the style weight.
    HalveStyle,
    /// Stop the run and keep its current result.
    Stop,
}

/// A key as the viewer sees it, taken from winit's logical key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyPress<'a> {
    /// A key that types this text.
    Character(&'a str),
    /// Esc.
    Escape,
    /// Android's Back.
    Back,
    /// Space.
    Space,
    /// Tab.
    Tab,
}

impl Action {
    /// The action of a key, if it has one.
    pub fn of_key(key: KeyPress) -> Option<Action> {
        match key {
            KeyPress::Escape | KeyPress::Back => Some(Action::Stop),
            KeyPress::Space => Some(Action::TogglePause),
            KeyPress::Tab => Some(Action::ToggleContent),
            KeyPress::Character("s" | "S") => Some(Action::Snapshot),
            KeyPress::Character("+" | "=") => Some(Action::DoubleStyle),
            KeyPress::Character("-") => Some(Action::HalveStyle),
            KeyPress::Character(_) => None,
        }
    }
}

/// Where a finger is in its contact with the screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TouchPhase {
    /// It touched the screen.
    Started,
    /// It moved.
    Moved,
    /// It left the screen.
    Ended,
    /// The system took the contact away (a gesture of its own, a dialog).
    Cancelled,
}

/// One touch event: which finger, what happened, where (physical pixels) and when (since any
/// fixed instant).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Touch {
    /// The finger's id, stable while it touches.
    pub finger: u64,
    /// What happened.
    pub phase: TouchPhase,
    /// Position in physical pixels.
    pub position: (f64, f64),
    /// When it happened.
    pub time: Duration,
}

/// A tap ends within this time of its start.
pub const TAP_TIME: Duration = Duration::from_millis(300);
/// A long press lasts at least this long.
pub const LONG_PRESS_TIME: Duration = Duration::from_millis(500);
/// A tap or press moves less than this, in density-independent pixels.
pub const SLOP_DP: f64 = 16.0;
/// A swipe travels at least this far vertically, in density-independent pixels.
pub const SWIPE_DP: f64 = 80.0;

#[derive(Clone, Copy, Debug)]
struct Contact {
    start: (f64, f64),
    at: Duration,
    moved: f64,
    position: (f64, f64),
}

/// Turns touches into [`Action`]s: taps, two-finger taps, long presses and vertical swipes.
#[derive(Debug)]
pub struct Gestures {
    /// Physical pixels per density-independent pixel.
    scale: f64,
    /// Fingers down now.
    down: HashMap<u64, Contact>,
    /// The fingers of the current gesture so far (down now or lifted), the most at once, and
    /// whether any moved past the slop or was cancelled.
    gesture: Option<Gesture>,
}

#[derive(Clone, Copy, Debug)]
struct Gesture {
    started: Duration,
    most_fingers: usize,
    spoiled: bool,
}

impl Gestures {
    /// A recognizer for a screen with `scale` physical pixels per density-independent pixel
    /// (winit's scale factor).
    pub fn new(scale: f64) -> Self {
        Self { scale: scale.max(0.1), down: HashMap::new(), gesture: None }
    }

    /// Takes one touch event; returns the action it completes, if any.
    pub fn touch(&mut self, t: Touch) -> Option<Action> {
        match t.phase {
            TouchPhase::Started => {
                let g = self.gesture.get_or_insert(Gesture { started: t.time, most_fingers: 0, spoiled: false });
                self.down.insert(t.finger, Contact { start: t.position, at: t.time, moved: 0.0, position: t.position });
                g.most_fingers = g.most_fingers.max(self.down.len());
                None
            }
            TouchPhase::Moved => {
                if let Some(c) = self.down.get_mut(&t.finger) {
                    c.position = t.position;
                    c.moved = c.moved.max(distance(c.start, t.position));
                }
                None
            }
            TouchPhase::Cancelled => {
                self.down.remove(&t.finger);
                if let Some(g) = &mut self.gesture {
                    g.spoiled = true;
                }
                self.end_if_lifted();
                None
            }
            TouchPhase::Ended => {
                let mut contact = self.down.remove(&t.finger)?;
                contact.position = t.position;
                contact.moved = contact.moved.max(distance(contact.start, t.position));
                let action = self.classify(&contact, t.time);
                self.end_if_lifted();
                action
            }
        }
    }

    /// What the gesture is, as its `contact` lifts at `time` (one action per gesture: the
    /// last finger of a two-finger tap completes it).
    fn classify(&mut self, contact: &Contact, time: Duration) -> Option<Action> {
        let slop = SLOP_DP * self.scale;
        let g = self.gesture.as_mut()?;
        if g.spoiled {
            return None;
        }
        if g.most_fingers >= 2 {
            if contact.moved >= slop || time.saturating_sub(g.started) > TAP_TIME {
                g.spoiled = true;
                return None;
            }
            // The first finger of the two lifts: wait for the other.
            return self.down.is_empty().then_some(Action::ToggleContent);
        }
        let held = time.saturating_sub(contact.at);
        let (dx, dy) = (contact.position.0 - contact.start.0, contact.position.1 - contact.start.1);
        if dy.abs() >= SWIPE_DP * self.scale && dy.abs() > 2.0 * dx.abs() {
            return Some(if dy < 0.0 { Action::DoubleStyle } else { Action::HalveStyle });
        }
        if contact.moved >= slop {
            return None;
        }
        if held <= TAP_TIME {
            Some(Action::TogglePause)
        } else if held >= LONG_PRESS_TIME {
            Some(Action::ToggleContent)
        } else {
            None
        }
    }

    fn end_if_lifted(&mut self) {
        if self.down.is_empty() {
            self.gesture = None;
        }
    }
}

fn distance(a: (f64, f64), b: (f64, f64)) -> f64 {
    ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt()
}
