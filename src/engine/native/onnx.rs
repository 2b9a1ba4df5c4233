//! Reading ONNX protobuf pieces for the importer: constant tensors and node attributes.
//!
//! Consumes `tract_onnx::pb` messages (initialisers, `Constant` nodes, attributes);
//! produces [`Const`] tensors with their dims and typed data, and attribute values.
//! Lengths are checked against the declared dims before anything is kept.

use std::sync::Arc;

use tract_onnx::pb;

use super::NativeError;

/// Typed data of a constant tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// float32.
    F32(Vec<f32>),
    /// int8.
    I8(Vec<i8>),
    /// uint8.
    U8(Vec<u8>),
    /// int32.
    I32(Vec<i32>),
    /// int64.
    I64(Vec<i64>),
}

/// A constant tensor: dims (ONNX order) and data.
#[derive(Debug, Clone, PartialEq)]
pub struct Const {
    /// ONNX dims.
    pub dims: Vec<usize>,
    /// The values, row-major.
    pub data: Data,
}

impl Const {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.data {
            Data::F32(v) => v.len(),
            Data::I8(v) => v.len(),
            Data::U8(v) => v.len(),
            Data::I32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }

    /// Whether the tensor is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values as f32 (integers converted).
    pub fn f32s(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.clone(),
            Data::I8(v) => v.iter().map(|&x| x as f32).collect(),
            Data::U8(v) => v.iter().map(|&x| x as f32).collect(),
            Data::I32(v) => v.iter().map(|&x| x as f32).collect(),
            Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The values as i64 (floats truncated).
    pub fn i64s(&self) -> Vec<i64> {
        match &self.data {
            Data::F32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I8(v) => v.iter().map(|&x| x as i64).collect(),
            Data::U8(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I64(v) => v.clone(),
        }
    }

    /// A 1-D i64 constant.
    pub fn ints(v: Vec<i64>) -> Const {
        Const {
            dims: vec![v.len()],
            data: Data::I64(v),
        }
    }

    /// Code range of a zero-point tensor's type: `(lo, hi)`.
    pub fn code_range(&self) -> (i32, i32) {
        match self.data {
            Data::U8(_) => (0, 255),
            _ => (-128, 127),
        }
    }
}

/// A shared constant.
pub type ConstRef = Arc<Const>;

fn le_chunks<const N: usize>(raw: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    raw.chunks_exact(N)
        .map(|c| <[u8; N]>::try_from(c).unwrap_or([0; N]))
}

/// Decodes an initialiser or a `Constant` value.
pub fn tensor(t: &pb::TensorProto, node: &str) -> Result<Const, NativeError> {
    use pb::tensor_proto::DataType as Dt;
    let bad = |what: String| NativeError::Invalid {
        node: node.to_string(),
        what,
    };
    let mut n: usize = 1;
    let mut dims = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        let d = usize::try_from(d).map_err(|_| bad(format!("tensor '{}' dim {d}", t.name)))?;
        n = n
            .checked_mul(d)
            .ok_or_else(|| bad(format!("tensor '{}' is too large", t.name)))?;
        dims.push(d);
    }
    if t.data_location == Some(pb::tensor_proto::DataLocation::External as i32) {
        return Err(bad(format!("tensor '{}' has external data", t.name)));
    }
    let raw = &t.raw_data;
    let use_raw = !raw.is_empty();
    let check = |got: usize| {
        if got == n {
            Ok(())
        } else {
            Err(bad(format!(
                "tensor '{}' holds {got} values for dims {dims:?}",
                t.name
            )))
        }
    };
    let dt = Dt::try_from(t.data_type).unwrap_or(Dt::Undefined);
    let data = match dt {
        Dt::Float => {
            let v: Vec<f32> = if use_raw {
                check(raw.len() / 4)?;
                le_chunks::<4>(raw).map(f32::from_le_bytes).collect()
            } else {
                t.float_data.clone()
            };
            check(v.len())?;
            Data::F32(v)
        }
        Dt::Int8 => {
            let v: Vec<i8> = if use_raw {
                raw.iter().map(|&b| b as i8).collect()
            } else {
                t.int32_data.iter().map(|&x| x as i8).collect()
            };
            check(v.len())?;
            Data::I8(v)
        }
        Dt::Uint8 => {
            let v: Vec<u8> = if use_raw {
                raw.clone()
            } else {
                t.int32_data.iter().map(|&x| x as u8).collect()
            };
            check(v.len())?;
            Data::U8(v)
        }
        Dt::Int32 => {
            let v: Vec<i32> = if use_raw {
                check(raw.len() / 4)?;
                le_chunks::<4>(raw).map(i32::from_le_bytes).collect()
            } else {
                t.int32_data.clone()
            };
            check(v.len())?;
            Data::I32(v)
        }
        Dt::Int64 => {
            let v: Vec<i64> = if use_raw {
                check(raw.len() / 8)?;
                le_chunks::<8>(raw).map(i64::from_le_bytes).collect()
            } else {
                t.int64_data.clone()
            };
            check(v.len())?;
            Data::I64(v)
        }
        other => return Err(bad(format!("tensor '{}' has data type {other:?}", t.name))),
    };
    Ok(Const { dims, data })
}

/// The attribute `name` of `n`.
pub fn attr<'a>(n: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}

/// An integer attribute with a default.
pub fn attr_i(n: &pb::NodeProto, name: &str, default: i64) -> i64 {
    attr(n, name).map_or(default, |a| a.i)
}

/// A float attribute with a default.
pub fn attr_f(n: &pb::NodeProto, name: &str, default: f32) -> f32 {
    attr(n, name).map_or(default, |a| a.f)
}

/// An integer-list attribute (empty when absent).
pub fn attr_ints(n: &pb::NodeProto, name: &str) -> Vec<i64> {
    attr(n, name).map_or(Vec::new(), |a| a.ints.clone())
}

/// A string attribute (empty when absent).
pub fn attr_s(n: &pb::NodeProto, name: &str) -> String {
    attr(n, name).map_or(String::new(), |a| {
        String::from_utf8_lossy(&a.s).into_owned()
    })
}
