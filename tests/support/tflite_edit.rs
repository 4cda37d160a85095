//! Where the fields of a TFLite file's tensors lie in its bytes, so tests can edit them in place
//! (a scale, a dimension of a shape, a constant's data) and check how the loader reacts.
#![allow(dead_code)]

use std::ops::Range;

use neural_style::weights::tflite_schema::tflite as fb;

/// Byte ranges of one tensor's fields inside the file.
pub struct TensorFields {
    /// The tensor's name.
    pub name: String,
    /// Its type.
    pub dtype: fb::TensorType,
    /// The shape vector (i32 little-endian per dimension).
    pub shape: Range<usize>,
    /// The quantization scales (f32 little-endian each), when quantized.
    pub scale: Option<Range<usize>>,
    /// The constant data, when the tensor has a buffer.
    pub data: Option<Range<usize>>,
}

fn range_in(file: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - file.as_ptr() as usize;
    start..start + part.len()
}

/// Every tensor of the first subgraph with the byte ranges of its fields.
pub fn tensor_fields(file: &[u8]) -> Vec<TensorFields> {
    let model = fb::root_as_model_with_opts(
        &flatbuffers::VerifierOptions { max_tables: 10_000_000, ..Default::default() },
        file,
    )
    .expect("a valid TFLite file");
    let buffers = model.buffers().unwrap();
    let graph = model.subgraphs().unwrap().get(0);
    graph
        .tensors()
        .unwrap()
        .iter()
        .map(|t| TensorFields {
            name: t.name().unwrap_or("").to_string(),
            dtype: t.type_(),
            shape: range_in(file, t.shape().unwrap().bytes()),
            scale: t
                .quantization()
                .and_then(|q| q.scale())
                .filter(|s| !s.is_empty())
                .map(|s| range_in(file, s.bytes())),
            data: buffers.get(t.buffer() as usize).data().filter(|d| !d.is_empty()).map(|d| range_in(file, d.bytes())),
        })
        .collect()
}

/// The first constant tensor whose name contains `needle` (and has a scale when `quantized`).
pub fn find<'a>(fields: &'a [TensorFields], needle: &str, quantized: bool) -> &'a TensorFields {
    fields
        .iter()
        .find(|t| t.name.contains(needle) && t.data.is_some() && (!quantized || t.scale.is_some()))
        .unwrap_or_else(|| panic!("no constant tensor named like {needle:?}"))
}

/// Overwrites the f32 at `at` (a byte offset).
pub fn put_f32(file: &mut [u8], at: usize, value: f32) {
    file[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// Reads the f32 at `at`.
pub fn get_f32(file: &[u8], at: usize) -> f32 {
    f32::from_le_bytes(file[at..at + 4].try_into().unwrap())
}

/// Overwrites the i32 at `at`.
pub fn put_i32(file: &mut [u8], at: usize, value: i32) {
    file[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// A tensor's shape as stored.
pub fn shape(file: &[u8], t: &TensorFields) -> Vec<i32> {
    file[t.shape.clone()].chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect()
}

/// The stem convolution's weights: the constant of shape [16, 3, 3, 3].
pub fn stem_weights<'a>(file: &[u8], fields: &'a [TensorFields]) -> &'a TensorFields {
    fields.iter().find(|t| t.data.is_some() && shape(file, t) == [16, 3, 3, 3]).expect("a [16, 3, 3, 3] constant")
}
