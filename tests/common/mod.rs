//! Hand-built hostile images shared by the image and CLI tests: PNG chunks with correct
//! CRCs, valid zlib streams that expand a few hundred kilobytes into a huge image
//! (decompression bombs), and JPEGs whose frame header claims another size. Nothing here
//! allocates the image it describes.
#![allow(dead_code)] // each test binary uses a different subset

/// CRC-32 (IEEE, reflected), as PNG chunks carry it.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Append one PNG chunk (length, type, data, CRC over type and data).
pub fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A PNG with the given IHDR fields and one IDAT holding `zlib` (not checked against the
/// header: a mismatch is how a lying header is built).
pub fn png(width: u32, height: u32, bit_depth: u8, color_type: u8, zlib: &[u8]) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[bit_depth, color_type, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", zlib);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// LSB-first bit writer for a deflate stream.
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    fn put(&mut self, value: u32, bits: u32) {
        self.acc |= u64::from(value) << self.n;
        self.n += bits;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }
    /// A Huffman code, which deflate stores most significant bit first.
    fn code(&mut self, code: u32, len: u32) {
        self.put(code.reverse_bits() >> (32 - len), len);
    }
}

/// A valid zlib stream of `n` zero bytes: one fixed-Huffman block, a literal zero and
/// then matches of 258 bytes at distance 1 (13 bits each, a ratio of about 160:1).
pub fn zlib_zeros(n: u64) -> Vec<u8> {
    let mut bits = Bits { out: vec![0x78, 0x01], acc: 0, n: 0 };
    bits.put(1, 1); // BFINAL
    bits.put(1, 2); // BTYPE = fixed Huffman
    let mut left = n;
    if left > 0 {
        bits.code(0x30, 8); // literal 0
        left -= 1;
    }
    while left >= 258 {
        bits.code(0xC5, 8); // length code 285: 258 bytes
        bits.code(0, 5); // distance code 0: distance 1
        left -= 258;
    }
    for _ in 0..left {
        bits.code(0x30, 8);
    }
    bits.code(0, 7); // end of block
    bits.put(0, 7); // flush to a byte boundary
    let mut out = bits.out;
    // Adler-32 of n zeros: a stays 1, b grows by 1 per byte.
    let adler = ((n % 65_521) as u32) << 16 | 1;
    out.extend_from_slice(&adler.to_be_bytes());
    out
}

/// A complete, valid PNG of `width x height` black pixels whose compressed data is a
/// tiny fraction of the decoded size.
pub fn png_zeros(width: u32, height: u32, bit_depth: u8, color_type: u8) -> Vec<u8> {
    let channels: u64 = match color_type {
        0 | 3 => 1,
        4 => 2,
        2 => 3,
        _ => 4,
    };
    let row = 1 + (u64::from(width) * channels * u64::from(bit_depth)).div_ceil(8);
    png(width, height, bit_depth, color_type, &zlib_zeros(row * u64::from(height)))
}

/// A small valid JPEG (encoded by the `image` crate) whose start-of-frame header is then
/// edited to claim `width x height`.
pub fn jpeg_claiming(width: u16, height: u16) -> Vec<u8> {
    let img = image::DynamicImage::ImageRgb8(image::ImageBuffer::from_pixel(16, 16, image::Rgb([90u8, 10, 200])));
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Jpeg).expect("encode jpeg");
    let mut jpg = buf.into_inner();
    // SOF0: FF C0, length (2), precision (1), height (2), width (2).
    let sof = jpg.windows(2).position(|w| w == [0xFF, 0xC0]).expect("baseline JPEG has SOF0");
    jpg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    jpg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    jpg
}
