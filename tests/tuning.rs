//! Kernel variants chosen by measurement (`neural_style::tuning`): the fastest is kept, cached per
//! adapter and shape, read back without measuring, shared between processes (the first recorded
//! wins), and a choice never changes what a run computes beyond rounding.

mod common;

use std::cell::Cell;

use common::*;
use neural_style::kernels::Family;
use neural_style::tuning::{CACHE_FILE, Tune, Tuner};

const VARIANTS: [&str; 3] = ["tiled", "lanes4", "lanes8"];

/// A measurement of the three variants (milliseconds by name) that counts its calls.
fn timings<'a>(calls: &'a Cell<usize>, ms: [f64; 3]) -> impl FnMut(&str, f64) -> anyhow::Result<f64> + 'a {
    move |name, _best| {
        calls.set(calls.get() + 1);
        Ok(ms[VARIANTS.iter().position(|v| *v == name).unwrap()])
    }
}

#[test]
fn the_fastest_variant_is_chosen_cached_and_read_back_without_measuring() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Cell::new(0);
    let tuner = Tuner::new(Tune::Auto, "adapter A".into(), Some(dir.path().into()));
    let chosen = tuner.choose(Family::Pointwise, "m8 k8 n8", &VARIANTS, timings(&calls, [3.0, 1.0, 2.0]));
    assert_eq!((chosen.as_str(), calls.get()), ("lanes4", 3));
    // Asked again in the same process: no measurement.
    assert_eq!(tuner.choose(Family::Pointwise, "m8 k8 n8", &VARIANTS, timings(&calls, [0.0; 3])), "lanes4");
    assert_eq!(calls.get(), 3);
    let choices = tuner.choices();
    assert_eq!(choices.len(), 1);
    assert_eq!((choices[0].family.as_str(), choices[0].ms, choices[0].measured.len()), ("pointwise", 1.0, 3));

    // Another process on the same adapter reads the cache; another shape or adapter measures.
    let next = Tuner::new(Tune::Auto, "adapter A".into(), Some(dir.path().into()));
    calls.set(0);
    assert_eq!(next.choose(Family::Pointwise, "m8 k8 n8", &VARIANTS, timings(&calls, [0.0, 9.0, 9.0])), "lanes4");
    assert_eq!(calls.get(), 0);
    assert_eq!(next.choose(Family::Gram, "m8 k8 n8", &VARIANTS, timings(&calls, [0.0, 9.0, 9.0])), "tiled");
    let other = Tuner::new(Tune::Auto, "adapter B".into(), Some(dir.path().into()));
    assert_eq!(other.choose(Family::Pointwise, "m8 k8 n8", &VARIANTS, timings(&calls, [9.0, 9.0, 0.0])), "lanes8");
    assert_eq!(calls.get(), 6);
    let cache: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(CACHE_FILE)).unwrap()).unwrap();
    assert_eq!(cache["adapter A"]["pointwise/m8 k8 n8"]["variant"], "lanes4");
    assert_eq!(cache["adapter A"]["gram/m8 k8 n8"]["variant"], "tiled");
    assert_eq!(cache["adapter B"]["pointwise/m8 k8 n8"]["variant"], "lanes8");
}

#[test]
fn the_variants_are_timed_last_listed_first_each_against_the_best_time_so_far() {
    let tuner = Tuner::new(Tune::Always, "adapter A".into(), None);
    let mut seen = Vec::new();
    let ms = [9.0, 2.0, 3.0];
    let chosen = tuner.choose(Family::Pointwise, "s", &VARIANTS, |name, best| {
        seen.push((name.to_string(), best));
        Ok(ms[VARIANTS.iter().position(|v| *v == name).unwrap()])
    });
    assert_eq!(chosen, "lanes4");
    let expected = [("lanes8", f64::INFINITY), ("lanes4", 3.0), ("tiled", 2.0)].map(|(n, b)| (n.to_string(), b));
    assert_eq!(seen, expected);
    // The report lists them in the family's order.
    let names: Vec<String> = tuner.choices()[0].measured.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names, VARIANTS);
}

#[test]
fn a_cached_choice_that_did_not_measure_a_variant_offered_now_is_measured_again() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Cell::new(0);
    // An earlier release offered two variants and cached lanes4.
    let old = Tuner::new(Tune::Auto, "a".into(), Some(dir.path().into()));
    assert_eq!(old.choose(Family::Pointwise, "s", &VARIANTS[..2], timings(&calls, [9.0, 1.0, 0.0])), "lanes4");
    assert_eq!(calls.get(), 2);
    // This one offers a third: it measures all three and replaces the cached choice.
    let new = Tuner::new(Tune::Auto, "a".into(), Some(dir.path().into()));
    assert_eq!(new.choose(Family::Pointwise, "s", &VARIANTS, timings(&calls, [9.0, 1.0, 0.5])), "lanes8");
    assert_eq!(calls.get(), 5);
    let later = Tuner::new(Tune::Auto, "a".into(), Some(dir.path().into()));
    assert_eq!(later.choose(Family::Pointwise, "s", &VARIANTS, timings(&calls, [0.0; 3])), "lanes8");
    assert_eq!(calls.get(), 5);
}

#[test]
fn off_measures_nothing_and_always_measures_again_and_replaces_the_cached_choice() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Cell::new(0);
    let off = Tuner::new(Tune::Off, "a".into(), Some(dir.path().into()));
    assert_eq!(off.choose(Family::Stem, "s", &VARIANTS, timings(&calls, [9.0, 1.0, 1.0])), "tiled");
    assert_eq!(calls.get(), 0);
    assert!(!dir.path().join(CACHE_FILE).exists());

    let auto = Tuner::new(Tune::Auto, "a".into(), Some(dir.path().into()));
    assert_eq!(auto.choose(Family::Stem, "s", &VARIANTS, timings(&calls, [9.0, 1.0, 5.0])), "lanes4");
    let always = Tuner::new(Tune::Always, "a".into(), Some(dir.path().into()));
    assert_eq!(always.choose(Family::Stem, "s", &VARIANTS, timings(&calls, [9.0, 5.0, 1.0])), "lanes8");
    assert_eq!(calls.get(), 6);
    let later = Tuner::new(Tune::Auto, "a".into(), Some(dir.path().into()));
    assert_eq!(later.choose(Family::Stem, "s", &VARIANTS, timings(&calls, [0.0; 3])), "lanes8");
    assert_eq!(calls.get(), 6);
    // A single variant is used without measuring.
    assert_eq!(later.choose(Family::Stem, "t", &VARIANTS[..1], timings(&calls, [1.0; 3])), "tiled");
    assert_eq!(calls.get(), 6);
}

#[test]
fn a_choice_another_process_recorded_first_is_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (Cell::new(0), Cell::new(0));
    let late = Tuner::new(Tune::Auto, "a".into(), Some(dir.path().into()));
    let early = Tuner::new(Tune::Auto, "a".into(), Some(dir.path().into()));
    // `late` measures lanes8 fastest; while it measures, `early` records lanes4.
    let mut early_measure = timings(&first, [9.0, 1.0, 5.0]);
    let chosen = late.choose(Family::Depthwise, "s", &VARIANTS, |name, best| {
        if name == "tiled" {
            assert_eq!(early.choose(Family::Depthwise, "s", &VARIANTS, &mut early_measure), "lanes4");
        }
        timings(&second, [9.0, 5.0, 1.0])(name, best)
    });
    assert_eq!(chosen, "lanes4", "the first recorded choice wins");
    // What `late` measured is still reported.
    let measured = &late.choices()[0].measured;
    assert_eq!(measured.iter().find(|(v, _)| v == "lanes8").unwrap().1, 1.0);
}

#[test]
fn a_variant_that_fails_is_never_chosen_and_a_corrupt_cache_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(CACHE_FILE), "{ not json").unwrap();
    let tuner = Tuner::new(Tune::Auto, "a".into(), Some(dir.path().into()));
    let chosen = tuner.choose(Family::Gram, "s", &VARIANTS, |name, _| {
        if name == "lanes4" { anyhow::bail!("cannot run") } else { Ok(if name == "tiled" { 2.0 } else { 3.0 }) }
    });
    assert_eq!(chosen, "tiled");
    let cache: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(CACHE_FILE)).unwrap()).unwrap();
    assert_eq!(cache["a"]["gram/s"]["variant"], "tiled");
    // Without a cache directory every process measures.
    let calls = Cell::new(0);
    let uncached = Tuner::new(Tune::Auto, "a".into(), None);
    assert_eq!(uncached.choose(Family::Gram, "s", &VARIANTS, timings(&calls, [3.0, 2.0, 1.0])), "lanes8");
    assert_eq!(calls.get(), 3);
}

#[test]
fn a_tuned_run_caches_its_choices_and_computes_what_the_untuned_run_does() {
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let run = |tune: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_neural-style"))
            .args(["bench", "--size", "64", "--iterations", "3", "--warmup", "1", "--optimizer", "adam", "--json"])
            .args(["--tune", tune])
            .env("NEURAL_STYLE_WEIGHTS", default_weights())
            .env("NEURAL_STYLE_CACHE_DIR", &cache)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (json["device"]["name"].as_str().unwrap().to_string(), json["results"][0].clone())
    };
    let (_, off) = run("off");
    assert_eq!(off["choices"].as_array().map_or(0, Vec::len), 0);
    assert!(!cache.join(CACHE_FILE).exists());
    let (tuned_device, tuned) = run("auto");
    let choices = tuned["choices"].as_array().unwrap();
    let families: std::collections::BTreeSet<_> = choices.iter().map(|c| c["family"].as_str().unwrap()).collect();
    for family in ["stem", "depthwise", "pointwise", "gram"] {
        assert!(families.contains(family), "{family} was not tuned: {families:?}");
    }
    assert!(choices.iter().all(|c| c["measured"].as_array().is_some_and(|m| m.len() > 1)));
    // On lavapipe (a CPU) the CPU-shaped products win: the comparison below is between kernels.
    if tuned_device.contains("llvmpipe") {
        assert!(choices.iter().any(|c| c["variant"].as_str().unwrap().starts_with("lanes")), "{choices:?}");
    }
    assert!(cache.join(CACHE_FILE).exists());
    // The second run reads every choice it needs: nothing measured, the same variants. (The
    // first also measured the products of each Gram layout it did not choose; the second asks
    // only for the chosen layout's.)
    let (_, cached) = run("auto");
    let again = cached["choices"].as_array().unwrap();
    assert!(again.iter().all(|c| c.get("measured").is_none()));
    let key = |c: &serde_json::Value| (c["family"].clone(), c["shape"].clone(), c["variant"].clone());
    let measured: Vec<_> = choices.iter().map(key).collect();
    assert!(again.iter().all(|c| measured.contains(&key(c))), "{again:?} not among {measured:?}");
    let layouts =
        |c: &[serde_json::Value]| c.iter().filter(|c| c["shape"].as_str().unwrap().starts_with("layout")).count();
    assert_eq!(layouts(again), layouts(choices));
    // One product shape less per layer (the layers' shapes all differ).
    assert_eq!(again.len() + layouts(choices), choices.len());
    // Variants differ from the defaults by rounding only: 5 Adam steps end at the same loss.
    let loss = |r: &serde_json::Value| r["final_loss"].as_f64().unwrap();
    let rel = (loss(&tuned) - loss(&off)).abs() / loss(&off);
    assert!(rel < 1e-4, "tuned {} untuned {} (relative {rel:e})", loss(&tuned), loss(&off));
    assert_eq!(loss(&cached), loss(&tuned));
}
