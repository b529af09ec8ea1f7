//! The image front end on hostile and unusual files (the "Images" section of
//! `docs/reliability.md`): corrupt, truncated, empty and oversized images, decompression
//! bombs, and the colour types the front end converts. Every refusal must be
//! `Error::Image` (or the file-level `Io` / `NotRegularFile`), never a panic, and a bomb
//! must be refused from its header, before the pixels are inflated.
#![cfg(feature = "image")]

mod common;

use alexnet::image::{load_image, preprocess_bytes, MAX_IMAGE_SIDE};
use alexnet::plan::{ColorOrder, Preprocess};
use alexnet::Error;

/// Identity preprocessing: outputs are the 0..255 pixel values themselves.
fn raw() -> Preprocess {
    Preprocess { color: ColorOrder::Rgb, scale: 1.0, mean: [0.0; 3], std: [1.0; 3], resize_shorter: 16 }
}

const SHAPE: [usize; 3] = [3, 16, 16];

/// The reason of an `Error::Image`; anything else fails the test.
fn image_reason(r: alexnet::Result<Vec<f32>>, what: &str) -> String {
    match r {
        Err(Error::Image { reason, .. }) => {
            assert!(!reason.contains('\n'), "{what}: reason spans lines: {reason:?}");
            reason
        }
        other => panic!("{what}: expected Error::Image, got {:?}", other.map(|v| v.len())),
    }
}

fn encode(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, format).expect("encode");
    buf.into_inner()
}

#[test]
fn hand_built_pngs_decode_when_honest() {
    // Positive controls for the bomb builders: the same generator at a small size is a
    // valid image of black pixels, so a refusal below is the budget, not bad encoding.
    for (w, h, depth, color) in [(64, 48, 1, 0), (300, 200, 8, 2), (17, 5, 16, 6), (40, 40, 8, 4)] {
        let png = common::png_zeros(w, h, depth, color);
        let x = preprocess_bytes(&png, "zeros", &raw(), SHAPE)
            .unwrap_or_else(|e| panic!("{w}x{h} depth {depth} colour {color}: {e}"));
        assert_eq!(x.len(), 3 * 16 * 16);
        assert!(x.iter().all(|&v| v == 0.0), "{w}x{h} depth {depth} colour {color}: not black");
    }
}

#[test]
fn png_decompression_bombs_are_refused_from_the_header() {
    // A header claiming 100000 x 100000 over a one-row payload.
    let liar = common::png(100_000, 100_000, 8, 2, &common::zlib_zeros(4));
    let reason = image_reason(preprocess_bytes(&liar, "liar", &raw(), SHAPE), "100000^2 header");
    assert!(reason.contains("too large") || reason.contains("above the limit"), "{reason}");
    // Fully valid deflate data: ~210 KB that inflates to 16384^2 one-bit pixels (a
    // 268 MB grey image, 805 MB as RGB), within the side limit but over the byte budget.
    let side = MAX_IMAGE_SIDE;
    let bomb = common::png_zeros(side, side, 1, 0);
    assert!(bomb.len() < 300_000, "bomb is {} bytes", bomb.len());
    let reason = image_reason(preprocess_bytes(&bomb, "bomb", &raw(), SHAPE), "16384^2 bomb");
    assert!(reason.contains("above the limit"), "{reason}");
    // One pixel over the side limit, in a thin strip that would fit the byte budget.
    let strip = common::png_zeros(side + 1, 1, 8, 0);
    let reason = image_reason(preprocess_bytes(&strip, "strip", &raw(), SHAPE), "over-wide strip");
    assert!(reason.contains("too large"), "{reason}");
    // The same strip at the limit decodes.
    assert!(preprocess_bytes(&common::png_zeros(side, 1, 8, 0), "strip", &raw(), SHAPE).is_ok());
}

#[test]
fn jpeg_claiming_a_huge_frame_is_refused() {
    // The control: the unedited size decodes.
    assert!(preprocess_bytes(&common::jpeg_claiming(16, 16), "j", &raw(), SHAPE).is_ok());
    for (w, h) in [(65_500, 65_500), (MAX_IMAGE_SIDE as u16 + 1, 8), (16_000, 16_000)] {
        let jpg = common::jpeg_claiming(w, h);
        let reason = image_reason(preprocess_bytes(&jpg, "j", &raw(), SHAPE), &format!("jpeg {w}x{h}"));
        assert!(reason.contains("too large") || reason.contains("above the limit"), "{w}x{h}: {reason}");
    }
    // A frame of zero height is refused too (not decoded into an empty image).
    image_reason(preprocess_bytes(&common::jpeg_claiming(16, 0), "j", &raw(), SHAPE), "jpeg 16x0");
}

#[test]
fn corrupt_and_truncated_images_are_image_errors() {
    let png = common::png_zeros(32, 32, 8, 2);
    let jpg = common::jpeg_claiming(16, 16);
    // Every truncation point of both formats. The one exception: a PNG cut inside the
    // CRC of its IEND trailer (every pixel and the end marker present) decodes as whole.
    let iend_crc = png.len() - 4;
    for (name, data, end) in [("png", &png, iend_crc), ("jpeg", &jpg, jpg.len())] {
        for cut in 0..end {
            image_reason(preprocess_bytes(&data[..cut], name, &raw(), SHAPE), &format!("{name} cut at {cut}"));
        }
    }
    for cut in iend_crc..png.len() {
        assert!(preprocess_bytes(&png[..cut], "png", &raw(), SHAPE).unwrap().iter().all(|&v| v == 0.0));
    }
    // PNG: a bad CRC, a zero-size header, an invalid bit depth, a zlib stream that ends early.
    let mut crc = png.clone();
    crc[29] ^= 1;
    image_reason(preprocess_bytes(&crc, "crc", &raw(), SHAPE), "png bad CRC");
    image_reason(preprocess_bytes(&common::png(0, 0, 8, 2, &common::zlib_zeros(0)), "z", &raw(), SHAPE), "0x0 png");
    image_reason(preprocess_bytes(&common::png(4, 4, 7, 2, &common::zlib_zeros(52)), "d", &raw(), SHAPE), "depth 7");
    let short = common::png(32, 32, 8, 2, &common::zlib_zeros(100));
    image_reason(preprocess_bytes(&short, "short", &raw(), SHAPE), "png with short data");
    // JPEG: the scan overwritten with garbage must not panic (decoded or refused).
    let mut garbled = jpg.clone();
    let sos = garbled.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    let end = garbled.len() - 2;
    for b in &mut garbled[sos + 14..end] {
        *b = b.wrapping_mul(37).wrapping_add(11) & 0x7F; // no 0xFF: the marker walk stays valid
    }
    let _ = preprocess_bytes(&garbled, "garbled", &raw(), SHAPE);
    // Start-of-image only, and unrelated formats.
    image_reason(preprocess_bytes(&[0xFF, 0xD8], "soi", &raw(), SHAPE), "SOI only");
    image_reason(preprocess_bytes(b"", "empty", &raw(), SHAPE), "empty");
    image_reason(preprocess_bytes(b"BM\x00\x00\x00\x00", "bmp", &raw(), SHAPE), "bmp magic");
}

#[test]
fn colour_types_and_depths_are_converted_as_documented() {
    use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, LumaA, Rgb, Rgba};
    let pre = raw();
    let px = |img: DynamicImage| {
        let x = preprocess_bytes(&encode(img, ImageFormat::Png), "c", &pre, SHAPE).unwrap();
        [x[0], x[256], x[512]]
    };
    // Grey replicated, alpha dropped (not composited), 16 bits rounded to 8.
    assert_eq!(px(DynamicImage::ImageLuma8(ImageBuffer::from_pixel(16, 16, Luma([77])))), [77.0; 3]);
    assert_eq!(px(DynamicImage::ImageLumaA8(ImageBuffer::from_pixel(16, 16, LumaA([60, 0])))), [60.0; 3]);
    assert_eq!(px(DynamicImage::ImageRgba8(ImageBuffer::from_pixel(16, 16, Rgba([1, 2, 3, 0])))), [1.0, 2.0, 3.0]);
    assert_eq!(px(DynamicImage::ImageLuma16(ImageBuffer::from_pixel(16, 16, Luma([257 * 9])))), [9.0; 3]);
    let rgb16 = ImageBuffer::from_pixel(16, 16, Rgb([65535u16, 257 * 100, 0]));
    assert_eq!(px(DynamicImage::ImageRgb16(rgb16)), [255.0, 100.0, 0.0]);
    let rgba16 = ImageBuffer::from_pixel(16, 16, Rgba([0u16, 257 * 5, 65535, 0]));
    assert_eq!(px(DynamicImage::ImageRgba16(rgba16)), [0.0, 5.0, 255.0]);
    // Grey JPEG.
    let gray = encode(DynamicImage::ImageLuma8(ImageBuffer::from_pixel(16, 16, Luma([120u8]))), ImageFormat::Jpeg);
    let x = preprocess_bytes(&gray, "g", &pre, SHAPE).unwrap();
    assert!(x.iter().all(|&v| (v - 120.0).abs() <= 2.0));
    // Palette and 1-bit grey PNGs from the hand-built writer (black).
    assert!(preprocess_bytes(&common::png_zeros(16, 16, 1, 0), "bit", &pre, SHAPE).unwrap().iter().all(|&v| v == 0.0));
}

#[test]
fn image_files_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let pre = raw();
    let empty = dir.path().join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    image_reason(load_image(&empty, &pre, SHAPE), "empty file");
    let bomb = dir.path().join("bomb.png");
    std::fs::write(&bomb, common::png_zeros(MAX_IMAGE_SIDE, MAX_IMAGE_SIDE, 1, 0)).unwrap();
    image_reason(load_image(&bomb, &pre, SHAPE), "bomb file");
    assert!(matches!(load_image(dir.path(), &pre, SHAPE), Err(Error::NotRegularFile(_))));
    assert!(matches!(load_image(dir.path().join("missing.png"), &pre, SHAPE), Err(Error::Io { .. })));
    // A path through a regular file (ENOTDIR): an I/O error.
    assert!(matches!(load_image(empty.join("x.png"), &pre, SHAPE), Err(Error::Io { .. })));
    #[cfg(unix)]
    assert!(matches!(load_image("/dev/zero", &pre, SHAPE), Err(Error::NotRegularFile(_))));
    // A network that takes neither 3 (colour) nor 1 (grey) channels.
    let ok = dir.path().join("ok.png");
    std::fs::write(&ok, common::png_zeros(8, 8, 8, 2)).unwrap();
    assert!(matches!(load_image(&ok, &pre, [2, 16, 16]), Err(Error::InvalidArgument(_))));
    assert_eq!(load_image(&ok, &pre, SHAPE).unwrap().len(), 3 * 16 * 16);
}

/// PIL's preprocessing of the committed images (`tools/make_image_fixtures.py`): the
/// resize is PIL's own fixed-point arithmetic, so PNGs (lossless) match bit for bit.
/// JPEGs match bit for bit with the `turbojpeg` feature (libjpeg-turbo, PIL's decoder);
/// image-rs's decoder differs from it by a few levels on some pixels, the bound below.
#[test]
fn preprocessing_matches_pil_on_committed_images() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images");
    let pre = Preprocess { resize_shorter: 40, ..Preprocess::caffe() };
    for name in ["up.png", "down.png", "grey.png", "photo.jpg"] {
        let got = alexnet::image::load_image(dir.join(name), &pre, [3, 35, 35]).unwrap();
        let stem = name.split('.').next().unwrap();
        let want = alexnet::npy::read(&dir.join(format!("{stem}.npy"))).unwrap();
        assert_eq!(want.shape, vec![3, 35, 35], "{name}");
        let worst = got.iter().zip(&want.data).map(|(g, w)| (g - w).abs()).fold(0.0f32, f32::max);
        assert_eq!(worst, 0.0, "{name}: differs from PIL by up to {worst}");
    }
    // A grey (1-channel) network: PIL's convert("L"), then the same pipeline.
    let got = alexnet::image::load_image(dir.join("down.png"), &pre, [1, 35, 35]).unwrap();
    let want = alexnet::npy::read(&dir.join("down_grey.npy")).unwrap();
    assert_eq!(want.shape, vec![1, 35, 35]);
    assert!(got.iter().zip(&want.data).all(|(g, w)| g == w), "grey preprocessing differs from PIL's");
}
