//! Image front end: decode a JPEG or PNG and turn it into one network input (`[3, H, W]`,
//! CHW, f32) as the model's [`Preprocess`] metadata says.
//!
//! The pipeline is torchvision's `Resize(s) -> CenterCrop(h, w) -> ToTensor -> Normalize`,
//! which is also what Caffe-style models expect with their own mean, scale and channel
//! order:
//!
//! 1. **Decode**, the format guessed from the content (never the file name). Only JPEG
//!    and PNG are accepted. JPEG goes to the built-in decoder (`image/jpeg.rs`), which
//!    gives libjpeg-turbo's default output (PIL's) bit for bit (with the `turbojpeg`
//!    feature, to the system's libjpeg-turbo first); PNG, and the JPEG kinds it leaves
//!    alone (CMYK, arithmetic coding, 12-bit), to `image::ImageReader`.
//!    A byte budget checked before any pixel buffer is allocated (and [`image::Limits`]
//!    for image-rs) refuses decompression bombs: each side at most [`MAX_IMAGE_SIDE`],
//!    the decoder's buffers (coefficients, planes) and the 8-bit RGB image at most
//!    [`MAX_DECODE_BYTES`].
//! 2. **Convert** any colour type to 8-bit RGB: grey is replicated into R, G and B, an
//!    alpha channel is dropped (not composited; PIL's `convert("RGB")` does the same),
//!    16-bit samples are rounded to 8 bits. EXIF orientation is ignored, as torchvision
//!    ignores it.
//! 3. **Resize** so the shorter side is `resize_shorter`, keeping the aspect ratio (the
//!    longer side is `floor(s * long / short)`, torchvision's rounding); with
//!    `resize_shorter == 0` the image is resized straight to `h x w` and not cropped.
//!    When `resize_shorter` is smaller than `h` or `w` the shorter side becomes
//!    `max(h, w)` instead, so the crop always fits (torchvision would pad with zeros).
//!    The filter is PIL's antialiased bilinear (a triangle widened by the downscale
//!    factor), with PIL's coordinate mapping and fixed-point arithmetic; each pass is
//!    rounded to 8 bits as PIL's is, so step 5 sees PIL's integer pixel values.
//! 4. **Centre-crop** `h x w`; the offset `(resized - crop) / 2` rounds half to even, as
//!    torchvision's `round()` does.
//! 5. **Normalise** into the network's channel order (BGR when `color == Bgr`):
//!    `x = (pixel * scale - mean[c]) / std[c]`, mean and std given in that order.
//!
//! Steps 3 and 4 run together: only the cropped pixels of the resized image are ever
//! computed, by PIL's own two passes in its fixed point (horizontal over the source rows
//! the crop reaches, rounded to 8 bits, then vertical), so the pixels equal PIL's bit for
//! bit and an extreme aspect ratio or a large `resize_shorter` never allocates the full
//! resized image. Memory beyond the decoded image is those source rows at the crop's
//! width, 8 bits a channel, plus the filter taps.
//!
//! Decoders are third-party parsers of untrusted bytes: a panic inside one is caught and
//! returned as [`Error::Image`] (the process's panic hook still reports it), so a decoder
//! bug cannot take down a server that embeds this module.

use std::io::{Cursor, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use ::image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits, RgbImage};

use crate::error::{Error, Result};
use crate::plan::{limits, ColorOrder, Preprocess};

pub(crate) mod jpeg;
#[cfg(feature = "turbojpeg")]
mod turbo;

/// Largest accepted image width or height, in pixels.
pub const MAX_IMAGE_SIDE: u32 = 16_384;

/// Budget for decoding one image: the decoder's output buffer plus its 8-bit RGB copy.
pub const MAX_DECODE_BYTES: u64 = 512 << 20;

/// Largest image file read from disk (a compressed image is never larger than this budget).
pub const MAX_FILE_BYTES: u64 = MAX_DECODE_BYTES;

/// Decode the image file at `path` and preprocess it into a `[3, h, w]` CHW tensor.
///
/// `input` is the network's `[c, h, w]` ([`crate::Model::input_shape`]); `c` must be 3.
/// A missing or unreadable file is [`Error::Io`], a directory or device
/// [`Error::NotRegularFile`], anything wrong with the content [`Error::Image`].
pub fn load_image(path: impl AsRef<Path>, pre: &Preprocess, input: [usize; 3]) -> Result<Vec<f32>> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    preprocess_bytes(&bytes, &path.display().to_string(), pre, input)
}

/// Decode an encoded JPEG or PNG held in memory and preprocess it into a `[c, h, w]`
/// CHW tensor (see the module documentation for the exact steps). A 1-channel network
/// gets the image in grey, as PIL's `convert("L")` makes it, before the resize.
///
/// `name` identifies the image in error messages (a path, or `<memory>`).
pub fn preprocess_bytes(bytes: &[u8], name: &str, pre: &Preprocess, input: [usize; 3]) -> Result<Vec<f32>> {
    let [c, h, w] = input;
    let [h, w] = check_input([c, h, w])?;
    if pre.resize_shorter > limits::MAX_SIDE {
        return Err(Error::InvalidArgument(format!(
            "resize_shorter {} is above the limit of {}",
            pre.resize_shorter,
            limits::MAX_SIDE
        )));
    }
    let rgb = decode_rgb8(bytes).map_err(|reason| Error::Image { path: name.to_owned(), reason })?;
    if c == 1 {
        let grey = to_grey(&rgb);
        let x = resize_crop_normalise(&grey, &Preprocess { color: ColorOrder::Rgb, ..pre.clone() }, h, w);
        return Ok(x[..h * w].to_vec());
    }
    Ok(resize_crop_normalise(&rgb, pre, h, w))
}

/// PIL's `convert("L")` (ITU-R 601-2 luma in its fixed point), replicated into the three
/// channels so the one resize serves; channel 0 is the grey image.
fn to_grey(img: &RgbImage) -> RgbImage {
    let mut out = img.clone();
    for p in out.pixels_mut() {
        let [r, g, b] = p.0.map(u32::from);
        let l = ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16) as u8;
        p.0 = [l, l, l];
    }
    out
}

/// Read a whole regular file, refusing directories, devices, FIFOs and oversized files.
fn read_file(path: &Path) -> Result<Vec<u8>> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    // Check the type before opening: opening a FIFO for reading would block.
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(Error::NotRegularFile(path.to_path_buf()));
    }
    let too_large = |len: u64| Error::Image {
        path: path.display().to_string(),
        reason: format!("file is {len} bytes, above the limit of {MAX_FILE_BYTES}"),
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large(meta.len()));
    }
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow after the metadata call: read at most one byte past the cap.
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Check the network input shape and return `[h, w]`.
fn check_input([c, h, w]: [usize; 3]) -> Result<[usize; 2]> {
    if c != 3 && c != 1 {
        return Err(Error::InvalidArgument(format!(
            "images become 3-channel (colour) or 1-channel (grey) inputs, the network takes {c} channels"
        )));
    }
    let side_ok = |s: usize| (1..=limits::MAX_SIDE as usize).contains(&s);
    if !side_ok(h) || !side_ok(w) || (3 * h * w) as u64 > limits::MAX_ACTIVATION {
        return Err(Error::InvalidArgument(format!("input size {h}x{w} outside the plan limits")));
    }
    Ok([h, w])
}

/// Decode `bytes` to 8-bit RGB, or say why not.
fn decode_rgb8(bytes: &[u8]) -> std::result::Result<RgbImage, String> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| format!("cannot read: {e}"))?;
    let format = match reader.format() {
        Some(f @ (ImageFormat::Jpeg | ImageFormat::Png)) => f,
        Some(f) => return Err(format!("{f:?} images are not supported (JPEG and PNG are)")),
        None => return Err("not a JPEG or PNG image (unrecognised content)".into()),
    };
    let fmt = format!("{format:?}").to_uppercase();
    if format == ImageFormat::Jpeg {
        check_jpeg_structure(bytes)?;
        #[cfg(feature = "turbojpeg")]
        match turbo::decode(bytes, MAX_IMAGE_SIDE, MAX_DECODE_BYTES) {
            Ok(img) => return Ok(img),
            Err(turbo::Outcome::Failed(reason)) => return Err(reason),
            // CMYK and YCCK files go to image-rs.
            Err(turbo::Outcome::Unsupported) => {}
        }
        match jpeg::decode(bytes, MAX_IMAGE_SIDE, MAX_DECODE_BYTES) {
            Ok(img) => return Ok(img),
            Err(jpeg::Outcome::Failed(reason)) => return Err(reason),
            // CMYK, arithmetic-coded, lossless, 12-bit: image-rs.
            Err(jpeg::Outcome::Unsupported) => {}
        }
    }
    let decoded = catch_unwind(AssertUnwindSafe(|| decode_limited(reader)));
    match decoded {
        Ok(Ok(img)) => Ok(img),
        Ok(Err(Refused(reason))) => Err(reason),
        Ok(Err(Failed(e))) => Err(describe(&fmt, &e)),
        Err(_) => Err(format!("the {fmt} decoder failed on this data (internal panic)")),
    }
}

/// Walk a JPEG's marker segments from start-of-image to end-of-image.
///
/// The JPEG decoder fills a truncated scan with grey and reports success; PIL (and so
/// torchvision) refuses such files, and so does this check. Entropy-coded data cannot
/// contain a marker (0xFF is stuffed as `FF 00`; restart markers are skipped), so the
/// walk is exact. It stops at the first EOI: trailers such as MPF's extra pictures are
/// ignored, as the decoder ignores them.
fn check_jpeg_structure(b: &[u8]) -> std::result::Result<(), String> {
    let truncated = || "truncated JPEG data (no end-of-image marker)".to_string();
    if !b.starts_with(&[0xFF, 0xD8]) {
        return Err("corrupt JPEG data: no start-of-image marker".into());
    }
    let mut i = 2;
    loop {
        if *b.get(i).ok_or_else(truncated)? != 0xFF {
            return Err(format!("corrupt JPEG data: expected a marker at byte {i}"));
        }
        // Any number of 0xFF fill bytes may precede the marker code.
        while b.get(i) == Some(&0xFF) {
            i += 1;
        }
        let marker = *b.get(i).ok_or_else(truncated)?;
        i += 1;
        match marker {
            0xD9 => return Ok(()),
            0x01 | 0xD0..=0xD7 => continue, // TEM and RSTn have no payload
            0x00 | 0xD8 => {
                return Err(format!("corrupt JPEG data: unexpected marker 0x{marker:02X} at byte {}", i - 1))
            }
            _ => {}
        }
        let len = match b.get(i..i + 2) {
            Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
            _ => return Err(truncated()),
        };
        if len < 2 {
            return Err(format!("corrupt JPEG data: segment length {len} at byte {i}"));
        }
        i += len;
        if i > b.len() {
            return Err(truncated());
        }
        if marker == 0xDA {
            // Start of scan: skip the entropy-coded data up to the next real marker.
            loop {
                let ff = b[i..].iter().position(|&x| x == 0xFF).ok_or_else(truncated)? + i;
                match b.get(ff + 1) {
                    None => return Err(truncated()),
                    Some(0x00 | 0xD0..=0xD7) => i = ff + 2,
                    Some(0xFF) => i = ff + 1,
                    Some(_) => {
                        i = ff;
                        break;
                    }
                }
            }
        }
    }
}

/// Why [`decode_limited`] gave up.
enum DecodeError {
    /// Our own budget check refused the image (message ready for the user).
    Refused(String),
    /// The decoder reported an error.
    Failed(ImageError),
}
use DecodeError::{Failed, Refused};

/// Decode under [`Limits`], checking the whole budget (decoded buffer and the RGB copy)
/// from the header before the decoder allocates pixels.
fn decode_limited(mut reader: ImageReader<Cursor<&[u8]>>) -> std::result::Result<RgbImage, DecodeError> {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(Failed)?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(Refused(format!("image has zero size ({width}x{height})")));
    }
    let rgb_bytes = u64::from(width) * u64::from(height) * 3;
    let needed = decoder.total_bytes().saturating_add(rgb_bytes);
    if needed > MAX_DECODE_BYTES {
        return Err(Refused(format!(
            "{width}x{height} image needs {needed} bytes to decode, above the limit of {MAX_DECODE_BYTES}"
        )));
    }
    let image = DynamicImage::from_decoder(decoder).map_err(Failed)?;
    Ok(image.into_rgb8())
}

/// A one-line reason for a decoder error.
fn describe(format: &str, e: &ImageError) -> String {
    let msg = e.to_string().replace('\n', " ");
    match e {
        ImageError::Limits(_) => format!("image too large: {msg}"),
        ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            format!("truncated {format} data: {msg}")
        }
        ImageError::IoError(_) => format!("cannot read {format} data: {msg}"),
        ImageError::Unsupported(_) => format!("unsupported {format} variant: {msg}"),
        _ => format!("corrupt {format} data: {msg}"),
    }
}

/// Fractional bits of PIL's fixed-point filter weights (`PRECISION_BITS` in its
/// `Resample.c`: 32 - 8 - 2, so that 255 times a sum of weights fits an `i32`).
const PRECISION_BITS: u32 = 22;

/// Filter taps for one output coordinate: the first source index and the weights in
/// PIL's fixed point (`2^PRECISION_BITS` is 1).
struct Taps {
    start: usize,
    weights: Vec<i32>,
}

/// PIL's antialiased bilinear taps for outputs `first..first + count` of a resize from
/// `in_size` to `out_size` samples (only the cropped window of outputs is computed): its
/// `precompute_coeffs` in f64, then `normalize_coeffs_8bpc` to fixed point.
fn bilinear_taps(in_size: u32, out_size: u64, first: u64, count: usize) -> Vec<Taps> {
    let scale = f64::from(in_size) / out_size as f64;
    // Downscaling widens the triangle so every source pixel contributes (antialiasing).
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // the triangle's support is 1 before widening
    let inv = 1.0 / filter_scale;
    let one = f64::from(1u32 << PRECISION_BITS);
    (0..count as u64)
        .map(|i| {
            let center = (first + i) as f64 + 0.5;
            let center = center * scale;
            // Truncating casts (and the clamps) follow PIL's `precompute_coeffs`.
            let lo = ((center - support + 0.5) as i64).max(0) as usize;
            let hi = ((center + support + 0.5) as i64).clamp(0, i64::from(in_size)) as usize;
            let mut weights: Vec<f64> =
                (lo..hi).map(|x| (1.0 - ((x as f64 - center + 0.5) * inv).abs()).max(0.0)).collect();
            let total: f64 = weights.iter().sum();
            if total > 0.0 {
                weights.iter_mut().for_each(|w| *w /= total);
                // Round half away from zero, as PIL's `(int)(0.5 + w * (1 << bits))`.
                let fixed = weights.iter().map(|&w| (if w < 0.0 { -0.5 } else { 0.5 } + w * one) as i32).collect();
                Taps { start: lo, weights: fixed }
            } else {
                // Unreachable for in-range centres; take the nearest pixel rather than fail.
                let nearest = (center as usize).min(in_size as usize - 1);
                Taps { start: nearest, weights: vec![1 << PRECISION_BITS] }
            }
        })
        .collect()
}

/// PIL's `clip8`: a fixed-point sum (with its half already added) to an 8-bit value.
fn clip8(sum: i32) -> u8 {
    if sum <= 0 {
        0
    } else if sum >= 255 << PRECISION_BITS {
        255
    } else {
        (sum >> PRECISION_BITS) as u8
    }
}

/// Round half to even, torchvision's `round((big - small) / 2)` for crop offsets.
fn half_even(diff: u64) -> u64 {
    let q = diff / 2;
    if diff % 2 == 1 && q % 2 == 1 {
        q + 1
    } else {
        q
    }
}

/// Size of the resized image (before the crop) and the crop's top-left corner.
fn geometry(src_w: u32, src_h: u32, resize_shorter: u32, h: usize, w: usize) -> ([u64; 2], [u64; 2]) {
    let (h, w) = (h as u64, w as u64);
    if resize_shorter == 0 {
        return ([w, h], [0, 0]);
    }
    let short_target = u64::from(resize_shorter).max(h).max(w);
    let (sw, sh) = (u64::from(src_w), u64::from(src_h));
    let (rw, rh) =
        if sw <= sh { (short_target, short_target * sh / sw) } else { (short_target * sw / sh, short_target) };
    ([rw, rh], [half_even(rw - w), half_even(rh - h)])
}

/// Resize, centre-crop and normalise an RGB image into a `[3, h, w]` CHW tensor.
///
/// Bit for bit PIL's two-pass bilinear resize of the cropped window: a horizontal pass
/// over the source rows the window's vertical taps reach, rounded to 8 bits, then a
/// vertical pass over those, rounded to 8 bits again, in PIL's fixed point.
fn resize_crop_normalise(img: &RgbImage, pre: &Preprocess, h: usize, w: usize) -> Vec<f32> {
    let (src_w, src_h) = img.dimensions();
    let ([rw, rh], [left, top]) = geometry(src_w, src_h, pre.resize_shorter, h, w);
    let cols = bilinear_taps(src_w, rw, left, w);
    let rows = bilinear_taps(src_h, rh, top, h);
    let raw: &[u8] = img.as_raw();
    let stride = src_w as usize * 3;
    // Source rows the vertical pass reads.
    let y0 = rows.iter().map(|t| t.start).min().unwrap_or(0);
    let y1 = rows.iter().map(|t| t.start + t.weights.len()).max().unwrap_or(0);
    let half = 1i32 << (PRECISION_BITS - 1);
    // Horizontal pass: those source rows at the window's columns, 8-bit RGB.
    let mut temp = vec![0u8; (y1 - y0) * w * 3];
    for (r, line) in temp.chunks_exact_mut(w * 3).enumerate() {
        let src = &raw[(y0 + r) * stride..(y0 + r + 1) * stride];
        for (x, col) in cols.iter().enumerate() {
            let mut acc = [half; 3];
            for (k, &wx) in col.weights.iter().enumerate() {
                let p = (col.start + k) * 3;
                for (c, a) in acc.iter_mut().enumerate() {
                    *a += i32::from(src[p + c]) * wx;
                }
            }
            for c in 0..3 {
                line[x * 3 + c] = clip8(acc[c]);
            }
        }
    }
    // out[o] takes source channel src[o]; mean and std are in the network's order.
    let src = match pre.color {
        ColorOrder::Rgb => [0, 1, 2],
        ColorOrder::Bgr => [2, 1, 0],
    };
    let plane = h * w;
    let mut out = vec![0.0f32; 3 * plane];
    // Vertical pass, then normalisation.
    for (y, row) in rows.iter().enumerate() {
        for x in 0..w {
            let mut acc = [half; 3];
            for (k, &wy) in row.weights.iter().enumerate() {
                let p = ((row.start + k - y0) * w + x) * 3;
                for (c, a) in acc.iter_mut().enumerate() {
                    *a += i32::from(temp[p + c]) * wy;
                }
            }
            for o in 0..3 {
                let pixel = f32::from(clip8(acc[src[o]]));
                out[o * plane + y * w + x] = (pixel * pre.scale - pre.mean[o]) / pre.std[o];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};

    fn encode(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        img.write_to(&mut buf, format).expect("encode test image");
        buf.into_inner()
    }

    /// Identity preprocessing: output values are the 0..255 pixels themselves.
    fn raw(color: ColorOrder, resize_shorter: u32) -> Preprocess {
        Preprocess { color, scale: 1.0, mean: [0.0; 3], std: [1.0; 3], resize_shorter }
    }

    fn solid(w: u32, h: u32, px: [u8; 3]) -> DynamicImage {
        DynamicImage::ImageRgb8(ImageBuffer::from_pixel(w, h, Rgb(px)))
    }

    fn image_err(r: Result<Vec<f32>>) -> String {
        match r {
            Err(Error::Image { reason, .. }) => reason,
            other => panic!("expected Error::Image, got {other:?}"),
        }
    }

    #[test]
    fn red_png_in_rgb_and_bgr_order() {
        let png = encode(solid(40, 30, [255, 0, 0]), ImageFormat::Png);
        let rgb = preprocess_bytes(&png, "red", &raw(ColorOrder::Rgb, 32), [3, 24, 24]).unwrap();
        assert_eq!(rgb.len(), 3 * 24 * 24);
        assert!(rgb[..576].iter().all(|&v| v == 255.0));
        assert!(rgb[576..].iter().all(|&v| v == 0.0));
        let bgr = preprocess_bytes(&png, "red", &raw(ColorOrder::Bgr, 32), [3, 24, 24]).unwrap();
        assert!(bgr[..1152].iter().all(|&v| v == 0.0));
        assert!(bgr[1152..].iter().all(|&v| v == 255.0));
    }

    #[test]
    fn normalisation_numbers() {
        let png = encode(solid(8, 8, [255, 128, 0]), ImageFormat::Png);
        let tv = Preprocess::torchvision();
        let x = preprocess_bytes(&png, "px", &tv, [3, 4, 4]).unwrap();
        let expect = [(1.0 - 0.485) / 0.229, (128.0 / 255.0 - 0.456) / 0.224, (0.0 - 0.406) / 0.225];
        for c in 0..3 {
            for &v in &x[c * 16..(c + 1) * 16] {
                assert!((v - expect[c]).abs() < 1e-5, "channel {c}: {v} vs {}", expect[c]);
            }
        }
        // Caffe: BGR, 0..255, mean (104, 117, 123) in BGR order.
        let y = preprocess_bytes(&png, "px", &Preprocess::caffe(), [3, 4, 4]).unwrap();
        assert_eq!([y[0], y[16], y[32]], [0.0 - 104.0, 128.0 - 117.0, 255.0 - 123.0]);
    }

    #[test]
    fn crop_geometry_is_torchvision_s() {
        // 500x375 -> shorter side 256 -> 341x256, crop 224 at (left 58, top 16).
        assert_eq!(geometry(500, 375, 256, 224, 224), ([341, 256], [58, 16]));
        // Portrait, odd remainder 115 rounds half to even: 57.5 -> 58.
        assert_eq!(geometry(100, 215, 100, 100, 100), ([100, 215], [0, 58]));
        assert_eq!(geometry(100, 141, 100, 100, 26), ([100, 141], [37, 20]));
        assert_eq!(half_even(117), 58);
        assert_eq!(half_even(115), 58);
        assert_eq!(half_even(1), 0);
        assert_eq!(half_even(3), 2);
        // resize_shorter below the crop: the shorter side becomes the crop size.
        assert_eq!(geometry(60, 30, 16, 20, 24), ([48, 24], [12, 2]));
        // 0: straight to the input size, no crop.
        assert_eq!(geometry(500, 375, 0, 227, 227), ([227, 227], [0, 0]));
    }

    #[test]
    fn crop_takes_the_centre_without_resizing() {
        // A 9x5 gradient, shorter side already 5: no resampling, crop 5x5 from column 2.
        let img = ImageBuffer::from_fn(9, 5, |x, y| Luma([(x * 20 + y) as u8]));
        let png = encode(DynamicImage::ImageLuma8(img), ImageFormat::Png);
        let x = preprocess_bytes(&png, "g", &raw(ColorOrder::Rgb, 5), [3, 5, 5]).unwrap();
        for c in 0..3 {
            for y in 0..5 {
                for col in 0..5 {
                    assert_eq!(x[c * 25 + y * 5 + col], ((col + 2) * 20 + y) as f32);
                }
            }
        }
    }

    #[test]
    fn downscale_averages_like_antialiased_bilinear() {
        // Halving a 2-column checker of 0/200 columns gives PIL's 1/4, 1/2, 1/4 blend.
        let img = ImageBuffer::from_fn(8, 8, |x, _| Luma([if x % 2 == 0 { 0u8 } else { 200 }]));
        let png = encode(DynamicImage::ImageLuma8(img), ImageFormat::Png);
        let x = preprocess_bytes(&png, "c", &raw(ColorOrder::Rgb, 0), [3, 4, 4]).unwrap();
        // Interior columns span 4 source columns with weights 1/8, 3/8, 3/8, 1/8: 100. The
        // border columns lose a tap (weights 3/7, 3/7, 1/7): 86 and 114.
        assert_eq!(&x[..4], &[86.0, 100.0, 100.0, 114.0]);
        // A constant image stays constant through any resize.
        let flat = encode(solid(37, 23, [10, 20, 30]), ImageFormat::Png);
        let y = preprocess_bytes(&flat, "f", &raw(ColorOrder::Rgb, 50), [3, 17, 19]).unwrap();
        assert!(y[..323].iter().all(|&v| v == 10.0) && y[646..].iter().all(|&v| v == 30.0));
    }

    #[test]
    fn colour_types_are_converted() {
        let tv = raw(ColorOrder::Rgb, 8);
        // Grey: replicated into all three channels.
        let gray = encode(DynamicImage::ImageLuma8(ImageBuffer::from_pixel(8, 8, Luma([77u8]))), ImageFormat::Png);
        let g = preprocess_bytes(&gray, "g", &tv, [3, 8, 8]).unwrap();
        assert!(g.iter().all(|&v| v == 77.0));
        // Grey + alpha and RGBA: alpha dropped, colour kept.
        let la = ImageBuffer::from_pixel(8, 8, LumaA([50u8, 0]));
        let la =
            preprocess_bytes(&encode(DynamicImage::ImageLumaA8(la), ImageFormat::Png), "la", &tv, [3, 8, 8]).unwrap();
        assert!(la.iter().all(|&v| v == 50.0));
        let rgba = ImageBuffer::from_pixel(8, 8, Rgba([1u8, 2, 3, 0]));
        let x =
            preprocess_bytes(&encode(DynamicImage::ImageRgba8(rgba), ImageFormat::Png), "a", &tv, [3, 8, 8]).unwrap();
        assert_eq!([x[0], x[64], x[128]], [1.0, 2.0, 3.0]);
        // 16-bit grey: rounded to 8 bits (65535 -> 255, 257 * 40 -> 40).
        let g16 = ImageBuffer::from_fn(8, 8, |x, _| Luma([if x < 4 { 65535u16 } else { 257 * 40 }]));
        let x =
            preprocess_bytes(&encode(DynamicImage::ImageLuma16(g16), ImageFormat::Png), "16", &tv, [3, 8, 8]).unwrap();
        assert_eq!((x[0], x[7]), (255.0, 40.0));
        // 16-bit RGBA.
        let rgba16 = ImageBuffer::from_pixel(8, 8, Rgba([65535u16, 0, 32896, 65535]));
        let x = preprocess_bytes(&encode(DynamicImage::ImageRgba16(rgba16), ImageFormat::Png), "16a", &tv, [3, 8, 8])
            .unwrap();
        assert_eq!([x[0], x[64], x[128]], [255.0, 0.0, 128.0]);
    }

    #[test]
    fn jpeg_decodes_and_keeps_channel_order() {
        let jpg = encode(solid(48, 32, [255, 0, 0]), ImageFormat::Jpeg);
        let x = preprocess_bytes(&jpg, "j", &raw(ColorOrder::Bgr, 32), [3, 32, 32]).unwrap();
        // Lossy: within a few levels of (0, 0, 255) in BGR order.
        assert!(x[..2048].iter().all(|&v| v < 8.0));
        assert!(x[2048..].iter().all(|&v| v > 247.0));
        let gray = encode(DynamicImage::ImageLuma8(ImageBuffer::from_pixel(16, 16, Luma([90u8]))), ImageFormat::Jpeg);
        let g = preprocess_bytes(&gray, "jg", &raw(ColorOrder::Rgb, 16), [3, 16, 16]).unwrap();
        assert!(g.iter().all(|&v| (v - 90.0).abs() <= 2.0));
    }

    #[test]
    fn bad_bytes_are_refused() {
        let pre = raw(ColorOrder::Rgb, 16);
        let shape = [3, 16, 16];
        assert!(image_err(preprocess_bytes(b"", "e", &pre, shape)).contains("empty"));
        assert!(image_err(preprocess_bytes(b"hello, world", "t", &pre, shape)).contains("not a JPEG or PNG"));
        // GIF magic: recognised but not supported.
        assert!(image_err(preprocess_bytes(b"GIF89a\x01\x00\x01\x00", "g", &pre, shape)).contains("not supported"));
        let png = encode(solid(64, 64, [9, 9, 9]), ImageFormat::Png);
        let jpg = encode(solid(64, 64, [9, 9, 9]), ImageFormat::Jpeg);
        for data in [&png, &jpg] {
            // Every truncation point, from just the magic to one byte short.
            for cut in (4..data.len() - 1).step_by(7) {
                image_err(preprocess_bytes(&data[..cut], "cut", &pre, shape));
            }
        }
        // Corrupt payloads: flip bytes after the headers (either refused or decoded; never a
        // panic). The PNG checks CRCs, so a flipped data byte must be refused.
        let mut bad = png.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        image_err(preprocess_bytes(&bad, "crc", &pre, shape));
        let mut bad = jpg.clone();
        for i in (20..bad.len()).step_by(3) {
            bad[i] = bad[i].wrapping_mul(31).wrapping_add(7);
        }
        let _ = preprocess_bytes(&bad, "garbled", &pre, shape);
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }

    /// A valid PNG whose IHDR claims `w x h` (with a valid CRC) and whose pixel data is
    /// a single tiny IDAT.
    fn png_claiming(w: u32, h: u32, color_type: u8) -> Vec<u8> {
        let mut png = encode(solid(1, 1, [0, 0, 0]), ImageFormat::Png);
        // Signature (8) + length (4) + "IHDR" (4): width at 16, height at 20, colour at 25.
        png[16..20].copy_from_slice(&w.to_be_bytes());
        png[20..24].copy_from_slice(&h.to_be_bytes());
        png[25] = color_type;
        let crc = crc32(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        png
    }

    #[test]
    fn decompression_bombs_are_refused() {
        let pre = raw(ColorOrder::Rgb, 16);
        let big = image_err(preprocess_bytes(&png_claiming(100_000, 100_000, 2), "bomb", &pre, [3, 16, 16]));
        assert!(big.contains("too large"), "{big}");
        // Within the side limit but over the byte budget (16000^2 RGB + its copy).
        let over = image_err(preprocess_bytes(&png_claiming(16_000, 16_000, 2), "bomb", &pre, [3, 16, 16]));
        assert!(over.contains("above the limit"), "{over}");
        // 12000^2 grey is 144 MB, but with the RGB copy 576 MB: still refused.
        let gray = image_err(preprocess_bytes(&png_claiming(12_000, 12_000, 0), "bomb", &pre, [3, 16, 16]));
        assert!(gray.contains("above the limit"), "{gray}");
    }

    #[test]
    fn input_shape_and_files_are_checked() {
        let png = encode(solid(8, 8, [1, 2, 3]), ImageFormat::Png);
        let pre = raw(ColorOrder::Rgb, 8);
        assert!(matches!(preprocess_bytes(&png, "c", &pre, [2, 8, 8]), Err(Error::InvalidArgument(_))));
        // One channel: PIL's grey of (1, 2, 3) is (1*19595 + 2*38470 + 3*7471 + 32768) >> 16 = 2.
        let grey = preprocess_bytes(&png, "g", &pre, [1, 8, 8]).unwrap();
        assert_eq!(grey, vec![2.0; 64]);
        assert!(matches!(preprocess_bytes(&png, "z", &pre, [3, 0, 8]), Err(Error::InvalidArgument(_))));
        let dir = std::env::temp_dir();
        assert!(matches!(load_image(&dir, &pre, [3, 8, 8]), Err(Error::NotRegularFile(_))));
        let missing = dir.join("alexnet-image-test-no-such-file.png");
        assert!(matches!(load_image(&missing, &pre, [3, 8, 8]), Err(Error::Io { .. })));
        let file = dir.join(format!("alexnet-image-test-{}.png", std::process::id()));
        std::fs::write(&file, &png).unwrap();
        let x = load_image(&file, &pre, [3, 8, 8]);
        std::fs::remove_file(&file).unwrap();
        assert_eq!(x.unwrap()[..1], [1.0]);
    }

    #[test]
    fn extreme_aspect_ratio_allocates_only_the_crop() {
        // 1 x 4000: the resized image would be 256 x 1_024_000; only the crop is computed.
        let img = ImageBuffer::from_fn(1, 4000, |_, y| Luma([(y % 251) as u8]));
        let png = encode(DynamicImage::ImageLuma8(img), ImageFormat::Png);
        let x = preprocess_bytes(&png, "thin", &raw(ColorOrder::Rgb, 256), [3, 224, 224]).unwrap();
        assert_eq!(x.len(), 3 * 224 * 224);
        assert!(x.iter().all(|v| (0.0..=255.0).contains(v)));
    }
}
