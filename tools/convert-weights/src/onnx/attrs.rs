//! Node helpers: a node's optional inputs, its display name and error context, and typed
//! access to its attributes (unknown, repeated and mistyped ones refused).

use std::collections::HashSet;

use crate::error::{ConvertError, Result};
use crate::onnx_proto::{attribute_type, AttributeProto, NodeProto, TensorProto};

/// A non-empty input of `node` at `i` (empty strings mark omitted optional inputs).
pub(super) fn input(node: &NodeProto, i: usize) -> Option<&str> {
    node.input.get(i).map(String::as_str).filter(|s| !s.is_empty())
}

/// A node with its display name and error context.
pub(super) struct Node<'a> {
    pub(super) name: &'a str,
    pub(super) ctx: &'a str,
    pub(super) node: &'a NodeProto,
}

impl<'a> Node<'a> {
    /// Check the number of inputs (counting omitted optional ones).
    pub(super) fn arity(&self, min: usize, max: usize) -> Result<()> {
        let n = self.node.input.len();
        if n < min || n > max {
            return Err(ConvertError::BadGraph(format!("{} has {n} inputs, expected {min}..={max}", self.ctx)));
        }
        Ok(())
    }

    /// The node's attributes, refusing unknown and repeated ones.
    pub(super) fn attrs(&self, known: &[&str]) -> Result<Attrs<'a>> {
        let mut seen = HashSet::new();
        for a in &self.node.attribute {
            if !known.contains(&a.name.as_str()) {
                return Err(ConvertError::BadAttribute {
                    node: self.name.into(),
                    attribute: a.name.clone(),
                    reason: format!("not supported on {}", self.node.op_type),
                });
            }
            if !seen.insert(a.name.as_str()) {
                return Err(ConvertError::BadAttribute {
                    node: self.name.into(),
                    attribute: a.name.clone(),
                    reason: "given twice".into(),
                });
            }
        }
        Ok(Attrs { node: self.name.to_string(), list: &self.node.attribute })
    }

    pub(super) fn unsupported(&self, reason: String) -> ConvertError {
        ConvertError::UnsupportedUse { op: self.node.op_type.clone(), node: self.name.into(), reason }
    }
}

/// Typed access to a node's attributes.
pub(super) struct Attrs<'a> {
    node: String,
    list: &'a [AttributeProto],
}

impl<'a> Attrs<'a> {
    pub(super) fn bad(&self, attribute: &str, reason: String) -> ConvertError {
        ConvertError::BadAttribute { node: self.node.clone(), attribute: attribute.into(), reason }
    }

    /// The attribute `name` if present, after checking its declared type.
    pub(super) fn get(&self, name: &str, ty: i32) -> Result<Option<&'a AttributeProto>> {
        match self.list.iter().find(|a| a.name == name) {
            Some(a) if a.r#type == ty || a.r#type == attribute_type::UNDEFINED => Ok(Some(a)),
            Some(a) => Err(self.bad(name, format!("has attribute type {}, expected {ty}", a.r#type))),
            None => Ok(None),
        }
    }

    /// An INT attribute; `default: None` makes it required.
    pub(super) fn int(&self, name: &str, default: Option<i64>) -> Result<i64> {
        match (self.get(name, attribute_type::INT)?, default) {
            (Some(a), _) => Ok(a.i),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(self.bad(name, "is required".into())),
        }
    }

    pub(super) fn float(&self, name: &str, default: f32) -> Result<f32> {
        Ok(self.get(name, attribute_type::FLOAT)?.map_or(default, |a| a.f))
    }

    pub(super) fn ints(&self, name: &str) -> Result<Option<&'a [i64]>> {
        Ok(self.get(name, attribute_type::INTS)?.map(|a| a.ints.as_slice()))
    }

    pub(super) fn floats(&self, name: &str) -> Result<Option<&'a [f32]>> {
        Ok(self.get(name, attribute_type::FLOATS)?.map(|a| a.floats.as_slice()))
    }

    pub(super) fn string(&self, name: &str) -> Result<Option<&'a str>> {
        match self.get(name, attribute_type::STRING)? {
            Some(a) => std::str::from_utf8(&a.s).map(Some).map_err(|_| self.bad(name, "is not UTF-8".into())),
            None => Ok(None),
        }
    }

    pub(super) fn tensor(&self, name: &str) -> Result<Option<&'a TensorProto>> {
        Ok(self.get(name, attribute_type::TENSOR)?.and_then(|a| a.t.as_ref()))
    }

    /// A 2-element INTS attribute of positive values fitting `u32`, default `[1, 1]`.
    pub(super) fn pair(&self, name: &str) -> Result<[u32; 2]> {
        match self.ints(name)? {
            None => Ok([1, 1]),
            Some(v) => self.positive_pair(name, v),
        }
    }

    pub(super) fn pair_required(&self, name: &str) -> Result<[u32; 2]> {
        let v = self.ints(name)?.ok_or_else(|| self.bad(name, "is required".into()))?;
        self.positive_pair(name, v)
    }

    pub(super) fn positive_pair(&self, name: &str, v: &[i64]) -> Result<[u32; 2]> {
        let p = |x: i64| u32::try_from(x).ok().filter(|&x| x > 0);
        match v {
            [a, b] => match (p(*a), p(*b)) {
                (Some(a), Some(b)) => Ok([a, b]),
                _ => Err(self.bad(name, format!("{v:?}: values must be positive"))),
            },
            _ => Err(self.bad(name, format!("{v:?}: only 2-D windows are supported"))),
        }
    }
}
