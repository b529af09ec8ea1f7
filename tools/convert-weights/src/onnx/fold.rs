//! Constant folding: the nodes exporters write to compute shapes and constants (`Shape`,
//! `Gather`, `Unsqueeze`, `Squeeze`, `Concat`, `Cast`, `Identity`, `ConstantOfShape`,
//! integer `Add`/`Sub`/`Mul`/`Div`, `Reshape` of a constant) are evaluated at conversion
//! when their inputs are constants, or for `Shape`, the current activation, whose shape
//! is known but for the batch. Their outputs become constants for the nodes after them
//! (a `Reshape`'s target, a `Gemm`'s weight).
//!
//! An unknown batch size is carried as a marked element (value 0): it may be selected,
//! moved and concatenated, and reaches a `Reshape` as 0, "copy the batch"; arithmetic on
//! it, or any other use, is refused.

use std::collections::HashMap;

use super::attrs::{input, Node};
use super::graph::Importer;
use crate::error::{ConvertError, Result};
use crate::onnx_proto::{data_type, TensorProto};
use alexnet::plan::Shape;

/// A folded value: dims, and int64 values (with batch marks) or f32 values.
#[derive(Clone, Debug)]
enum Value {
    Int { dims: Vec<u64>, v: Vec<i64>, batch: Vec<bool> },
    Float { dims: Vec<u64>, v: Vec<f32> },
}

/// Ops folded when their inputs allow it.
pub(super) const FOLDABLE: [&str; 13] = [
    "Shape",
    "Gather",
    "Unsqueeze",
    "Squeeze",
    "Concat",
    "Cast",
    "Identity",
    "ConstantOfShape",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Reshape",
];

/// Batch marks of folded int64 constants, by name (absent: no element is the batch).
pub(super) type Marks = HashMap<String, Vec<bool>>;

impl Importer<'_> {
    /// Whether `node` can be folded now: a foldable op whose inputs are all constants
    /// (`Shape` may read the current activation).
    pub(super) fn foldable(&self, node: &crate::onnx_proto::NodeProto) -> bool {
        let op = node.op_type.as_str();
        FOLDABLE.contains(&op)
            && node.input.iter().enumerate().all(|(i, inp)| {
                inp.is_empty() || self.constant(inp).is_some() || (op == "Shape" && i == 0 && *inp == self.cur)
            })
            // A Shape of the activation, or any op on constants only.
            && (op == "Shape" || node.input.iter().any(|i| !i.is_empty()))
    }

    fn value(&self, name: &str, ctx: &str) -> Result<Value> {
        let t = self
            .constant(name)
            .ok_or_else(|| ConvertError::MissingTensor { name: name.into(), context: ctx.into() })?;
        if t.data_type == data_type::FLOAT {
            let (dims, v) = self.decode_f32(t, name)?;
            Ok(Value::Float { dims, v })
        } else {
            let (dims, v) = self.decode_i64(t, name)?;
            let batch = self.marks.get(name).cloned().unwrap_or_else(|| vec![false; v.len()]);
            Ok(Value::Int { dims, v, batch })
        }
    }

    fn store(&mut self, name: &str, value: Value) {
        let t = match value {
            Value::Int { dims, v, batch } => {
                if batch.iter().any(|&b| b) {
                    self.marks.insert(name.into(), batch);
                }
                TensorProto {
                    dims: dims.iter().map(|&d| d as i64).collect(),
                    data_type: data_type::INT64,
                    int64_data: v,
                    ..Default::default()
                }
            }
            Value::Float { dims, v } => TensorProto {
                dims: dims.iter().map(|&d| d as i64).collect(),
                data_type: data_type::FLOAT,
                float_data: v,
                ..Default::default()
            },
        };
        self.constants.insert(name.into(), t);
    }

    /// Evaluate a foldable node (see [`Importer::foldable`]) into a constant.
    pub(super) fn fold(&mut self, n: &Node) -> Result<()> {
        let op = n.node.op_type.as_str();
        let out = n.node.output.first().filter(|o| !o.is_empty()).ok_or_else(|| n.unsupported("no output".into()))?;
        let arg = |i: usize| input(n.node, i).ok_or_else(|| n.unsupported(format!("input {i} missing")));
        let unmarked = |v: &Value| match v {
            Value::Int { batch, .. } if batch.iter().any(|&b| b) => {
                Err(n
                    .unsupported("uses the model's unknown batch size in arithmetic; export with a fixed batch".into()))
            }
            _ => Ok(()),
        };
        let value = match op {
            "Shape" => {
                let a = n.attrs(&["start", "end"])?;
                let (dims, batch): (Vec<i64>, Vec<bool>) = if input(n.node, 0) == Some(self.cur.as_str()) {
                    let b = self.batch.map_or(0, |b| b as i64);
                    let mut d = vec![b];
                    match self.net.shape() {
                        Shape::Spatial { c, h, w } => d.extend([c as i64, h as i64, w as i64]),
                        Shape::Flat(f) => d.push(f as i64),
                    }
                    let marks = (0..d.len()).map(|i| i == 0 && self.batch.is_none()).collect();
                    (d, marks)
                } else {
                    let v = self.value(arg(0)?, n.ctx)?;
                    let d = match v {
                        Value::Int { dims, .. } | Value::Float { dims, .. } => dims,
                    };
                    let d: Vec<i64> = d.iter().map(|&x| x as i64).collect();
                    let m = vec![false; d.len()];
                    (d, m)
                };
                let r = dims.len() as i64;
                let clamp = |x: i64| if x < 0 { (x + r).clamp(0, r) } else { x.min(r) } as usize;
                let (s, e) = (clamp(a.int("start", Some(0))?), clamp(a.int("end", Some(r))?));
                let (s, e) = (s.min(e), e);
                Value::Int { dims: vec![(e - s) as u64], v: dims[s..e].to_vec(), batch: batch[s..e].to_vec() }
            }
            "Identity" => self.value(arg(0)?, n.ctx)?,
            "Cast" => {
                let a = n.attrs(&["to", "saturate"])?;
                let to = a.int("to", None)?;
                match (self.value(arg(0)?, n.ctx)?, to) {
                    (Value::Int { dims, v, batch }, 7) => Value::Int { dims, v, batch },
                    (Value::Int { dims, v, batch }, 1) => {
                        unmarked(&Value::Int { dims: dims.clone(), v: v.clone(), batch })?;
                        Value::Float { dims, v: v.iter().map(|&x| x as f32).collect() }
                    }
                    (Value::Float { dims, v }, 1) => Value::Float { dims, v },
                    (Value::Float { dims, v }, 7) => {
                        let batch = vec![false; v.len()];
                        Value::Int { dims, v: v.iter().map(|&x| x as i64).collect(), batch }
                    }
                    (_, to) => return Err(n.unsupported(format!("Cast to type {to} (float32 and int64 are folded)"))),
                }
            }
            "Gather" => {
                let a = n.attrs(&["axis"])?;
                if a.int("axis", Some(0))? != 0 {
                    return Err(a.bad("axis", "only axis 0 of a 1-D constant is folded".into()));
                }
                let Value::Int { dims, v, batch } = self.value(arg(0)?, n.ctx)? else {
                    return Err(n.unsupported("Gather of float constants is not folded".into()));
                };
                let Value::Int { dims: idims, v: idx, .. } = self.value(arg(1)?, n.ctx)? else {
                    return Err(n.unsupported("Gather indices must be integers".into()));
                };
                if dims.len() != 1 {
                    return Err(n.unsupported("only a 1-D constant is gathered from".into()));
                }
                let len = v.len() as i64;
                let pick = |i: i64| -> Result<usize> {
                    let j = if i < 0 { i + len } else { i };
                    usize::try_from(j)
                        .ok()
                        .filter(|&j| (j as i64) < len)
                        .ok_or_else(|| n.unsupported(format!("index {i} out of range")))
                };
                let picked: Vec<usize> = idx.iter().map(|&i| pick(i)).collect::<Result<_>>()?;
                Value::Int {
                    dims: idims,
                    v: picked.iter().map(|&j| v[j]).collect(),
                    batch: picked.iter().map(|&j| batch[j]).collect(),
                }
            }
            "Unsqueeze" | "Squeeze" => {
                let a = n.attrs(&["axes"])?;
                let v = self.value(arg(0)?, n.ctx)?;
                let axes: Vec<i64> = match (input(n.node, 1), a.ints("axes")?) {
                    (Some(name), None) => self.constant_i64(name, n.ctx)?.1,
                    (None, Some(x)) => x.to_vec(),
                    (None, None) if op == "Squeeze" => Vec::new(),
                    _ => return Err(a.bad("axes", "need exactly one of the axes input and attribute".into())),
                };
                let dims = match &v {
                    Value::Int { dims, .. } | Value::Float { dims, .. } => dims.clone(),
                };
                let dims = if op == "Unsqueeze" {
                    let r = (dims.len() + axes.len()) as i64;
                    let mut at: Vec<usize> = axes.iter().map(|&x| (if x < 0 { x + r } else { x }) as usize).collect();
                    at.sort_unstable();
                    let mut d = dims.clone();
                    for &i in &at {
                        if i > d.len() {
                            return Err(n.unsupported(format!("Unsqueeze axis {i} out of range")));
                        }
                        d.insert(i, 1);
                    }
                    d
                } else {
                    let r = dims.len() as i64;
                    let at: Vec<usize> = axes.iter().map(|&x| (if x < 0 { x + r } else { x }) as usize).collect();
                    dims.iter()
                        .enumerate()
                        .filter(|(i, &d)| !(d == 1 && (at.is_empty() || at.contains(i))))
                        .map(|(_, &d)| d)
                        .collect()
                };
                match v {
                    Value::Int { v, batch, .. } => Value::Int { dims, v, batch },
                    Value::Float { v, .. } => Value::Float { dims, v },
                }
            }
            "Concat" => {
                let a = n.attrs(&["axis"])?;
                if !matches!(a.int("axis", None)?, 0 | -1) {
                    return Err(a.bad("axis", "only 1-D constants are concatenated".into()));
                }
                let (mut v, mut batch) = (Vec::new(), Vec::new());
                for inp in n.node.input.iter().filter(|i| !i.is_empty()) {
                    match self.value(inp, n.ctx)? {
                        Value::Int { dims, v: x, batch: b } if dims.len() == 1 => {
                            v.extend(x);
                            batch.extend(b);
                        }
                        _ => return Err(n.unsupported("only 1-D int64 constants are concatenated".into())),
                    }
                }
                Value::Int { dims: vec![v.len() as u64], v, batch }
            }
            "ConstantOfShape" => {
                let a = n.attrs(&["value"])?;
                let Value::Int { v: shape, batch, .. } = self.value(arg(0)?, n.ctx)? else {
                    return Err(n.unsupported("the shape must be integers".into()));
                };
                if batch.iter().any(|&b| b) {
                    return Err(n.unsupported("a constant shaped by the unknown batch size".into()));
                }
                let dims: Vec<u64> = shape
                    .iter()
                    .map(|&d| u64::try_from(d).map_err(|_| n.unsupported(format!("dimension {d}"))))
                    .collect::<Result<_>>()?;
                let count = dims
                    .iter()
                    .try_fold(1u64, |p, &d| p.checked_mul(d))
                    .filter(|&c| c <= 1 << 24)
                    .ok_or_else(|| n.unsupported("more than 2^24 values".into()))? as usize;
                match a.tensor("value")? {
                    Some(t) if t.data_type == data_type::INT64 => {
                        let (_, x) = self.decode_i64(t, "value")?;
                        Value::Int { dims, v: vec![x.first().copied().unwrap_or(0); count], batch: vec![false; count] }
                    }
                    Some(t) => {
                        let (_, x) = self.decode_f32(t, "value")?;
                        Value::Float { dims, v: vec![x.first().copied().unwrap_or(0.0); count] }
                    }
                    None => Value::Float { dims, v: vec![0.0; count] },
                }
            }
            "Add" | "Sub" | "Mul" | "Div" => {
                n.attrs(&[])?;
                let (x, y) = (self.value(arg(0)?, n.ctx)?, self.value(arg(1)?, n.ctx)?);
                unmarked(&x)?;
                unmarked(&y)?;
                let bcast = |a: usize, b: usize| -> Result<usize> {
                    if a == b || b == 1 || a == 1 {
                        Ok(a.max(b))
                    } else {
                        Err(n.unsupported(format!("shapes of {a} and {b} values")))
                    }
                };
                match (x, y) {
                    (Value::Int { dims, v: a, .. }, Value::Int { dims: dy, v: b, .. }) => {
                        let len = bcast(a.len(), b.len())?;
                        let at = |v: &[i64], i: usize| v[if v.len() == 1 { 0 } else { i }];
                        let v: Vec<i64> = (0..len)
                            .map(|i| {
                                let (p, q) = (at(&a, i), at(&b, i));
                                match op {
                                    "Add" => p.checked_add(q),
                                    "Sub" => p.checked_sub(q),
                                    "Mul" => p.checked_mul(q),
                                    _ => p.checked_div(q),
                                }
                                .ok_or_else(|| n.unsupported("integer overflow or division by zero".into()))
                            })
                            .collect::<Result<_>>()?;
                        let dims = if a.len() >= b.len() { dims } else { dy };
                        Value::Int { dims, batch: vec![false; v.len()], v }
                    }
                    (Value::Float { dims, v: a }, Value::Float { dims: dy, v: b }) => {
                        let len = bcast(a.len(), b.len())?;
                        let at = |v: &[f32], i: usize| v[if v.len() == 1 { 0 } else { i }];
                        let v: Vec<f32> = (0..len)
                            .map(|i| {
                                let (p, q) = (at(&a, i), at(&b, i));
                                match op {
                                    "Add" => p + q,
                                    "Sub" => p - q,
                                    "Mul" => p * q,
                                    _ => p / q,
                                }
                            })
                            .collect();
                        let dims = if a.len() >= b.len() { dims } else { dy };
                        Value::Float { dims, v }
                    }
                    _ => return Err(n.unsupported("operands of different types".into())),
                }
            }
            "Reshape" => {
                let a = n.attrs(&["allowzero"])?;
                let x = self.value(arg(0)?, n.ctx)?;
                let (_, target) = self.constant_i64(arg(1)?, n.ctx)?;
                let count = match &x {
                    Value::Int { v, .. } => v.len(),
                    Value::Float { v, .. } => v.len(),
                } as i64;
                let old = match &x {
                    Value::Int { dims, .. } | Value::Float { dims, .. } => dims.clone(),
                };
                let allowzero = a.int("allowzero", Some(0))? != 0;
                let mut dims: Vec<i64> = target
                    .iter()
                    .enumerate()
                    .map(|(i, &d)| if d == 0 && !allowzero { old.get(i).map_or(0, |&o| o as i64) } else { d })
                    .collect();
                let product = |d: &[i64]| d.iter().try_fold(1i64, |p, &x| p.checked_mul(x));
                let known = product(&dims.iter().copied().filter(|&d| d != -1).collect::<Vec<_>>()).unwrap_or(-1);
                if let Some(p) = dims.iter().position(|&d| d == -1) {
                    dims[p] = if known > 0 { count / known } else { 0 };
                }
                if dims.iter().any(|&d| d < 0) || product(&dims) != Some(count) {
                    return Err(n.unsupported(format!("Reshape of {count} values to {target:?}")));
                }
                let dims = dims.iter().map(|&d| d as u64).collect();
                match x {
                    Value::Int { v, batch, .. } => Value::Int { dims, v, batch },
                    Value::Float { v, .. } => Value::Float { dims, v },
                }
            }
            _ => return Err(n.unsupported("not foldable".into())),
        };
        self.store(out, value);
        Ok(())
    }
}
