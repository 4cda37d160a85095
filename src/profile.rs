//! GPU time per kernel family: every dispatch of an iteration in its own compute pass with a
//! timestamp at its start and end (where the adapter has `TIMESTAMP_QUERY`). Used by `bench`;
//! the separate passes make a profiled iteration slower than a normal one, so wall-clock rates
//! are measured without it.

use anyhow::Result;

use crate::gpu::GpuContext;
use crate::kernels::{Command, Family};

/// Timestamps per query set (wgpu's maximum query-set size is 4096).
const QUERIES_PER_SET: usize = 4096;

/// What one iteration's dispatches cost, per [`Family`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct IterationProfile {
    /// Compute dispatches in the iteration.
    pub dispatches: usize,
    /// Sum of the dispatches' GPU times in milliseconds (`None` without timestamps).
    pub gpu_ms: Option<f64>,
    /// Per family, in [`Family::ALL`] order (families without dispatches left out).
    pub families: Vec<FamilyProfile>,
    /// The slowest dispatches, slowest first (empty without timestamps).
    pub slowest: Vec<DispatchProfile>,
}

/// One timed dispatch.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DispatchProfile {
    /// Its position in the iteration.
    pub index: usize,
    /// The kernel's entry point.
    pub kernel: &'static str,
    /// Its family.
    pub family: Family,
    /// Workgroups dispatched.
    pub workgroups: [u32; 3],
    /// GPU time in milliseconds.
    pub gpu_ms: f64,
}

/// How many dispatches [`IterationProfile::slowest`] lists.
const SLOWEST: usize = 10;

/// One family's share of an iteration.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FamilyProfile {
    /// The family.
    pub family: Family,
    /// Its dispatches in the iteration.
    pub dispatches: usize,
    /// Their GPU time in milliseconds (`None` without timestamps).
    pub gpu_ms: Option<f64>,
}

/// Runs `commands` (one iteration) and, with timestamps available, times each dispatch. The
/// commands take effect exactly as `kernels::record_commands` would apply them.
pub fn run(ctx: &GpuContext, commands: &[Command]) -> Result<IterationProfile> {
    let ops: Vec<_> =
        commands.iter().filter_map(|c| if let Command::Dispatch(op) = c { Some(op) } else { None }).collect();
    let families: Vec<Family> = ops.iter().map(|op| op.family()).collect();
    let times = if ctx.device.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
        Some(timed(ctx, commands)?)
    } else {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        crate::kernels::record_commands(&mut encoder, commands);
        ctx.queue.submit([encoder.finish()]);
        ctx.finish()?;
        None
    };
    let per_family = Family::ALL
        .iter()
        .filter_map(|&family| {
            let mine = families.iter().enumerate().filter(|(_, f)| **f == family).map(|(i, _)| i);
            let dispatches = mine.clone().count();
            let gpu_ms = times.as_ref().map(|t: &Vec<f64>| mine.map(|i| t[i]).sum());
            (dispatches > 0).then_some(FamilyProfile { family, dispatches, gpu_ms })
        })
        .collect();
    let mut slowest: Vec<DispatchProfile> = times
        .iter()
        .flatten()
        .zip(&ops)
        .enumerate()
        .map(|(index, (&gpu_ms, op))| DispatchProfile {
            index,
            kernel: op.name(),
            family: op.family(),
            workgroups: op.workgroups(),
            gpu_ms,
        })
        .collect();
    slowest.sort_by(|a, b| b.gpu_ms.total_cmp(&a.gpu_ms));
    slowest.truncate(SLOWEST);
    Ok(IterationProfile {
        dispatches: families.len(),
        gpu_ms: times.map(|t| t.iter().sum()),
        families: per_family,
        slowest,
    })
}

/// Milliseconds of each dispatch, in order; submits in chunks of at most one query set.
fn timed(ctx: &GpuContext, commands: &[Command]) -> Result<Vec<f64>> {
    let period_ns = f64::from(ctx.queue.get_timestamp_period());
    let query_set = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("dispatch timestamps"),
        ty: wgpu::QueryType::Timestamp,
        count: QUERIES_PER_SET as u32,
    });
    let bytes = (QUERIES_PER_SET * 8) as u64;
    let resolved = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("resolved timestamps"),
        size: bytes,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let readback = ctx.readback_buffer(2 * QUERIES_PER_SET);
    let mut times = Vec::new();
    let mut rest = commands;
    while !rest.is_empty() {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        let mut queries = 0;
        while let Some((first, tail)) = rest.split_first() {
            if queries + 2 > QUERIES_PER_SET {
                break;
            }
            match first {
                Command::Dispatch(op) => {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("timed dispatch"),
                        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                            query_set: &query_set,
                            beginning_of_pass_write_index: Some(queries as u32),
                            end_of_pass_write_index: Some(queries as u32 + 1),
                        }),
                    });
                    op.dispatch(&mut pass);
                    queries += 2;
                }
                other => crate::kernels::record_commands(&mut encoder, std::slice::from_ref(other)),
            }
            rest = tail;
        }
        if queries > 0 {
            encoder.resolve_query_set(&query_set, 0..queries as u32, &resolved, 0);
            encoder.copy_buffer_to_buffer(&resolved, 0, &readback, 0, (queries * 8) as u64);
        }
        ctx.queue.submit([encoder.finish()]);
        let stamps: Vec<u64> = ctx.read_mapped(&readback, queries)?;
        times.extend(stamps.chunks(2).map(|t| t[1].saturating_sub(t[0]) as f64 * period_ns / 1e6));
    }
    Ok(times)
}
