
// ---- Subgroup broadcasts, for the kernels shaped for CPU-like adapters with subgroups ----
// (Appended to conv.wgsl and pointwise.wgsl, before their broadcast kernels, on devices that
// have subgroup operations: a workgroup of BCAST_LANES invocations is one whole subgroup.)

// The sixteen values lanes 0..7 hold in lo and hi, in that order.
fn broadcast16(lo: f32, hi: f32) -> array<f32, 16> {
    return array<f32, 16>(
        subgroupBroadcast(lo, 0u), subgroupBroadcast(lo, 1u), subgroupBroadcast(lo, 2u), subgroupBroadcast(lo, 3u),
        subgroupBroadcast(lo, 4u), subgroupBroadcast(lo, 5u), subgroupBroadcast(lo, 6u), subgroupBroadcast(lo, 7u),
        subgroupBroadcast(hi, 0u), subgroupBroadcast(hi, 1u), subgroupBroadcast(hi, 2u), subgroupBroadcast(hi, 3u),
        subgroupBroadcast(hi, 4u), subgroupBroadcast(hi, 5u), subgroupBroadcast(hi, 6u), subgroupBroadcast(hi, 7u),
    );
}
