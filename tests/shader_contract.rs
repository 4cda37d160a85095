//! The contract between the Rust kernel declarations (`src/kernels/`) and the WGSL, checked by
//! naga on every shader exactly as the engine assembles it (generated constants header,
//! `common.wgsl`, the family file), without a GPU:
//! - each shader parses, validates, and translates to SPIR-V, MSL, HLSL and GLSL ES 3.1 for
//!   every entry point (Vulkan, Metal, DX12 and GLES portability on every commit);
//! - each uniform struct's size and fields (name, offset, type) equal the Rust struct's;
//! - each entry point uses exactly the bindings of its Rust table (name, number, access), the
//!   uniform block at binding 0 of its parameter type;
//! - workgroup sizes equal the Rust ones, and every kernel fits `downlevel_defaults()`.

#[path = "shader_contract/naga_checks.rs"]
mod naga_checks;

use naga_checks::{
    GlobalBinding, Space, entry_point_globals, parse_and_validate, struct_layout, translate_all, workgroup_memory,
    workgroup_size,
};
use neural_style::kernels::{self, Access, Binding, KernelSpec, ParamsLayout, Shader, present};

/// A shader as the engine compiles it, parsed and validated.
fn module(shader: Shader) -> (naga::Module, naga::valid::ModuleInfo) {
    parse_and_validate(&shader.source()).unwrap_or_else(|e| panic!("{}: {e}", shader.file_name()))
}

/// The bindings an entry point must use: the uniform block at 0, then the storage table.
fn expected_bindings(params: &ParamsLayout, storage: &[Binding], uniform_name: &str) -> Vec<GlobalBinding> {
    let uniform = GlobalBinding {
        name: uniform_name.to_string(),
        group: 0,
        binding: 0,
        space: Space::Uniform,
        ty: params.name.to_string(),
    };
    let storage = storage.iter().map(|b| GlobalBinding {
        name: b.name.to_string(),
        group: 0,
        binding: b.binding,
        space: match b.access {
            Access::Read => Space::StorageRead,
            Access::ReadWrite => Space::StorageReadWrite,
        },
        ty: if b.vec4 { "[[f32; 4]]" } else { "[f32]" }.to_string(),
    });
    let mut all: Vec<GlobalBinding> = std::iter::once(uniform).chain(storage).collect();
    all.sort_by_key(|b| b.binding);
    all
}

/// The uniform block an entry point uses (binding 0), for naming it in the expected table.
fn uniform_name(used: &[GlobalBinding]) -> String {
    used.iter().find(|b| b.binding == 0).map_or_else(String::new, |b| b.name.clone())
}

/// The struct declared in WGSL under the Rust struct's name has the same size and fields.
fn assert_layout_matches(shader: Shader, module: &naga::Module, params: &ParamsLayout) {
    let wgsl = struct_layout(module, params.name)
        .unwrap_or_else(|| panic!("{}: no WGSL struct {}", shader.file_name(), params.name));
    let rust: Vec<(String, u32, String)> =
        params.fields.iter().map(|f| (f.name.to_string(), f.offset as u32, f.ty.to_string())).collect();
    assert_eq!(
        wgsl.members,
        rust,
        "{}: fields of {} (name, offset, type): WGSL vs Rust",
        shader.file_name(),
        params.name
    );
    assert_eq!(wgsl.size as usize, params.size, "{}: size of {}", shader.file_name(), params.name);
}

/// The values the engine gives a pipeline-overridable constant.
fn override_values(name: &str) -> &'static [f64] {
    match name {
        "ROWS" | "COLS" => &[1.0, 2.0, 4.0],
        "LANE_ROWS" => &[4.0, 8.0],
        "DW_K" | "CONV_K" => &[3.0, 5.0],
        "DW_S" | "CONV_S" => &[1.0, 2.0],
        "DW_PAD" | "CONV_PAD" => &[0.0, 1.0, 2.0],
        _ => panic!("no test values for the pipeline constant {name}"),
    }
}

#[test]
fn every_shader_parses_validates_and_translates_to_every_backend() {
    for shader in Shader::ALL {
        let (module, info) = module(shader);
        // Each set of pipeline constants is its own pipeline (a product's tile shape, a row
        // kernel's size, stride and padding): translate every combination the engine compiles.
        let specs: Vec<KernelSpec> = kernels::all_specs().into_iter().filter(|s| s.shader == shader).collect();
        let mut names: Vec<&str> = specs.iter().flat_map(|s| s.overrides.iter().copied()).collect();
        names.sort();
        names.dedup();
        let mut sets: Vec<Vec<(&str, f64)>> = vec![Vec::new()];
        for name in names {
            sets = sets
                .into_iter()
                .flat_map(|set| {
                    override_values(name).iter().map(move |&v| set.iter().copied().chain([(name, v)]).collect())
                })
                .collect();
        }
        for set in sets {
            translate_all(&module, &info, &set).unwrap_or_else(|e| panic!("{} {set:?}: {e}", shader.file_name()));
        }
    }
}

#[test]
fn uniform_structs_have_the_rust_layout() {
    for spec in kernels::all_specs() {
        let (module, _) = module(spec.shader);
        assert_layout_matches(spec.shader, &module, &spec.params);
    }
    let (module, _) = module(Shader::Present);
    assert_layout_matches(Shader::Present, &module, &present::VIEW);
}

#[test]
fn every_entry_point_uses_exactly_the_bindings_of_its_rust_table() {
    for spec in kernels::all_specs() {
        let (module, info) = module(spec.shader);
        let mut used = entry_point_globals(&module, &info, spec.entry)
            .unwrap_or_else(|| panic!("{}: no entry point {}", spec.shader.file_name(), spec.entry));
        used.sort_by_key(|b| b.binding);
        let want = expected_bindings(&spec.params, spec.storage, &uniform_name(&used));
        assert_eq!(used, want, "{}: bindings of {}", spec.shader.file_name(), spec.entry);
    }
    let (module, info) = module(Shader::Present);
    let mut used = entry_point_globals(&module, &info, present::FRAGMENT_ENTRY).expect("present fragment entry point");
    used.sort_by_key(|b| b.binding);
    let want = expected_bindings(&present::VIEW, &[present::IMAGE], &uniform_name(&used));
    assert_eq!(used, want, "present.wgsl: bindings of {}", present::FRAGMENT_ENTRY);
    assert!(entry_point_globals(&module, &info, present::VERTEX_ENTRY).is_some_and(|b| b.is_empty()));
}

#[test]
fn every_compute_entry_point_has_a_rust_spec() {
    let specs = kernels::all_specs();
    for shader in Shader::ALL {
        let (module, _) = module(shader);
        for ep in module.entry_points.iter().filter(|ep| ep.stage == naga::ShaderStage::Compute) {
            assert!(
                specs.iter().any(|s| s.shader == shader && s.entry == ep.name),
                "{}: entry point {} has no KernelSpec",
                shader.file_name(),
                ep.name
            );
        }
    }
}

#[test]
fn workgroup_sizes_match_and_every_kernel_fits_downlevel_limits() {
    let limits = wgpu::Limits::downlevel_defaults();
    for spec in kernels::all_specs() {
        let (module, info) = module(spec.shader);
        let name = format!("{}: {}", spec.shader.file_name(), spec.entry);
        assert_eq!(workgroup_size(&module, spec.entry), Some(spec.workgroup_size), "{name}: workgroup size");
        let invocations: u32 = spec.workgroup_size.iter().product();
        assert!(invocations <= limits.max_compute_invocations_per_workgroup, "{name}: {invocations} invocations");
        let storage = spec.storage.len() as u32;
        assert!(storage <= limits.max_storage_buffers_per_shader_stage, "{name}: {storage} storage buffers");
        let shared = workgroup_memory(&module, &info, spec.entry).expect("entry point");
        assert!(shared <= limits.max_compute_workgroup_storage_size, "{name}: {shared} bytes of workgroup memory");
    }
}

#[test]
fn the_constants_header_declares_each_number_once() {
    let header = kernels::wgsl_constants();
    let names: Vec<&str> = header.lines().filter_map(|l| l.strip_prefix("const ")?.split(':').next()).collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "duplicate names in the header: {names:?}");
    // A shader redeclaring a header constant would not parse; the parse checks above cover it.
    assert!(names.contains(&"WORKGROUP") && names.contains(&"FLAG_SYMMETRIC") && names.contains(&"LOSS_SLOTS"));
}
