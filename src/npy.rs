//! Minimal `.npy` reading and writing (NumPy format versions 1, 2 and 3).
//!
//! Reads little-endian `<f4` (float32), `<f8` (float64, rounded to f32) and `<f2`
//! (float16) arrays in C order; writes float32. Used by `alexnet-classify` for tensor
//! input and probability output, and by `convert-weights` for `.npz` members. The header
//! is parsed strictly and every size is checked before allocation.

use crate::error::{Error, Result};

/// Cap on the header length (NumPy itself writes a few hundred bytes).
const MAX_HEADER: usize = 1 << 16;

fn bad(reason: impl Into<String>) -> Error {
    Error::InvalidArgument(format!("npy: {}", reason.into()))
}

/// An array read from a `.npy`: shape and f32 values in C order.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

/// Value of `key` in the header dict literal, as the raw text up to the next top-level comma.
fn field<'a>(header: &'a str, key: &str) -> Result<&'a str> {
    let pat = format!("'{key}':");
    let start = header.find(&pat).ok_or_else(|| bad(format!("header has no {key}")))? + pat.len();
    let rest = header[start..].trim_start();
    let end = if rest.starts_with('(') { rest.find(')').map(|i| i + 1) } else { rest.find([',', '}']) }
        .ok_or_else(|| bad(format!("unterminated {key}")))?;
    Ok(rest[..end].trim())
}

/// Parse a `.npy` file's bytes.
pub fn parse(bytes: &[u8]) -> Result<Array> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file (bad magic)"));
    }
    let (hlen, hstart) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad("truncated header"));
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(bad(format!("unsupported version {v}"))),
    };
    if hlen > MAX_HEADER || hstart + hlen > bytes.len() {
        return Err(bad("header length past the end of the file"));
    }
    let header = std::str::from_utf8(&bytes[hstart..hstart + hlen]).map_err(|_| bad("header is not UTF-8"))?;
    let descr = field(header, "descr")?.trim_matches(|c| c == '\'' || c == '"');
    let fortran = field(header, "fortran_order")?;
    if fortran != "False" {
        return Err(bad("Fortran-order arrays are not supported"));
    }
    let shape_txt = field(header, "shape")?;
    let inner = shape_txt.strip_prefix('(').and_then(|s| s.strip_suffix(')')).ok_or_else(|| bad("bad shape"))?;
    let mut shape = Vec::new();
    for part in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        shape.push(part.parse::<usize>().map_err(|_| bad(format!("bad dimension {part:?}")))?);
        if shape.len() > 8 {
            return Err(bad("more than 8 dimensions"));
        }
    }
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad("shape overflows"))?;
    let body = &bytes[hstart + hlen..];
    let elem = match descr {
        "<f4" | "|f4" => 4,
        "<f8" => 8,
        "<f2" => 2,
        other => return Err(bad(format!("unsupported dtype {other:?} (need little-endian f2, f4 or f8)"))),
    };
    let need = count.checked_mul(elem).ok_or_else(|| bad("size overflows"))?;
    if body.len() != need {
        return Err(bad(format!("data is {} bytes, shape needs {need}", body.len())));
    }
    let data: Vec<f32> = match elem {
        4 => body.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        8 => body
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        _ => body.chunks_exact(2).map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect(),
    };
    Ok(Array { shape, data })
}

/// Largest `.npy` file [`read`] accepts: 1 GiB, over 1,600 images at 227 x 227.
pub const MAX_NPY_BYTES: u64 = 1 << 30;

/// Read a `.npy` file.
///
/// Only a regular file of at most [`MAX_NPY_BYTES`] is read: a FIFO would block forever
/// and a device never end.
pub fn read(path: &std::path::Path) -> Result<Array> {
    use std::io::Read;
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(Error::NotRegularFile(path.to_path_buf()));
    }
    let file = std::fs::File::open(path).map_err(io)?;
    if meta.len() > MAX_NPY_BYTES {
        return Err(Error::InvalidArgument(format!(
            "{}: {} bytes, above the {MAX_NPY_BYTES}-byte limit for an input tensor",
            path.display(),
            meta.len()
        )));
    }
    // Bounded by the cap even if the file grows after the check.
    let mut bytes = Vec::new();
    file.take(MAX_NPY_BYTES + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_NPY_BYTES {
        return Err(Error::InvalidArgument(format!("{}: grew past the size limit while read", path.display())));
    }
    parse(&bytes).map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))
}

/// Serialise a float32 array as `.npy` (version 1.0).
pub fn to_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // Pad so the data starts on a 64-byte boundary, header ending in a newline.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat(total.next_multiple_of(64) - total));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Write a float32 array to `path`.
pub fn write(path: &std::path::Path, shape: &[usize], data: &[f32]) -> Result<()> {
    std::fs::write(path, to_bytes(shape, data)).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

/// IEEE half to single precision.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value = m * 2^-24.
            let v = m as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let data = [1.0f32, -2.5, 3.25, 0.0, f32::NAN, 7.0];
        let a = parse(&to_bytes(&[2, 3], &data)).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data[..4], data[..4]);
        assert!(a.data[4].is_nan());
        let b = parse(&to_bytes(&[4], &[1.0; 4])).unwrap();
        assert_eq!(b.shape, vec![4]);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse(b"").is_err());
        assert!(parse(b"\x93NUMPY\x01\x00\xff\xff").is_err());
        let mut ok = to_bytes(&[2], &[1.0, 2.0]);
        ok.pop();
        assert!(parse(&ok).is_err());
    }

    #[test]
    fn half_precision() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
    }
}
