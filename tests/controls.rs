//! The viewer's controls, through the code the desktop viewer and the Android app run: keys and
//! touch gestures to actions.

#![cfg(feature = "viewer")]

use std::time::Duration;

use neural_style::controls::{Action, Gestures, KeyPress, Touch, TouchPhase};

/// A touch event of `finger` at `ms` milliseconds.
fn touch(finger: u64, phase: TouchPhase, (x, y): (f64, f64), ms: u64) -> Touch {
    Touch { finger, phase, position: (x, y), time: Duration::from_millis(ms) }
}

/// Feeds the events to a recognizer for a screen of 2 physical pixels per dp; returns the
/// actions they produced, in order.
fn actions(events: &[Touch]) -> Vec<Action> {
    let mut g = Gestures::new(2.0);
    events.iter().filter_map(|t| g.touch(*t)).collect()
}

use TouchPhase::{Cancelled, Ended, Moved, Started};

#[test]
fn a_tap_pauses_and_a_second_tap_resumes() {
    let taps = [
        touch(1, Started, (100.0, 100.0), 0),
        touch(1, Ended, (102.0, 101.0), 120),
        touch(2, Started, (300.0, 400.0), 1000),
        touch(2, Ended, (300.0, 400.0), 1100),
    ];
    assert_eq!(actions(&taps), [Action::TogglePause, Action::TogglePause]);
}

#[test]
fn a_two_finger_tap_toggles_the_content_photo_once() {
    let two = [
        touch(1, Started, (100.0, 100.0), 0),
        touch(2, Started, (300.0, 100.0), 40),
        touch(1, Ended, (100.0, 100.0), 150),
        touch(2, Ended, (301.0, 100.0), 180),
    ];
    assert_eq!(actions(&two), [Action::ToggleContent]);
    // Lifted in the other order, the same.
    let two = [two[0], two[1], touch(2, Ended, (300.0, 100.0), 150), touch(1, Ended, (100.0, 100.0), 170)];
    assert_eq!(actions(&two), [Action::ToggleContent]);
}

#[test]
fn a_long_press_toggles_the_content_photo() {
    let press = [touch(1, Started, (100.0, 100.0), 0), touch(1, Ended, (101.0, 100.0), 700)];
    assert_eq!(actions(&press), [Action::ToggleContent]);
    // Between a tap and a long press: nothing.
    let unsure = [touch(1, Started, (100.0, 100.0), 0), touch(1, Ended, (100.0, 100.0), 400)];
    assert_eq!(actions(&unsure), []);
}

#[test]
fn a_vertical_swipe_up_doubles_and_down_halves_the_style_weight() {
    // 80 dp at 2 px/dp is 160 px.
    let up = [
        touch(1, Started, (200.0, 600.0), 0),
        touch(1, Moved, (205.0, 500.0), 60),
        touch(1, Ended, (210.0, 400.0), 120),
    ];
    assert_eq!(actions(&up), [Action::DoubleStyle]);
    let down = [touch(1, Started, (200.0, 100.0), 0), touch(1, Ended, (190.0, 300.0), 150)];
    assert_eq!(actions(&down), [Action::HalveStyle]);
    // Too short, or too slanted: neither a swipe nor a tap.
    let short = [touch(1, Started, (200.0, 100.0), 0), touch(1, Ended, (200.0, 200.0), 100)];
    assert_eq!(actions(&short), []);
    let slanted = [touch(1, Started, (200.0, 100.0), 0), touch(1, Ended, (400.0, 300.0), 100)];
    assert_eq!(actions(&slanted), []);
}

#[test]
fn a_drag_that_returns_to_its_start_is_not_a_tap() {
    let drag = [
        touch(1, Started, (100.0, 100.0), 0),
        touch(1, Moved, (160.0, 100.0), 50),
        touch(1, Ended, (100.0, 100.0), 100),
    ];
    assert_eq!(actions(&drag), []);
}

#[test]
fn a_cancelled_contact_does_nothing_and_the_next_tap_works() {
    let events = [
        touch(1, Started, (100.0, 100.0), 0),
        touch(1, Cancelled, (100.0, 100.0), 50),
        touch(2, Started, (100.0, 100.0), 500),
        touch(2, Ended, (100.0, 100.0), 550),
    ];
    assert_eq!(actions(&events), [Action::TogglePause]);
}

#[test]
fn a_two_finger_gesture_that_moves_or_lasts_is_nothing() {
    let pinch = [
        touch(1, Started, (100.0, 100.0), 0),
        touch(2, Started, (300.0, 100.0), 10),
        touch(2, Moved, (400.0, 100.0), 60),
        touch(1, Ended, (100.0, 100.0), 120),
        touch(2, Ended, (400.0, 100.0), 130),
    ];
    assert_eq!(actions(&pinch), []);
    let slow = [
        touch(1, Started, (100.0, 100.0), 0),
        touch(2, Started, (300.0, 100.0), 10),
        touch(1, Ended, (100.0, 100.0), 600),
        touch(2, Ended, (300.0, 100.0), 610),
    ];
    assert_eq!(actions(&slow), []);
}

#[test]
fn keys_and_back_map_to_the_same_actions_as_touches() {
    assert_eq!(Action::of_key(KeyPress::Back), Some(Action::Stop));
    assert_eq!(Action::of_key(KeyPress::Escape), Some(Action::Stop));
    assert_eq!(Action::of_key(KeyPress::Space), Some(Action::TogglePause));
    assert_eq!(Action::of_key(KeyPress::Tab), Some(Action::ToggleContent));
    assert_eq!(Action::of_key(KeyPress::Character("s")), Some(Action::Snapshot));
    assert_eq!(Action::of_key(KeyPress::Character("+")), Some(Action::DoubleStyle));
    assert_eq!(Action::of_key(KeyPress::Character("=")), Some(Action::DoubleStyle));
    assert_eq!(Action::of_key(KeyPress::Character("-")), Some(Action::HalveStyle));
    assert_eq!(Action::of_key(KeyPress::Character("x")), None);
}
