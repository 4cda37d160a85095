//! The contract between the Rust kernel declarations (`src/kernels/`) and the WGSL, checked by
//! naga on every shader exactly as the engine assembles it (generated constants header,
//! `common.wgsl`, the family file), without a GPU:
//! - each shader parses, validates, and translates to SPIR-V, MSL, HLSL and GLSL ES 3.1 for
//!   every entry point (Vulkan, Metal, DX12 and GLES portability on every commit), in f32 and
//!   with each kernel's activations in f16 (SPIR-V, MSL and HLSL; GLSL has no 16-bit float, and
//!   naga refuses it: wgpu's GL backend offers no `SHADER_F16`);
//! - each uniform struct's size and fields (name, offset, type) equal the Rust struct's;
//! - each entry point uses exactly the bindings of its Rust table (name, number, access, element
//!   type in either precision), the uniform block at binding 0 of its parameter type;
//! - workgroup sizes equal the Rust ones, and every kernel fits `downlevel_defaults()`.

#[path = "shader_contract/naga_checks.rs"]
mod naga_checks;

use naga_checks::{
    GlobalBinding, Space, entry_point_globals, parse_and_validate, struct_layout, translate_all, workgroup_memory,
    workgroup_size,
};
use neural_style::kernels::{self, Access, Binding, Holds, KernelSpec, ParamsLayout, Precision, Shader, present};

/// A shader as the engine compiles it with every storage type f32, parsed and validated.
fn module(shader: Shader) -> (naga::Module, naga::valid::ModuleInfo) {
    kernel_module(shader, None, Precision::F32)
}

/// A shader as the engine compiles it for `spec` at `precision`, parsed and validated.
fn kernel_module(
    shader: Shader,
    spec: Option<&KernelSpec>,
    precision: Precision,
) -> (naga::Module, naga::valid::ModuleInfo) {
    parse_and_validate(&shader.source(spec, precision))
        .unwrap_or_else(|e| panic!("{} ({precision:?}): {e}", shader.file_name()))
}

/// The bindings an entry point must use: the uniform block at 0, then the storage table, each
/// binding's element type as `precision` stores what it holds.
fn expected_bindings(
    params: &ParamsLayout,
    storage: &[Binding],
    uniform_name: &str,
    precision: Precision,
) -> Vec<GlobalBinding> {
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
        ty: {
            let elem = match b.holds {
                Holds::F32 => "f32",
                Holds::Activations => precision.name(),
            };
            if b.vec4 { format!("[[{elem}; 4]]") } else { format!("[{elem}]") }
        },
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
        // The layout flags of a product (kernels::pointwise::flags): plain, transposed A, an
        // input gradient, a Gram matrix, a symmetric one.
        "BCAST_FLAGS" => &[0.0, 8.0, 40.0, 16.0, 144.0],
        "BCAST_COL_VECS" => &[1.0, 2.0],
        "DW_K" | "CONV_K" => &[3.0, 5.0],
        "DW_S" | "CONV_S" => &[1.0, 2.0],
        "DW_PAD" | "CONV_PAD" => &[0.0, 1.0, 2.0],
        "DW_LINES" => &[1.0, 2.0],
        _ => panic!("no test values for the pipeline constant {name}"),
    }
}

/// Every set of pipeline-constant values the engine compiles `shader`'s kernels with.
fn override_sets(shader: Shader) -> Vec<Vec<(&'static str, f64)>> {
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
    sets
}

#[test]
fn every_shader_parses_validates_and_translates_to_every_backend() {
    for shader in Shader::ALL {
        let (module, info) = module(shader);
        // Each set of pipeline constants is its own pipeline (a product's tile shape, a row
        // kernel's size, stride and padding): translate every combination the engine compiles.
        for set in override_sets(shader) {
            translate_all(&module, &info, &set, true).unwrap_or_else(|e| panic!("{} {set:?}: {e}", shader.file_name()));
        }
    }
}

#[test]
fn every_f16_kernel_validates_and_translates_to_spirv_msl_and_hlsl_but_not_glsl() {
    let mut half_modules = 0;
    for shader in Shader::ALL {
        // One module per distinct set of storage types the f16 kernels of the shader use.
        let mut sources: Vec<String> = kernels::all_specs()
            .iter()
            .filter(|s| s.shader == shader)
            .map(|spec| shader.source(Some(spec), Precision::F16))
            .filter(|source| source.starts_with("enable f16;"))
            .collect();
        sources.sort();
        sources.dedup();
        for source in sources {
            half_modules += 1;
            let (module, info) = parse_and_validate(&source).unwrap_or_else(|e| panic!("{}: {e}", shader.file_name()));
            for set in override_sets(shader) {
                let refused = translate_all(&module, &info, &set, false)
                    .unwrap_or_else(|e| panic!("{} (f16) {set:?}: {e}", shader.file_name()));
                // The entry points that touch f16 bindings cannot be GLSL (naga: no 16-bit float).
                assert!(refused > 0, "{} (f16) {set:?}: GLSL accepted 16-bit floats", shader.file_name());
            }
        }
    }
    // conv, depthwise, pointwise (products and Gram products), squeeze-excite, losses.
    assert!(half_modules >= 6, "only {half_modules} f16 modules");
}

#[test]
fn storage_types_make_f16_only_the_bindings_that_hold_activations() {
    let content = kernels::losses::CONTENT;
    let style = kernels::losses::STYLE;
    let half = Shader::Losses.source(Some(&content), Precision::F16);
    assert!(half.starts_with("enable f16;\n"), "{half}");
    assert!(half.contains("alias value_t = f16;") && half.contains("alias grad_t = f16;"));
    // The style loss reads the f32 Gram partials through the same bindings.
    let style_types = kernels::storage_types(Shader::Losses, Some(&style), Precision::F16);
    assert!(!style_types.contains("f16"), "{style_types}");
    // In f32 every alias is f32 and no extension is enabled.
    let full = kernels::storage_types(Shader::Losses, Some(&content), Precision::F32);
    assert!(!full.contains("f16") && full.contains("alias value_t = f32;"), "{full}");
    // Shaders without activations declare no alias.
    assert_eq!(kernels::storage_types(Shader::Optim, Some(&kernels::optimizers::ADAM), Precision::F16), "");
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
        for precision in [Precision::F32, Precision::F16] {
            let (module, info) = kernel_module(spec.shader, Some(&spec), precision);
            let mut used = entry_point_globals(&module, &info, spec.entry)
                .unwrap_or_else(|| panic!("{}: no entry point {}", spec.shader.file_name(), spec.entry));
            used.sort_by_key(|b| b.binding);
            let want = expected_bindings(&spec.params, spec.storage, &uniform_name(&used), precision);
            assert_eq!(used, want, "{}: bindings of {} ({precision:?})", spec.shader.file_name(), spec.entry);
        }
    }
    let (module, info) = module(Shader::Present);
    let mut used = entry_point_globals(&module, &info, present::FRAGMENT_ENTRY).expect("present fragment entry point");
    used.sort_by_key(|b| b.binding);
    let want = expected_bindings(&present::VIEW, &[present::IMAGE], &uniform_name(&used), Precision::F32);
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
                specs.iter().any(|s| shader.includes(s.shader) && s.entry == ep.name),
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
