//! PyTorch `torch.save` files (`.pth`, `.pt`) holding a state dict: the zip format
//! (`NAME/data.pkl` plus one raw storage per `NAME/data/KEY`, torch >= 1.6) and the legacy
//! format (five pickles in a row, then the storages), read by a restricted unpickler.
//!
//! The unpickler never runs code: it is a small stack machine over the opcodes a
//! state dict's pickle uses (protocols 2 to 4), and the only globals it knows are
//! `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` (and the older
//! `_rebuild_tensor`, and `_rebuild_parameter`) and the storage types
//! `torch.{Float,Half,BFloat16,Double}Storage`; any other global is refused by name.
//! Tensors resolve to (storage, offset, size, stride), gathered into contiguous f32
//! values from the storage's little-endian bytes, every index checked against it.

use std::collections::HashMap;
use std::io::Read;

use crate::builder::Tensor;
use crate::error::{ConvertError, Result};

/// Element types of the storages a state dict may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Elem {
    F32,
    F16,
    Bf16,
    F64,
}

impl Elem {
    fn size(self) -> usize {
        match self {
            Elem::F32 => 4,
            Elem::F16 | Elem::Bf16 => 2,
            Elem::F64 => 8,
        }
    }

    fn value(self, b: &[u8]) -> f32 {
        match self {
            Elem::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            Elem::F16 => alexnet::npy::f16_to_f32(u16::from_le_bytes([b[0], b[1]])),
            Elem::Bf16 => f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16),
            Elem::F64 => f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32,
        }
    }
}

/// A tensor as the pickle describes it.
#[derive(Clone, Debug, PartialEq)]
struct TensorRef {
    key: String,
    elem: Elem,
    offset: u64,
    size: Vec<u64>,
    stride: Vec<u64>,
}

/// A value on the unpickler's stack.
#[derive(Clone, Debug, PartialEq)]
enum V {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<V>),
    List(Vec<V>),
    Dict(Vec<(V, V)>),
    Global(&'static str),
    Storage { key: String, elem: Elem },
    Tensor(TensorRef),
    Mark,
}

/// The globals a state dict's pickle may name.
const GLOBALS: [&str; 8] = [
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_parameter",
    "torch.FloatStorage",
    "torch.HalfStorage",
    "torch.BFloat16Storage",
    "torch.DoubleStorage",
];

fn bad(msg: impl Into<String>) -> ConvertError {
    ConvertError::Pickle(msg.into())
}

/// Most values on the stack and entries in the memo: far above any state dict's.
const MAX_ITEMS: usize = 1 << 20;

/// Most values the memo may copy out in all (each `BINGET` copies its value): a state
/// dict copies a few small tuples; a hostile pickle that doubles a list through the memo
/// would otherwise grow exponentially.
const MAX_COPIED: usize = 1 << 22;

/// Values in `v`, nested ones counted.
fn size(v: &V) -> usize {
    match v {
        V::Tuple(x) | V::List(x) => 1 + x.iter().map(size).sum::<usize>(),
        V::Dict(x) => 1 + x.iter().map(|(k, v)| size(k) + size(v)).sum::<usize>(),
        _ => 1,
    }
}

/// One pickle starting at `bytes[*at]`; `*at` moves past its STOP.
fn unpickle(bytes: &[u8], at: &mut usize) -> Result<V> {
    let mut stack: Vec<V> = Vec::new();
    let mut memo: HashMap<u32, V> = HashMap::new();
    let mut copied = 0usize;
    let take = |n: usize, at: &mut usize| -> Result<&[u8]> {
        let end = at.checked_add(n).filter(|&e| e <= bytes.len()).ok_or_else(|| bad("truncated pickle"))?;
        let s = &bytes[*at..end];
        *at = end;
        Ok(s)
    };
    let pop = |stack: &mut Vec<V>| stack.pop().ok_or_else(|| bad("pickle stack underflow"));
    let pop_mark = |stack: &mut Vec<V>| -> Result<Vec<V>> {
        let m = stack.iter().rposition(|v| *v == V::Mark).ok_or_else(|| bad("pickle MARK missing"))?;
        let items = stack.split_off(m + 1);
        stack.pop();
        Ok(items)
    };
    loop {
        if stack.len() > MAX_ITEMS || memo.len() > MAX_ITEMS {
            return Err(bad("pickle too large"));
        }
        let op = take(1, at)?[0];
        match op {
            0x80 => {
                let proto = take(1, at)?[0];
                if !(2..=5).contains(&proto) {
                    return Err(bad(format!("pickle protocol {proto} (2 to 5 are read)")));
                }
            }
            0x95 => {
                take(8, at)?; // FRAME: a length hint only
            }
            b'.' => return pop(&mut stack),
            b'(' => stack.push(V::Mark),
            b'N' => stack.push(V::None),
            0x88 => stack.push(V::Bool(true)),
            0x89 => stack.push(V::Bool(false)),
            b'J' => stack.push(V::Int(i32::from_le_bytes(take(4, at)?.try_into().unwrap_or_default()) as i64)),
            b'K' => stack.push(V::Int(take(1, at)?[0] as i64)),
            b'M' => stack.push(V::Int(u16::from_le_bytes([take(1, at)?[0], take(1, at)?[0]]) as i64)),
            0x8a => {
                let n = take(1, at)?[0] as usize;
                let b = take(n, at)?;
                if n > 8 {
                    // The legacy format's magic number is 10 bytes: keep it as bytes.
                    stack.push(V::Bytes(b.to_vec()));
                } else {
                    let mut v = [if b.last().is_some_and(|x| x & 0x80 != 0) { 0xff } else { 0 }; 8];
                    v[..n].copy_from_slice(b);
                    stack.push(V::Int(i64::from_le_bytes(v)));
                }
            }
            b'G' => stack.push(V::Float(f64::from_be_bytes(take(8, at)?.try_into().unwrap_or_default()))),
            b'X' | 0x8c | 0x8d | b'T' | b'U' | b'B' | b'C' | 0x8e => {
                let n = match op {
                    0x8c | b'U' | b'C' => take(1, at)?[0] as usize,
                    0x8d | 0x8e => u64::from_le_bytes(take(8, at)?.try_into().unwrap_or_default()) as usize,
                    _ => u32::from_le_bytes(take(4, at)?.try_into().unwrap_or_default()) as usize,
                };
                let b = take(n, at)?;
                stack.push(match op {
                    b'B' | b'C' | 0x8e => V::Bytes(b.to_vec()),
                    _ => V::Str(String::from_utf8(b.to_vec()).map_err(|_| bad("pickle string is not UTF-8"))?),
                });
            }
            b')' => stack.push(V::Tuple(Vec::new())),
            b']' => stack.push(V::List(Vec::new())),
            b'}' => stack.push(V::Dict(Vec::new())),
            b't' => {
                let items = pop_mark(&mut stack)?;
                stack.push(V::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let at_ = stack.len().checked_sub(n).ok_or_else(|| bad("pickle stack underflow"))?;
                let items = stack.split_off(at_);
                stack.push(V::Tuple(items));
            }
            b'l' => {
                let items = pop_mark(&mut stack)?;
                stack.push(V::List(items));
            }
            b'd' => {
                let items = pop_mark(&mut stack)?;
                stack.push(V::Dict(pairs(items)?));
            }
            b'q' | b'r' | 0x94 => {
                let id = match op {
                    b'q' => take(1, at)?[0] as u32,
                    b'r' => u32::from_le_bytes(take(4, at)?.try_into().unwrap_or_default()),
                    _ => memo.len() as u32,
                };
                let top = stack.last().ok_or_else(|| bad("pickle stack underflow"))?;
                copied += size(top);
                if copied > MAX_COPIED {
                    return Err(bad("pickle copies too many values through its memo"));
                }
                memo.insert(id, top.clone());
            }
            b'h' | b'j' => {
                let id = if op == b'h' {
                    take(1, at)?[0] as u32
                } else {
                    u32::from_le_bytes(take(4, at)?.try_into().unwrap_or_default())
                };
                let v = memo.get(&id).ok_or_else(|| bad(format!("pickle memo {id} unset")))?;
                copied += size(v);
                if copied > MAX_COPIED {
                    return Err(bad("pickle copies too many values through its memo"));
                }
                stack.push(v.clone());
            }
            b'c' | 0x93 => {
                let name = if op == b'c' {
                    let line = |at: &mut usize| -> Result<String> {
                        let rest = &bytes[(*at).min(bytes.len())..];
                        let n = rest.iter().position(|&b| b == b'\n').ok_or_else(|| bad("truncated pickle"))?;
                        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
                        *at += n + 1;
                        Ok(s)
                    };
                    let module = line(at)?;
                    format!("{module}.{}", line(at)?)
                } else {
                    let name = pop(&mut stack)?;
                    let module = pop(&mut stack)?;
                    match (module, name) {
                        (V::Str(m), V::Str(n)) => format!("{m}.{n}"),
                        _ => return Err(bad("STACK_GLOBAL of non-strings")),
                    }
                };
                let known = GLOBALS.iter().find(|g| **g == name).ok_or_else(|| {
                    bad(format!("the pickle names '{name}', which a state dict never needs: refused (no code is run)"))
                })?;
                stack.push(V::Global(known));
            }
            b'Q' => {
                let pid = pop(&mut stack)?;
                stack.push(storage(pid)?);
            }
            b'R' | 0x81 => {
                let args = pop(&mut stack)?;
                let callable = pop(&mut stack)?;
                stack.push(reduce(callable, args)?);
            }
            b'b' => {
                // BUILD: an OrderedDict's state (its `_metadata`) is not needed.
                let _state = pop(&mut stack)?;
                if !matches!(stack.last(), Some(V::Dict(_))) {
                    return Err(bad("BUILD on something other than a dict"));
                }
            }
            b's' | b'u' => {
                let items = if op == b's' {
                    let v = pop(&mut stack)?;
                    let k = pop(&mut stack)?;
                    vec![k, v]
                } else {
                    pop_mark(&mut stack)?
                };
                match stack.last_mut() {
                    Some(V::Dict(d)) => d.extend(pairs(items)?),
                    _ => return Err(bad("SETITEM on something other than a dict")),
                }
            }
            b'a' | b'e' => {
                let items = if op == b'a' { vec![pop(&mut stack)?] } else { pop_mark(&mut stack)? };
                match stack.last_mut() {
                    Some(V::List(l)) => l.extend(items),
                    _ => return Err(bad("APPEND on something other than a list")),
                }
            }
            b'0' => {
                pop(&mut stack)?;
            }
            other => return Err(bad(format!("pickle opcode 0x{other:02x} is not read (not one a state dict uses)"))),
        }
    }
}

fn pairs(items: Vec<V>) -> Result<Vec<(V, V)>> {
    if !items.len().is_multiple_of(2) {
        return Err(bad("odd number of dict items"));
    }
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

/// A persistent id: `('storage', torch.XStorage, key, location, numel, ...)`.
fn storage(pid: V) -> Result<V> {
    let V::Tuple(items) = pid else { return Err(bad("persistent id is not a tuple")) };
    match items.as_slice() {
        [V::Str(tag), V::Global(ty), V::Str(key), _location, V::Int(_numel), ..] if tag == "storage" => {
            let elem = match *ty {
                "torch.FloatStorage" => Elem::F32,
                "torch.HalfStorage" => Elem::F16,
                "torch.BFloat16Storage" => Elem::Bf16,
                "torch.DoubleStorage" => Elem::F64,
                other => return Err(bad(format!("storage type {other} is not a floating type"))),
            };
            Ok(V::Storage { key: key.clone(), elem })
        }
        _ => Err(bad("persistent id is not a storage")),
    }
}

fn ints(v: &V, what: &str) -> Result<Vec<u64>> {
    match v {
        V::Tuple(items) => items
            .iter()
            .map(|i| match i {
                V::Int(n) if *n >= 0 => Ok(*n as u64),
                _ => Err(bad(format!("tensor {what} holds a non-integer"))),
            })
            .collect(),
        _ => Err(bad(format!("tensor {what} is not a tuple"))),
    }
}

/// REDUCE / NEWOBJ of one of the known globals.
fn reduce(callable: V, args: V) -> Result<V> {
    let V::Tuple(args) = args else { return Err(bad("call arguments are not a tuple")) };
    match callable {
        V::Global("collections.OrderedDict") => Ok(V::Dict(Vec::new())),
        V::Global("torch._utils._rebuild_tensor_v2") | V::Global("torch._utils._rebuild_tensor") => {
            match args.as_slice() {
                [V::Storage { key, elem }, V::Int(offset), size, stride, ..] if *offset >= 0 => {
                    Ok(V::Tensor(TensorRef {
                        key: key.clone(),
                        elem: *elem,
                        offset: *offset as u64,
                        size: ints(size, "size")?,
                        stride: ints(stride, "stride")?,
                    }))
                }
                _ => Err(bad("unexpected arguments to _rebuild_tensor")),
            }
        }
        V::Global("torch._utils._rebuild_parameter") => match args.into_iter().next() {
            Some(t @ V::Tensor(_)) => Ok(t),
            _ => Err(bad("unexpected arguments to _rebuild_parameter")),
        },
        V::Global(g) => Err(bad(format!("{g} cannot be called here"))),
        _ => Err(bad("call of something that is not a global")),
    }
}

/// The state dict's (key, tensor) entries.
fn entries(root: V) -> Result<Vec<(String, TensorRef)>> {
    let V::Dict(items) = root else { return Err(bad("the file holds no state dict (its top object is not a dict)")) };
    items
        .into_iter()
        .map(|(k, v)| match (k, v) {
            (V::Str(k), V::Tensor(t)) => Ok((k, t)),
            (V::Str(k), _) => Err(ConvertError::BadTensor { name: k, reason: "not a tensor".into() }),
            _ => Err(bad("a state dict key is not a string")),
        })
        .collect()
}

/// The tensor's values, contiguous, from its storage's bytes.
fn gather(name: &str, t: &TensorRef, storage: &[u8]) -> Result<Tensor> {
    let err = |reason: String| ConvertError::BadTensor { name: name.into(), reason };
    if t.size.len() != t.stride.len() {
        return Err(err("size and stride disagree".into()));
    }
    let count = t.size.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).ok_or_else(|| err("size overflows".into()))?;
    let es = t.elem.size() as u64;
    let elems = storage.len() as u64 / es;
    // A state dict's views never repeat elements (no stride-0 broadcasts): more values
    // than the storage holds is refused before anything is allocated for them.
    if count > elems {
        return Err(err(format!("{count} values from a storage of {elems}")));
    }
    // The largest element index the view reaches must lie in the storage.
    if count > 0 {
        let reach =
            t.size.iter().zip(&t.stride).try_fold(t.offset, |a, (&d, &s)| a.checked_add((d - 1).checked_mul(s)?));
        if reach.is_none_or(|r| r >= elems) {
            return Err(err(format!("view reaches past its storage of {elems} elements")));
        }
    }
    let mut data = Vec::with_capacity(count as usize);
    let mut index = vec![0u64; t.size.len()];
    for _ in 0..count {
        let e = t.offset + index.iter().zip(&t.stride).map(|(&i, &s)| i * s).sum::<u64>();
        let b = (e * es) as usize;
        data.push(t.elem.value(&storage[b..b + es as usize]));
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < t.size[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(Tensor { name: name.into(), shape: t.size.clone(), data })
}

/// Whether `bytes` look like a `torch.save` file: a zip with a `data.pkl`, or a legacy
/// file's first pickle (protocol 2, the 10-byte magic number).
pub fn looks_like(bytes: &[u8]) -> bool {
    if bytes.starts_with(b"PK") {
        return zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .is_ok_and(|z| z.file_names().any(|n| n.is_ok_and(|n| n.ends_with("data.pkl"))));
    }
    bytes.starts_with(&[0x80, 0x02, 0x8a, 0x0a])
}

/// The state dict's tensors, in file order.
pub fn read(bytes: &[u8]) -> Result<Vec<Tensor>> {
    if bytes.starts_with(b"PK") {
        read_zip(bytes)
    } else {
        read_legacy(bytes)
    }
}

fn read_zip(bytes: &[u8]) -> Result<Vec<Tensor>> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))?;
    let pkl = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .find(|n| n.ends_with("data.pkl"))
        .ok_or_else(|| bad("no data.pkl"))?;
    let prefix = pkl.strip_suffix("data.pkl").unwrap_or("").to_string();
    // torch.save stores its members uncompressed; a re-compressed archive may inflate, up
    // to the larger of 256 MiB and 64x the archive in all (never above 4 GiB), which stops
    // a deflate bomb.
    let cap = (bytes.len() as u64).saturating_mul(64).clamp(256 << 20, 4 << 30);
    let mut total = 0u64;
    let mut read_member = |name: &str, zip: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>| -> Result<Vec<u8>> {
        let mut m = zip.by_name(name).map_err(|_| bad(format!("missing archive member {name}")))?;
        let mut buf = Vec::new();
        (&mut m).take(cap - total + 1).read_to_end(&mut buf).map_err(|e| bad(format!("{name}: {e}")))?;
        total += buf.len() as u64;
        if total > cap {
            return Err(bad(format!("archive members inflate to more than {cap} bytes")));
        }
        Ok(buf)
    };
    if let Ok(order) = read_member(&format!("{prefix}byteorder"), &mut zip) {
        if order.trim_ascii() != b"little" {
            return Err(bad("big-endian storages are not read"));
        }
    }
    let pickle = read_member(&pkl, &mut zip)?;
    let root = unpickle(&pickle, &mut 0)?;
    let mut cache: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out = Vec::new();
    for (name, t) in entries(root)? {
        if !cache.contains_key(&t.key) {
            let data = read_member(&format!("{prefix}data/{}", t.key), &mut zip)?;
            cache.insert(t.key.clone(), data);
        }
        out.push(gather(&name, &t, &cache[&t.key])?);
    }
    Ok(out)
}

fn read_legacy(bytes: &[u8]) -> Result<Vec<Tensor>> {
    let mut at = 0;
    let magic = unpickle(bytes, &mut at)?;
    if magic != V::Bytes(vec![0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]) {
        return Err(bad("not a torch.save file (bad magic number)"));
    }
    if unpickle(bytes, &mut at)? != V::Int(1001) {
        return Err(bad("legacy torch.save protocol other than 1001"));
    }
    let _sys_info = unpickle(bytes, &mut at)?;
    let root = unpickle(bytes, &mut at)?;
    let V::List(keys) = unpickle(bytes, &mut at)? else { return Err(bad("storage key list missing")) };
    let entries = entries(root)?;
    // Storages follow in the key list's order: an 8-byte element count, then the bytes.
    let elem_of = |key: &str| entries.iter().find(|(_, t)| t.key == key).map(|(_, t)| t.elem);
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    for k in keys {
        let V::Str(key) = k else { return Err(bad("storage key is not a string")) };
        let n = bytes.get(at..at + 8).ok_or_else(|| bad("truncated storage"))?;
        let n = u64::from_le_bytes(n.try_into().unwrap_or_default());
        at += 8;
        let es = elem_of(&key).map_or(4, Elem::size) as u64;
        let len =
            n.checked_mul(es).filter(|&l| l <= (bytes.len() - at) as u64).ok_or_else(|| bad("truncated storage"))?;
        storages.insert(key, &bytes[at..at + len as usize]);
        at += len as usize;
    }
    entries
        .iter()
        .map(|(name, t)| {
            let s = storages.get(&t.key).ok_or_else(|| bad(format!("storage {} missing", t.key)))?;
            gather(name, t, s)
        })
        .collect()
}
