//! WGSL contract checks with naga: parse and validate a shader, translate it to every backend
//! wgpu can use (SPIR-V, MSL, HLSL, GLSL ES), and read back what the Rust side must agree on:
//! the resources each entry point uses, uniform struct layouts and workgroup sizes.

use std::error::Error;

use naga::back::{self, PipelineConstants};
use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};
use naga::{AddressSpace, ArraySize, Module, ScalarKind, StorageAccess, TypeInner};

/// How an entry point sees a bound resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    /// `var<uniform>`.
    Uniform,
    /// `var<storage, read>`.
    StorageRead,
    /// `var<storage, read_write>`.
    StorageReadWrite,
    /// A texture or a sampler.
    Handle,
}

/// A resource global (`@group(g) @binding(b) var ...`) that an entry point uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalBinding {
    /// Variable name.
    pub name: String,
    /// Bind group.
    pub group: u32,
    /// Binding number in the group.
    pub binding: u32,
    /// Address space and access.
    pub space: Space,
    /// Type as [`type_name`] spells it (a uniform's is its struct name).
    pub ty: String,
}

/// A struct's layout as naga computes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StructLayout {
    /// Size in bytes (the struct's span).
    pub size: u32,
    /// Members in declaration order: name, byte offset and type as [`type_name`] spells it.
    pub members: Vec<(String, u32, String)>,
}

/// Parses `src` as WGSL and validates it with every check on; errors come as naga's annotated
/// source excerpt.
pub fn parse_and_validate(src: &str) -> Result<(Module, ModuleInfo), String> {
    let module = naga::front::wgsl::parse_str(src).map_err(|e| e.emit_to_string(src))?;
    // Subgroup operations as wgpu enables them with `Features::SUBGROUP` (the broadcast products).
    let info = Validator::new(
        ValidationFlags::all(),
        Capabilities::default() | Capabilities::SHADER_FLOAT16 | Capabilities::SUBGROUP,
    )
    .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
    .subgroup_operations(naga::valid::SubgroupOperationSet::all())
    .validate(&module)
    .map_err(|e| e.emit_to_string(src))?;
    Ok((module, info))
}

/// Translates every entry point to SPIR-V, MSL 2.0, HLSL shader model 5.1 and GLSL ES 3.10, as
/// wgpu does per pipeline: the pipeline-overridable constants are first replaced by
/// `overrides` (name, value) or their defaults, for that entry point alone. Bindings are the
/// WGSL ones (no binding maps). The error names the backend and the entry point. Without `glsl`
/// (a module with 16-bit floats) GLSL failures are counted, not errors, and HLSL is shader model
/// 6.2 (the first with 16-bit types, which wgpu's DX12 backend requires for `SHADER_F16`).
/// Returns the entry points GLSL refused.
pub fn translate_all(
    module: &Module,
    info: &ModuleInfo,
    overrides: &[(&str, f64)],
    glsl: bool,
) -> Result<usize, String> {
    let mut glsl_refused = 0;
    let constants: PipelineConstants = overrides.iter().map(|&(name, value)| (name.to_string(), value)).collect();
    for ep in &module.entry_points {
        let (stage, name) = (ep.stage, ep.name.as_str());
        let fail = |backend: &str, e: &dyn Error| format!("{backend} of entry point `{name}`: {}", chain(e));
        let (module, info) = back::pipeline_constants::process_overrides(module, info, Some((stage, name)), &constants)
            .map_err(|e| fail("override processing", &e))?;
        let entry_point = Some((stage, name.to_string()));

        let spv_pipeline = back::spv::PipelineOptions { shader_stage: stage, entry_point: name.to_string() };
        back::spv::write_vec(&module, &info, &back::spv::Options::default(), Some(&spv_pipeline))
            .map_err(|e| fail("SPIR-V", &e))?;

        let msl_options = back::msl::Options { lang_version: (2, 0), ..Default::default() };
        let msl_pipeline = back::msl::PipelineOptions { entry_point: entry_point.clone(), ..Default::default() };
        back::msl::write_string(&module, &info, &msl_options, &msl_pipeline).map_err(|e| fail("MSL", &e))?;

        let shader_model = if glsl { back::hlsl::ShaderModel::V5_1 } else { back::hlsl::ShaderModel::V6_2 };
        let hlsl_options = back::hlsl::Options { shader_model, ..Default::default() };
        let hlsl_pipeline = back::hlsl::PipelineOptions { entry_point };
        let mut hlsl = String::new();
        back::hlsl::Writer::new(&mut hlsl, &hlsl_options, &hlsl_pipeline)
            .write(&module, &info, None)
            .map_err(|e| fail("HLSL", &e))?;

        let glsl_options = back::glsl::Options {
            version: back::glsl::Version::Embedded { version: 310, is_webgl: false },
            ..Default::default()
        };
        let glsl_pipeline =
            back::glsl::PipelineOptions { shader_stage: stage, entry_point: name.to_string(), multiview: None };
        let mut out = String::new();
        let written =
            back::glsl::Writer::new(&mut out, &module, &info, &glsl_options, &glsl_pipeline, Default::default())
                .and_then(|mut writer| writer.write().map(|_| ()));
        match (glsl, written) {
            (true, written) => written.map_err(|e| fail("GLSL ES 3.10", &e))?,
            (false, written) => glsl_refused += usize::from(written.is_err()),
        }
    }
    Ok(glsl_refused)
}

/// The resource globals that entry point `entry` uses (reads, writes or queries), in declaration
/// order; `None` if there is no such entry point.
pub fn entry_point_globals(module: &Module, info: &ModuleInfo, entry: &str) -> Option<Vec<GlobalBinding>> {
    let index = module.entry_points.iter().position(|ep| ep.name == entry)?;
    let uses = info.get_entry_point(index);
    let globals = module.global_variables.iter().filter(|&(handle, _)| !uses[handle].is_empty());
    let bound = globals.filter_map(|(_, var)| {
        let space = match var.space {
            AddressSpace::Uniform => Space::Uniform,
            AddressSpace::Storage { access } if access.contains(StorageAccess::STORE) => Space::StorageReadWrite,
            AddressSpace::Storage { .. } => Space::StorageRead,
            AddressSpace::Handle => Space::Handle,
            _ => return None,
        };
        let binding = var.binding.as_ref()?;
        Some(GlobalBinding {
            name: var.name.clone().unwrap_or_default(),
            group: binding.group,
            binding: binding.binding,
            space,
            ty: type_name(module, var.ty),
        })
    });
    Some(bound.collect())
}

/// The layout of the struct named `name`, if the module declares one.
pub fn struct_layout(module: &Module, name: &str) -> Option<StructLayout> {
    module.types.iter().find_map(|(_, ty)| match &ty.inner {
        TypeInner::Struct { members, span } if ty.name.as_deref() == Some(name) => Some(StructLayout {
            size: *span,
            members: members
                .iter()
                .map(|m| (m.name.clone().unwrap_or_default(), m.offset, type_name(module, m.ty)))
                .collect(),
        }),
        _ => None,
    })
}

/// Bytes of workgroup memory that entry point `entry` uses, or `None` if there is no such entry
/// point.
pub fn workgroup_memory(module: &Module, info: &ModuleInfo, entry: &str) -> Option<u32> {
    let index = module.entry_points.iter().position(|ep| ep.name == entry)?;
    let uses = info.get_entry_point(index);
    let shared = module
        .global_variables
        .iter()
        .filter(|&(handle, var)| var.space == AddressSpace::WorkGroup && !uses[handle].is_empty());
    Some(shared.map(|(_, var)| module.types[var.ty].inner.size(module.to_ctx())).sum())
}

/// The workgroup size of entry point `entry` (constant expressions evaluated; for a size set by
/// an `override`, pass the module that `process_overrides` returns), or `None` if there is no
/// such entry point.
pub fn workgroup_size(module: &Module, entry: &str) -> Option<[u32; 3]> {
    module.entry_points.iter().find(|ep| ep.name == entry).map(|ep| ep.workgroup_size)
}

/// A type spelled as the matching Rust type is by `stringify!`: `u32`, `[f32; 4]` for
/// `vec4<f32>`, `[[f32; 4]; 4]` for `mat4x4<f32>`, `[u32; 3]` for `array<u32, 3>`, `[f32]` for a
/// runtime-sized array; a struct by its name, an `override`-sized array with the override's name.
pub fn type_name(module: &Module, ty: naga::Handle<naga::Type>) -> String {
    let scalar = |s: naga::Scalar| {
        let prefix = match s.kind {
            ScalarKind::Sint => "i",
            ScalarKind::Uint => "u",
            ScalarKind::Float => "f",
            ScalarKind::Bool => return "bool".to_string(),
            ScalarKind::AbstractInt | ScalarKind::AbstractFloat => return format!("{:?}", s.kind),
        };
        format!("{prefix}{}", u32::from(s.width) * 8)
    };
    let ty = &module.types[ty];
    match ty.inner {
        TypeInner::Scalar(s) => scalar(s),
        TypeInner::Vector { size, scalar: s } => format!("[{}; {}]", scalar(s), size as u8),
        TypeInner::Matrix { columns, rows, scalar: s } => {
            format!("[[{}; {}]; {}]", scalar(s), rows as u8, columns as u8)
        }
        TypeInner::Atomic(s) => format!("atomic<{}>", scalar(s)),
        TypeInner::Array { base, size, .. } => match size {
            ArraySize::Constant(n) => format!("[{}; {n}]", type_name(module, base)),
            ArraySize::Pending(o) => {
                format!("[{}; {}]", type_name(module, base), module.overrides[o].name.as_deref().unwrap_or("?"))
            }
            ArraySize::Dynamic => format!("[{}]", type_name(module, base)),
        },
        ref inner => ty.name.clone().unwrap_or_else(|| format!("{inner:?}")),
    }
}

/// `e` followed by each of its sources, `: `-separated.
fn chain(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}
