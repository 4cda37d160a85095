//! Choosing among a kernel family's variants by measurement, and remembering the choice.
//!
//! A family with several variants (the products, the stem and the depthwise convolutions: GPU
//! shapes with workgroup tiles or flat grids, CPU shapes with one row or column block per
//! workgroup and outputs in registers) asks the [`Tuner`] for a choice when a plan is built. In
//! [`Tune::Auto`] mode a choice cached for this adapter and shape is used at once; otherwise
//! every eligible variant is timed on the shape and the fastest kept, in memory for the rest of
//! the process and in `tuning.json` in the cache directory for later runs. The first process to
//! record a choice wins: one that measured at the same time adopts it, so two runs of one size
//! always use the same kernels (a choice changes results only by rounding).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::gpu::GpuContext;
use crate::kernels::{BoundOp, Command, Family};

/// The cache file, in the cache directory (`weights::store::cache_dir`).
pub const CACHE_FILE: &str = "tuning.json";

/// When kernel variants are measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tune {
    /// Use the choices cached for this adapter; measure (and cache) the shapes not cached yet.
    #[default]
    Auto,
    /// Measure nothing: every family's first variant (the GPU shapes: tiled products, flat
    /// convolutions).
    Off,
    /// Measure every shape again and replace the cached choices.
    Always,
}

/// One family's choice for one shape, as `bench --json` reports it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Choice {
    /// The family.
    pub family: String,
    /// The shape it was made for (the family's own key).
    pub shape: String,
    /// The variant chosen.
    pub variant: String,
    /// Every variant measured, with its time in milliseconds (in [`Tuner::choices`], empty for a
    /// choice read from the cache; in the cache, what the choice was made among).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measured: Vec<(String, f64)>,
    /// The chosen variant's time in milliseconds when it was measured.
    pub ms: f64,
}

impl Choice {
    /// Whether this (cached) choice stands when `variants` are offered: it is one of them and it
    /// was made among all of them, so a variant added since (a new release) is measured against
    /// it first.
    fn stands_among(&self, variants: &[&str]) -> bool {
        variants.contains(&self.variant.as_str()) && variants.iter().all(|v| self.measured.iter().any(|(m, _)| m == v))
    }
}

/// Per adapter key, per `family/shape`: the cached choice.
type CacheFile = BTreeMap<String, BTreeMap<String, Choice>>;

/// The variant chooser of one device (held by its `GpuContext`).
pub struct Tuner {
    mode: Tune,
    adapter: String,
    path: Option<PathBuf>,
    /// This process's choices with their `family/shape` keys, in the order they were made.
    choices: Mutex<Vec<(String, Choice)>>,
    /// This adapter's cached choices, read once on first use.
    cache: OnceLock<BTreeMap<String, Choice>>,
}

impl Tuner {
    /// A tuner for the adapter named `adapter` in the cache (see [`adapter_key`]), caching in
    /// `cache_dir` (none: measure in every process).
    pub fn new(mode: Tune, adapter: String, cache_dir: Option<PathBuf>) -> Self {
        let path = cache_dir.map(|d| d.join(CACHE_FILE));
        Self { mode, adapter, path, choices: Mutex::default(), cache: OnceLock::new() }
    }

    /// The mode.
    pub fn mode(&self) -> Tune {
        self.mode
    }

    /// The variant of `family` to use for `shape`, one of `variants` (the first is the default,
    /// used without measuring in [`Tune::Off`] mode or when it is the only one). `measure`
    /// times one variant in milliseconds, given the best time of the shape so far (see
    /// [`time_op`]); a variant that fails to run is never chosen (and the shape is measured
    /// again in the next process).
    pub fn choose(
        &self,
        family: Family,
        shape: &str,
        variants: &[&str],
        mut measure: impl FnMut(&str, f64) -> Result<f64>,
    ) -> String {
        let first = variants.first().expect("a variant").to_string();
        if self.mode == Tune::Off || variants.len() == 1 {
            return first;
        }
        let key = format!("{}/{shape}", family.name());
        let listed = |c: &Choice| variants.contains(&c.variant.as_str());
        if let Some((_, c)) = self.choices.lock().unwrap().iter().find(|(k, c)| *k == key && listed(c)) {
            return c.variant.clone();
        }
        if self.mode == Tune::Auto
            && let Some(c) = self.cached(&key).filter(|c| c.stands_among(variants))
        {
            let variant = c.variant.clone();
            self.choices.lock().unwrap().push((key, Choice { measured: Vec::new(), ..c }));
            return variant;
        }
        // The variants listed last (shaped for particular adapters) are timed first, so that a
        // default that cannot win against them is dropped after one dispatch (see `time_op`).
        let mut times = vec![None; variants.len()];
        let mut best = f64::INFINITY;
        for (i, v) in variants.iter().enumerate().rev() {
            times[i] = measure(v, best).ok();
            best = times[i].map_or(best, |ms| best.min(ms));
        }
        let measured: Vec<(String, f64)> =
            variants.iter().zip(times).filter_map(|(v, ms)| ms.map(|ms| (v.to_string(), ms))).collect();
        let Some((variant, ms)) = measured.iter().min_by(|a, b| a.1.total_cmp(&b.1)).cloned() else {
            return first;
        };
        let mine = Choice { family: family.name().into(), shape: shape.into(), variant, measured, ms };
        // Another process may have recorded this shape meanwhile: its choice wins in `auto`.
        let choice = self.record(&key, mine, variants);
        let variant = choice.variant.clone();
        self.choices.lock().unwrap().push((key, choice));
        variant
    }

    /// [`Tuner::choose`] over typed variants: `fitting` are those that can compute the shape (the
    /// default first), `measure` times one.
    pub fn pick<V: Variant>(
        &self,
        family: Family,
        shape: &str,
        fitting: &[V],
        mut measure: impl FnMut(V, f64) -> Result<f64>,
    ) -> V {
        let names: Vec<&str> = fitting.iter().map(|v| v.name()).collect();
        let by_name = |name: &str| fitting.iter().copied().find(|v| v.name() == name);
        let chosen =
            self.choose(family, shape, &names, |name, best| measure(by_name(name).expect("a listed variant"), best));
        by_name(&chosen).unwrap_or(fitting[0])
    }

    /// Every choice this process made or read, in that order.
    pub fn choices(&self) -> Vec<Choice> {
        self.choices.lock().unwrap().iter().map(|(_, c)| c.clone()).collect()
    }

    fn cached(&self, key: &str) -> Option<Choice> {
        let path = self.path.as_ref()?;
        let mine = self.cache.get_or_init(|| read_cache(path).remove(&self.adapter).unwrap_or_default());
        mine.get(key).cloned()
    }

    /// Records `mine` in the cache file under a lock, unless (in `auto` mode) another process
    /// recorded one of `variants` for the key first: then theirs is returned (with the times
    /// measured here).
    fn record(&self, key: &str, mine: Choice, variants: &[&str]) -> Choice {
        let Some(path) = &self.path else { return mine };
        let write = || -> Result<Choice> {
            let dir = path.parent().context("cache path")?;
            std::fs::create_dir_all(dir)?;
            let lock = std::fs::File::create(dir.join("tuning.lock"))?;
            lock.lock()?;
            let mut all = read_cache(path);
            let entries = all.entry(self.adapter.clone()).or_default();
            if self.mode == Tune::Auto
                && let Some(theirs) = entries.get(key).filter(|c| c.stands_among(variants))
            {
                return Ok(Choice { measured: mine.measured.clone(), ..theirs.clone() });
            }
            entries.insert(key.to_string(), mine.clone());
            crate::atomic::write(path, serde_json::to_string_pretty(&all)?.as_bytes())?;
            Ok(mine.clone())
        };
        // An unwritable cache costs only the measurement next time.
        write().unwrap_or(mine)
    }
}

/// The cache key of an adapter: its backend, name, driver and driver version (a new driver
/// measures again).
pub fn adapter_key(info: &wgpu::AdapterInfo) -> String {
    format!("{:?} {} | {} | {}", info.backend, info.name, info.driver, info.driver_info)
}

fn read_cache(path: &PathBuf) -> CacheFile {
    std::fs::read(path).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default()
}

/// A kernel variant a family offers the tuner.
pub trait Variant: Copy {
    /// Its name in the cache and in `bench` reports.
    fn name(self) -> &'static str;
}

/// A zeroed buffer the size of `like`, to time a variant on without touching the plan's values;
/// not counted in the plan's memory (it lives only while the variant is timed).
pub fn scratch_like(ctx: &GpuContext, like: &wgpu::Buffer) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("tuning scratch"),
        size: like.size(),
        usage: like.usage(),
        mapped_at_creation: false,
    })
}

/// Timed dispatches [`time_op`] stops adding once they have taken this long (ms): the repeats
/// are for short dispatches, whose launch jitter is a large part of their time; a long one is
/// ranked by one time, and the first run of a large picture measures its slow variants (the
/// GPU-shaped ones on a CPU adapter) in half the time.
const TIMING_BUDGET_MS: f64 = 20.0;

/// A variant whose first dispatch takes more than this many times the best time of its shape so
/// far is timed no further: it cannot win (on a CPU adapter the GPU-shaped variants take 5 to
/// 50 times the best), and timing it again was a third of a large picture's first run.
const HOPELESS: f64 = 3.0;

/// Milliseconds one dispatch of `op` takes: its GPU time from timestamp queries where the
/// adapter has them (`profile::run`), else the wall clock around its submission and completion;
/// the best of three after a first dispatch that warms caches up (fewer once they have taken
/// [`TIMING_BUDGET_MS`]), or that first time alone when it is over [`HOPELESS`] times `best`,
/// the best time of another variant of the shape. Errors reported before are set aside: an
/// error here is this dispatch's.
pub fn time_op(ctx: &GpuContext, op: &BoundOp, best: f64) -> Result<f64> {
    let commands = [Command::Dispatch(op.clone())];
    let once = || -> Result<f64> {
        let start = Instant::now();
        let profile = crate::profile::run(ctx, &commands)?;
        Ok(profile.gpu_ms.unwrap_or_else(|| start.elapsed().as_secs_f64() * 1e3))
    };
    ctx.with_errors_set_aside(|| {
        let first = once()?;
        if first > HOPELESS * best {
            return Ok(first);
        }
        let (mut fastest, mut spent) = (f64::INFINITY, 0.0);
        for _ in 0..3 {
            let ms = once()?;
            fastest = fastest.min(ms);
            spent += ms;
            if spent >= TIMING_BUDGET_MS {
                break;
            }
        }
        Ok(fastest)
    })
}
