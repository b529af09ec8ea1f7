//! JPEG decoding through libjpeg-turbo's TurboJPEG API (feature `turbojpeg`): the decoder
//! PIL, and so the Python reference pipelines, use, so the decoded pixels are theirs
//! exactly (image-rs's pure-Rust decoder differs from it by a few levels on some pixels,
//! through its IDCT and chroma upsampling). Links the system's `libturbojpeg` (2.x or
//! 3.x).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_uchar, c_ulong, c_void, CStr};

use ::image::RgbImage;

#[link(name = "turbojpeg")]
extern "C" {
    fn tjInitDecompress() -> *mut c_void;
    fn tjDecompressHeader3(
        handle: *mut c_void,
        jpeg: *const c_uchar,
        size: c_ulong,
        width: *mut c_int,
        height: *mut c_int,
        subsamp: *mut c_int,
        colorspace: *mut c_int,
    ) -> c_int;
    fn tjDecompress2(
        handle: *mut c_void,
        jpeg: *const c_uchar,
        size: c_ulong,
        dst: *mut c_uchar,
        width: c_int,
        pitch: c_int,
        height: c_int,
        pixel_format: c_int,
        flags: c_int,
    ) -> c_int;
    fn tjGetErrorStr2(handle: *mut c_void) -> *mut c_char;
    fn tjDestroy(handle: *mut c_void) -> c_int;
}

/// `TJPF_RGB`: 3 bytes per pixel, R, G, B.
const TJPF_RGB: c_int = 0;
/// `TJCS_CMYK` and `TJCS_YCCK`: colour spaces TurboJPEG cannot turn into RGB.
const TJCS_CMYK: c_int = 3;
const TJCS_YCCK: c_int = 4;

/// Why TurboJPEG gave no image.
pub(super) enum Outcome {
    /// A file it does not convert to RGB (CMYK): let the other decoder try.
    Unsupported,
    /// Refused or failed, with a one-line reason.
    Failed(String),
}

/// A decompressor, destroyed on drop.
struct Handle(*mut c_void);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from tjInitDecompress and is destroyed once.
        unsafe { tjDestroy(self.0) };
    }
}

impl Handle {
    fn error(&self) -> String {
        // SAFETY: the handle is live; TurboJPEG returns a NUL-terminated static or
        // per-handle string.
        let p = unsafe { tjGetErrorStr2(self.0) };
        if p.is_null() {
            return "unknown error".into();
        }
        // SAFETY: non-null, NUL-terminated (above), valid until the next call on the handle.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().trim().to_owned()
    }
}

/// Decode a JPEG (already checked for a complete marker structure) to RGB, refusing
/// images wider or taller than `max_side` or needing more than `max_bytes` of pixels.
pub(super) fn decode(bytes: &[u8], max_side: u32, max_bytes: u64) -> Result<RgbImage, Outcome> {
    let size = c_ulong::try_from(bytes.len()).map_err(|_| Outcome::Failed("file too large".into()))?;
    // SAFETY: no arguments; null on failure (checked).
    let handle = Handle(unsafe { tjInitDecompress() });
    if handle.0.is_null() {
        return Err(Outcome::Failed("cannot start the JPEG decoder".into()));
    }
    let (mut w, mut h, mut sub, mut cs) = (0 as c_int, 0 as c_int, 0 as c_int, 0 as c_int);
    // SAFETY: the handle is live, `bytes` is valid for `size` reads, the out-pointers are
    // to locals.
    let rc = unsafe { tjDecompressHeader3(handle.0, bytes.as_ptr(), size, &mut w, &mut h, &mut sub, &mut cs) };
    if rc != 0 {
        return Err(Outcome::Failed(format!("corrupt JPEG data: {}", handle.error())));
    }
    if cs == TJCS_CMYK || cs == TJCS_YCCK {
        return Err(Outcome::Unsupported);
    }
    let (width, height) = (u32::try_from(w).unwrap_or(0), u32::try_from(h).unwrap_or(0));
    if width == 0 || height == 0 {
        return Err(Outcome::Failed(format!("image has zero size ({width}x{height})")));
    }
    if width > max_side || height > max_side {
        return Err(Outcome::Failed(format!("image too large: {width}x{height}, above {max_side} a side")));
    }
    let needed = u64::from(width) * u64::from(height) * 3;
    if needed > max_bytes {
        return Err(Outcome::Failed(format!(
            "{width}x{height} image needs {needed} bytes to decode, above the limit of {max_bytes}"
        )));
    }
    let mut pixels = vec![0u8; needed as usize];
    // SAFETY: the handle is live; `pixels` holds exactly `height` rows of `width * 3`
    // bytes (pitch), the size the header reported; `bytes` as above.
    let rc = unsafe { tjDecompress2(handle.0, bytes.as_ptr(), size, pixels.as_mut_ptr(), w, w * 3, h, TJPF_RGB, 0) };
    if rc != 0 {
        return Err(Outcome::Failed(format!("corrupt JPEG data: {}", handle.error())));
    }
    RgbImage::from_raw(width, height, pixels).ok_or_else(|| Outcome::Failed("decoded size mismatch".into()))
}
