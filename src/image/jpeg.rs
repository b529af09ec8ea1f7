//! A JPEG decoder that gives the pixels libjpeg-turbo gives with its default settings
//! (what PIL, and so torchvision's and most Python pipelines' preprocessing, decode with):
//! the accurate integer IDCT ("islow"), "fancy" triangular chroma upsampling, and
//! fixed-point YCbCr to RGB with the same tables and rounding. Other decoders are
//! equally valid JPEG decoders, but differ from it by a few levels per value, which moves
//! near-tied scores; with this one an evaluation here gives the accuracy the reference
//! pipeline gives, image for image.
//!
//! Scope: 8-bit Huffman-coded frames, baseline, extended and progressive, one (grey) or
//! three (YCbCr, or RGB by the Adobe marker or component ids) components, any integral
//! sampling factors, restart intervals. Anything else (CMYK and YCCK, arithmetic coding,
//! lossless, 12-bit) is [`Outcome::Unsupported`] and goes to the general decoder.
//!
//! Every length, table index and size is checked before it is used; the coefficient
//! buffers are sized from the frame header after it is checked against the caller's
//! limits. Entropy-coded data that ends early, or hits a marker, reads as zero bits (as
//! libjpeg does); the caller has already refused files without an end-of-image marker.
#![forbid(unsafe_code)]

use ::image::RgbImage;

/// Why a file was not decoded here.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// A kind of JPEG this decoder does not handle: let the general decoder try.
    Unsupported,
    /// Corrupt or over the limits, with a one-line reason.
    Failed(String),
}

fn corrupt(what: &str) -> Outcome {
    Outcome::Failed(format!("corrupt JPEG data: {what}"))
}

/// Position in the zig-zag scan -> position in the 8x8 block (row-major).
const ZIGZAG: [u8; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
    28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54,
    47, 55, 62, 63,
];

/// Natural position of zig-zag index `k`; indices past 63 (corrupt run lengths) land on
/// the last coefficient, as in libjpeg.
fn natural(k: usize) -> usize {
    ZIGZAG[k.min(63)] as usize
}

/// A Huffman table: a 9-bit lookup for short codes, canonical limits for the rest.
#[derive(Clone)]
struct Huffman {
    /// `(length << 8) | symbol` for codes of at most `LOOKUP` bits, 0 where none.
    fast: Vec<u16>,
    /// Per code length l (1..=16): the largest code of that length + 1 (as l-bit values),
    /// and the index into `symbols` of its first code minus that first code.
    maxcode: [i32; 18],
    offset: [i32; 17],
    symbols: Vec<u8>,
}

const LOOKUP: u32 = 9;

impl Huffman {
    fn new(counts: &[u8; 16], symbols: &[u8]) -> Result<Huffman, Outcome> {
        let mut fast = vec![0u16; 1 << LOOKUP];
        let (mut maxcode, mut offset) = ([-1i32; 18], [0i32; 17]);
        let (mut code, mut k) = (0i32, 0usize);
        for len in 1..=16usize {
            let n = counts[len - 1] as usize;
            offset[len] = k as i32 - code;
            for _ in 0..n {
                if len as u32 <= LOOKUP {
                    let shift = LOOKUP - len as u32;
                    let first = (code as usize) << shift;
                    for e in fast.iter_mut().skip(first).take(1 << shift) {
                        *e = ((len as u16) << 8) | symbols[k] as u16;
                    }
                }
                code += 1;
                k += 1;
            }
            if code > 1 << len {
                return Err(corrupt("bad Huffman table"));
            }
            maxcode[len] = code;
            code <<= 1;
        }
        maxcode[17] = i32::MAX;
        Ok(Huffman { fast, maxcode, offset, symbols: symbols.to_vec() })
    }
}

/// Entropy-coded bits, most significant first, with `FF 00` unstuffed. A marker (or the
/// end of the data) stops the reading; from there on every bit is zero.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    n: u32,
    at_marker: bool,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8], pos: usize) -> Bits<'a> {
        Bits { data, pos, acc: 0, n: 0, at_marker: false }
    }

    #[inline]
    fn fill(&mut self) {
        while self.n <= 56 {
            let mut byte = 0u64;
            if !self.at_marker {
                match self.data.get(self.pos) {
                    Some(&0xFF) if self.data.get(self.pos + 1) == Some(&0) => {
                        byte = 0xFF;
                        self.pos += 2;
                    }
                    Some(&0xFF) | None => self.at_marker = true,
                    Some(&b) => {
                        byte = b as u64;
                        self.pos += 1;
                    }
                }
            }
            self.acc |= byte << (56 - self.n);
            self.n += 8;
        }
    }

    #[inline]
    fn get(&mut self, k: u32) -> i32 {
        if k == 0 {
            return 0;
        }
        if self.n < k {
            self.fill();
        }
        let v = (self.acc >> (64 - k)) as i32;
        self.acc <<= k;
        self.n -= k;
        v
    }

    #[inline]
    fn bit(&mut self) -> bool {
        self.get(1) != 0
    }

    /// `s` more bits as a signed coefficient (the JPEG "extend" rule).
    #[inline]
    fn receive_extend(&mut self, s: u32) -> i32 {
        if s == 0 {
            return 0;
        }
        let v = self.get(s);
        if v < 1 << (s - 1) {
            v - (1 << s) + 1
        } else {
            v
        }
    }

    /// One symbol; an invalid code reads as symbol 0, as in libjpeg.
    #[inline]
    fn decode(&mut self, h: &Huffman) -> u8 {
        if self.n < 16 {
            self.fill();
        }
        let e = h.fast[(self.acc >> (64 - LOOKUP)) as usize];
        if e != 0 {
            let len = (e >> 8) as u32;
            self.acc <<= len;
            self.n -= len;
            return e as u8;
        }
        for len in LOOKUP as usize + 1..=16 {
            let code = (self.acc >> (64 - len)) as i32;
            if code < h.maxcode[len] {
                self.acc <<= len;
                self.n -= len as u32;
                return h.symbols.get((code + h.offset[len]) as usize).copied().unwrap_or(0);
            }
        }
        self.acc <<= 16;
        self.n -= 16;
        0
    }

    /// At a restart: drop the buffered bits and step over the RSTn marker if it is there.
    fn restart(&mut self) {
        self.acc = 0;
        self.n = 0;
        let mut p = self.pos;
        while self.data.get(p) == Some(&0xFF) {
            p += 1;
        }
        if p > self.pos && matches!(self.data.get(p), Some(0xD0..=0xD7)) {
            self.pos = p + 1;
            self.at_marker = false;
        }
    }
}

/// One colour component of the frame and its coefficients.
struct Component {
    id: u8,
    h: usize,
    v: usize,
    tq: usize,
    /// The quantisation table, latched when the component's first scan starts.
    quant: Option<[u16; 64]>,
    /// Blocks per row and rows of blocks held (whole MCUs).
    bw: usize,
    bh: usize,
    /// Samples per row and rows of the component's real (downsampled) image.
    dw: usize,
    dh: usize,
    coefs: Vec<i16>,
    pred: i32,
}

impl Component {
    fn block(&mut self, bx: usize, by: usize) -> &mut [i16] {
        let at = (by * self.bw + bx) * 64;
        &mut self.coefs[at..at + 64]
    }
}

struct Frame {
    width: usize,
    height: usize,
    progressive: bool,
    hmax: usize,
    vmax: usize,
    mcux: usize,
    mcuy: usize,
    comps: Vec<Component>,
}

/// Decode `bytes` (a whole JPEG file) to 8-bit RGB.
pub(crate) fn decode(bytes: &[u8], max_side: u32, max_bytes: u64) -> Result<RgbImage, Outcome> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err(corrupt("no start-of-image marker"));
    }
    let mut quant: [Option<[u16; 64]>; 4] = [None; 4];
    let mut dc: [Option<Huffman>; 4] = [None, None, None, None];
    let mut ac: [Option<Huffman>; 4] = [None, None, None, None];
    let mut frame: Option<Frame> = None;
    let (mut jfif, mut adobe) = (false, None::<u8>);
    let mut restart_interval = 0usize;
    let mut saw_scan = false;
    let mut i = 2;
    loop {
        if bytes.get(i) != Some(&0xFF) {
            return Err(corrupt("expected a marker"));
        }
        while bytes.get(i) == Some(&0xFF) {
            i += 1;
        }
        let marker = *bytes.get(i).ok_or_else(|| corrupt("truncated"))?;
        i += 1;
        match marker {
            0xD9 => break,
            0xD0..=0xD7 | 0x01 => continue,
            _ => {}
        }
        let len = match bytes.get(i..i + 2) {
            Some(&[a, b]) => u16::from_be_bytes([a, b]) as usize,
            _ => return Err(corrupt("truncated segment")),
        };
        let seg = bytes.get(i + 2..i + len).filter(|_| len >= 2).ok_or_else(|| corrupt("truncated segment"))?;
        i += len;
        match marker {
            0xC0..=0xC2 => {
                if frame.is_some() {
                    return Err(corrupt("two frames"));
                }
                frame = Some(parse_frame(seg, marker == 0xC2, max_side, max_bytes)?);
            }
            // Lossless, hierarchical and arithmetic-coded frames.
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return Err(Outcome::Unsupported),
            0xC4 => parse_huffman(seg, &mut dc, &mut ac)?,
            0xDB => parse_quant(seg, &mut quant)?,
            0xDD => {
                let &[a, b] = seg.get(..2).and_then(|s| <&[u8; 2]>::try_from(s).ok()).ok_or_else(|| corrupt("DRI"))?;
                restart_interval = u16::from_be_bytes([a, b]) as usize;
            }
            0xE0 => jfif |= seg.starts_with(b"JFIF\0"),
            0xEE if seg.starts_with(b"Adobe") && seg.len() >= 12 => adobe = Some(seg[11]),
            0xDA => {
                let f = frame.as_mut().ok_or_else(|| corrupt("scan before the frame header"))?;
                let end = decode_scan(bytes, i, seg, f, &quant, &dc, &ac, restart_interval)?;
                i = end;
                saw_scan = true;
            }
            _ => {}
        }
    }
    let f = frame.ok_or_else(|| corrupt("no frame header"))?;
    if !saw_scan {
        return Err(corrupt("no scan"));
    }
    let rgb_ids = f.comps.len() == 3 && f.comps.iter().map(|c| c.id).eq(*b"RGB");
    let is_rgb = match adobe {
        Some(t) => t == 0 && f.comps.len() == 3,
        None => !jfif && rgb_ids,
    };
    finish(f, is_rgb)
}

fn parse_frame(seg: &[u8], progressive: bool, max_side: u32, max_bytes: u64) -> Result<Frame, Outcome> {
    let &[precision, h1, h0, w1, w0, n, ref rest @ ..] = seg else { return Err(corrupt("short frame header")) };
    let (height, width) = (u16::from_be_bytes([h1, h0]) as usize, u16::from_be_bytes([w1, w0]) as usize);
    if precision != 8 || !(n == 1 || n == 3) || height == 0 {
        // 12-bit, CMYK, or a height given later by a DNL marker.
        return Err(Outcome::Unsupported);
    }
    if width == 0 {
        return Err(corrupt("zero width"));
    }
    if width > max_side as usize || height > max_side as usize {
        return Err(Outcome::Failed(format!(
            "image of {width}x{height} pixels is too large (each side at most {max_side})"
        )));
    }
    let n = n as usize;
    if rest.len() < 3 * n {
        return Err(corrupt("short frame header"));
    }
    let mut comps = Vec::with_capacity(n);
    for c in rest.chunks_exact(3).take(n) {
        let (h, v) = ((c[1] >> 4) as usize, (c[1] & 15) as usize);
        if !(1..=4).contains(&h) || !(1..=4).contains(&v) || c[2] > 3 {
            return Err(corrupt("bad sampling factors or table"));
        }
        if comps.iter().any(|k: &Component| k.id == c[0]) {
            return Err(corrupt("repeated component id"));
        }
        comps.push(Component {
            id: c[0],
            h,
            v,
            tq: c[2] as usize,
            quant: None,
            bw: 0,
            bh: 0,
            dw: 0,
            dh: 0,
            coefs: Vec::new(),
            pred: 0,
        });
    }
    let hmax = comps.iter().map(|c| c.h).max().unwrap_or(1);
    let vmax = comps.iter().map(|c| c.v).max().unwrap_or(1);
    let (mcux, mcuy) = (width.div_ceil(8 * hmax), height.div_ceil(8 * vmax));
    // Coefficients (2 bytes each) and the decoded planes, against the budget.
    let mut need = 3 * width as u64 * height as u64;
    for c in &comps {
        let blocks = (mcux * c.h) as u64 * (mcuy * c.v) as u64;
        need += blocks * 64 * 3;
        if hmax % c.h != 0 || vmax % c.v != 0 {
            return Err(Outcome::Unsupported);
        }
    }
    if need > max_bytes {
        return Err(Outcome::Failed(format!(
            "image of {width}x{height} pixels is too large to decode ({need} bytes, above the limit of {max_bytes})"
        )));
    }
    for c in &mut comps {
        c.bw = mcux * c.h;
        c.bh = mcuy * c.v;
        c.dw = (width * c.h).div_ceil(hmax);
        c.dh = (height * c.v).div_ceil(vmax);
        c.coefs = vec![0; c.bw * c.bh * 64];
    }
    Ok(Frame { width, height, progressive, hmax, vmax, mcux, mcuy, comps })
}

fn parse_huffman(mut seg: &[u8], dc: &mut [Option<Huffman>; 4], ac: &mut [Option<Huffman>; 4]) -> Result<(), Outcome> {
    while !seg.is_empty() {
        let class_id = seg[0];
        let counts: [u8; 16] = seg.get(1..17).and_then(|s| s.try_into().ok()).ok_or_else(|| corrupt("short DHT"))?;
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        let symbols = seg.get(17..17 + total).filter(|_| total <= 256).ok_or_else(|| corrupt("short DHT"))?;
        let (class, id) = ((class_id >> 4) as usize, (class_id & 15) as usize);
        if class > 1 || id > 3 {
            return Err(corrupt("bad Huffman table id"));
        }
        let table = Huffman::new(&counts, symbols)?;
        if class == 0 {
            dc[id] = Some(table);
        } else {
            ac[id] = Some(table);
        }
        seg = &seg[17 + total..];
    }
    Ok(())
}

fn parse_quant(mut seg: &[u8], quant: &mut [Option<[u16; 64]>; 4]) -> Result<(), Outcome> {
    while !seg.is_empty() {
        let (wide, id) = (seg[0] >> 4, (seg[0] & 15) as usize);
        let size = if wide == 0 { 64 } else { 128 };
        let body = seg.get(1..1 + size).filter(|_| wide <= 1 && id <= 3).ok_or_else(|| corrupt("bad DQT"))?;
        let mut table = [0u16; 64];
        for (k, &z) in ZIGZAG.iter().enumerate() {
            table[z as usize] =
                if wide == 0 { body[k] as u16 } else { u16::from_be_bytes([body[2 * k], body[2 * k + 1]]) };
        }
        quant[id] = Some(table);
        seg = &seg[1 + size..];
    }
    Ok(())
}

/// Decode one scan whose header is `seg` and whose data starts at `bytes[start]`; returns
/// the position of the marker after it.
#[allow(clippy::too_many_arguments)]
fn decode_scan(
    bytes: &[u8],
    start: usize,
    seg: &[u8],
    f: &mut Frame,
    quant: &[Option<[u16; 64]>; 4],
    dc: &[Option<Huffman>; 4],
    ac: &[Option<Huffman>; 4],
    restart_interval: usize,
) -> Result<usize, Outcome> {
    let ns = *seg.first().ok_or_else(|| corrupt("short scan header"))? as usize;
    let params = seg.get(1 + 2 * ns..4 + 2 * ns).ok_or_else(|| corrupt("short scan header"))?;
    if !(1..=4).contains(&ns) {
        return Err(corrupt("bad scan component count"));
    }
    let (ss, se, ah, al) = (params[0] as usize, params[1] as usize, params[2] >> 4, params[2] & 15);
    let mut members = Vec::with_capacity(ns);
    for sel in seg[1..1 + 2 * ns].chunks_exact(2) {
        let ci =
            f.comps.iter().position(|c| c.id == sel[0]).ok_or_else(|| corrupt("scan names an unknown component"))?;
        if members.iter().any(|&(c, _, _)| c == ci) {
            return Err(corrupt("component repeated in a scan"));
        }
        members.push((ci, (sel[1] >> 4) as usize, (sel[1] & 15) as usize));
    }
    // Sequential scans ignore Ss, Se, Ah and Al (some writers put junk there, and
    // libjpeg ignores it); progressive ones are checked.
    if f.progressive {
        let dc_scan = ss == 0;
        if (dc_scan && se != 0) || (!dc_scan && (se < ss || se > 63 || ns != 1)) || al > 13 || ah > 13 {
            return Err(corrupt("bad progressive scan parameters"));
        }
    }
    let blocks_per_mcu: usize = members.iter().map(|&(ci, _, _)| f.comps[ci].h * f.comps[ci].v).sum();
    if ns > 1 && blocks_per_mcu > 10 {
        return Err(corrupt("too many blocks per MCU"));
    }
    // Tables the scan needs; quantisation latched at each component's first scan.
    let need_dc = !f.progressive || (ss == 0 && ah == 0);
    let need_ac = !f.progressive || ss > 0;
    let mut tables: Vec<(Option<&Huffman>, Option<&Huffman>)> = Vec::with_capacity(ns);
    for &(ci, td, ta) in &members {
        let c = &mut f.comps[ci];
        if c.quant.is_none() {
            c.quant = Some(quant.get(c.tq).copied().flatten().ok_or_else(|| corrupt("missing quantisation table"))?);
        }
        let d = if need_dc {
            Some(dc.get(td).and_then(|t| t.as_ref()).ok_or_else(|| corrupt("missing DC table"))?)
        } else {
            None
        };
        let a = if need_ac {
            Some(ac.get(ta).and_then(|t| t.as_ref()).ok_or_else(|| corrupt("missing AC table"))?)
        } else {
            None
        };
        tables.push((d, a));
        c.pred = 0;
    }
    let mut bits = Bits::new(bytes, start);
    let mut eobrun = 0u32;
    let kind = if !f.progressive {
        Kind::Sequential
    } else if ss == 0 {
        if ah == 0 {
            Kind::DcFirst(al)
        } else {
            Kind::DcRefine(al)
        }
    } else if ah == 0 {
        Kind::AcFirst(ss, se, al)
    } else {
        Kind::AcRefine(ss, se, al)
    };
    let mut units = 0usize;
    let mut step = |f: &mut Frame, bits: &mut Bits, eobrun: &mut u32| {
        if restart_interval > 0 && units > 0 && units.is_multiple_of(restart_interval) {
            bits.restart();
            *eobrun = 0;
            for &(ci, _, _) in &members {
                f.comps[ci].pred = 0;
            }
        }
        units += 1;
    };
    if ns == 1 {
        let (ci, _, _) = members[0];
        let (bw, bh) = (f.comps[ci].dw.div_ceil(8), f.comps[ci].dh.div_ceil(8));
        for by in 0..bh {
            for bx in 0..bw {
                step(f, &mut bits, &mut eobrun);
                let c = &mut f.comps[ci];
                let mut pred = c.pred;
                decode_block(&mut bits, kind, tables[0], c.block(bx, by), &mut pred, &mut eobrun);
                c.pred = pred;
            }
        }
    } else {
        for my in 0..f.mcuy {
            for mx in 0..f.mcux {
                step(f, &mut bits, &mut eobrun);
                for (m, &(ci, _, _)) in members.iter().enumerate() {
                    let c = &mut f.comps[ci];
                    let (h, v) = (c.h, c.v);
                    for by in 0..v {
                        for bx in 0..h {
                            let mut pred = c.pred;
                            decode_block(
                                &mut bits,
                                kind,
                                tables[m],
                                c.block(mx * h + bx, my * v + by),
                                &mut pred,
                                &mut eobrun,
                            );
                            c.pred = pred;
                        }
                    }
                }
            }
        }
    }
    // The next marker: skip whatever entropy-coded data is left (and restart markers).
    let mut p = bits.pos;
    loop {
        match bytes.get(p) {
            None => return Ok(p),
            Some(&0xFF) => match bytes.get(p + 1) {
                Some(0x00) | Some(0xD0..=0xD7) | Some(0xFF) => p += 1,
                _ => return Ok(p),
            },
            Some(_) => p += 1,
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Sequential,
    DcFirst(u8),
    DcRefine(u8),
    AcFirst(usize, usize, u8),
    AcRefine(usize, usize, u8),
}

#[inline]
fn decode_block(
    bits: &mut Bits,
    kind: Kind,
    (dc, ac): (Option<&Huffman>, Option<&Huffman>),
    block: &mut [i16],
    pred: &mut i32,
    eobrun: &mut u32,
) {
    match kind {
        Kind::Sequential => {
            let (Some(dc), Some(ac)) = (dc, ac) else { return };
            let s = bits.decode(dc) as u32;
            *pred = pred.wrapping_add(bits.receive_extend(s.min(16)));
            block[0] = *pred as i16;
            let mut k = 1;
            while k < 64 {
                let rs = bits.decode(ac);
                let (r, s) = ((rs >> 4) as usize, (rs & 15) as u32);
                if s != 0 {
                    k += r;
                    block[natural(k)] = bits.receive_extend(s) as i16;
                } else if r == 15 {
                    k += 15;
                } else {
                    break;
                }
                k += 1;
            }
        }
        Kind::DcFirst(al) => {
            let Some(dc) = dc else { return };
            let s = bits.decode(dc) as u32;
            *pred = pred.wrapping_add(bits.receive_extend(s.min(16)));
            block[0] = ((*pred as u32) << al) as i16;
        }
        Kind::DcRefine(al) => {
            if bits.bit() {
                block[0] |= (1u16 << al) as i16;
            }
        }
        Kind::AcFirst(ss, se, al) => {
            let Some(ac) = ac else { return };
            if *eobrun > 0 {
                *eobrun -= 1;
                return;
            }
            let mut k = ss;
            while k <= se {
                let rs = bits.decode(ac);
                let (r, s) = ((rs >> 4) as u32, (rs & 15) as u32);
                if s != 0 {
                    k += r as usize;
                    block[natural(k)] = ((bits.receive_extend(s) as u32) << al) as i16;
                } else if r == 15 {
                    k += 15;
                } else {
                    *eobrun = (1 << r) - 1;
                    if r > 0 {
                        *eobrun += bits.get(r) as u32;
                    }
                    break;
                }
                k += 1;
            }
        }
        Kind::AcRefine(ss, se, al) => {
            let Some(ac) = ac else { return };
            let (p1, m1) = (1i16 << al, (-1i16) << al);
            let refine = |bits: &mut Bits, c: &mut i16| {
                if bits.bit() && *c & p1 == 0 {
                    *c = c.wrapping_add(if *c >= 0 { p1 } else { m1 });
                }
            };
            let mut k = ss;
            if *eobrun == 0 {
                while k <= se {
                    let rs = bits.decode(ac);
                    let (mut r, s) = ((rs >> 4) as i32, (rs & 15) as u32);
                    let mut value = 0i16;
                    if s != 0 {
                        // s is 1 in a valid file: one new coefficient of +-1 at this bit.
                        value = if bits.bit() { p1 } else { m1 };
                    } else if r != 15 {
                        *eobrun = 1 << r;
                        if r > 0 {
                            *eobrun += bits.get(r as u32) as u32;
                        }
                        break;
                    }
                    // Refine the nonzero coefficients passed on the way to the r-th zero.
                    while k <= se {
                        let z = natural(k);
                        if block[z] != 0 {
                            refine(bits, &mut block[z]);
                        } else {
                            if r == 0 {
                                break;
                            }
                            r -= 1;
                        }
                        k += 1;
                    }
                    if value != 0 && k <= 63 {
                        block[natural(k)] = value;
                    }
                    k += 1;
                }
            }
            if *eobrun > 0 {
                // Inside an end-of-band run: only the correction bits of nonzero ones.
                while k <= se {
                    let z = natural(k);
                    if block[z] != 0 {
                        refine(bits, &mut block[z]);
                    }
                    k += 1;
                }
                *eobrun -= 1;
            }
        }
    }
}

/// libjpeg's post-IDCT limit on a value already centred at 0 (before adding 128): the
/// 10-bit index table of `prepare_range_limit_table`, so a wildly out-of-range value
/// wraps exactly as it does there.
#[inline]
fn idct_limit(x: i64) -> u8 {
    let m = (x & 1023) as i32;
    match m {
        0..=127 => (m + 128) as u8,
        128..=511 => 255,
        512..=895 => 0,
        _ => (m - 896) as u8,
    }
}

/// The accurate integer inverse DCT of one dequantised block into 8 rows of `out`
/// (stride `stride`): the separable Loeffler-Ligtenberg-Moschytz factorisation with 13-bit
/// constants and 2 extra bits between the passes, as libjpeg's `jpeg_idct_islow`.
fn idct_islow(coef: &[i16], q: &[u16; 64], out: &mut [u8], stride: usize) {
    const CONST_BITS: u32 = 13;
    const PASS1_BITS: u32 = 2;
    const F0_298: i64 = 2446;
    const F0_390: i64 = 3196;
    const F0_541: i64 = 4433;
    const F0_765: i64 = 6270;
    const F0_899: i64 = 7373;
    const F1_175: i64 = 9633;
    const F1_501: i64 = 12299;
    const F1_847: i64 = 15137;
    const F1_961: i64 = 16069;
    const F2_053: i64 = 16819;
    const F2_562: i64 = 20995;
    const F3_072: i64 = 25172;
    let descale = |x: i64, n: u32| (x + (1 << (n - 1))) >> n;
    // The odd and even halves of one 8-point pass; `x` holds the inputs in order 0..8.
    let butterfly = |x: [i64; 8]| -> ([i64; 4], [i64; 4]) {
        let (z2, z3) = (x[2], x[6]);
        let z1 = (z2 + z3) * F0_541;
        let tmp2 = z1 - z3 * F1_847;
        let tmp3 = z1 + z2 * F0_765;
        let tmp0 = (x[0] + x[4]) << CONST_BITS;
        let tmp1 = (x[0] - x[4]) << CONST_BITS;
        let even = [tmp0 + tmp3, tmp1 + tmp2, tmp1 - tmp2, tmp0 - tmp3];
        let (t0, t1, t2, t3) = (x[7], x[5], x[3], x[1]);
        let (z1, z2, z3, z4) = (t0 + t3, t1 + t2, t0 + t2, t1 + t3);
        let z5 = (z3 + z4) * F1_175;
        let (t0, t1, t2, t3) = (t0 * F0_298, t1 * F2_053, t2 * F3_072, t3 * F1_501);
        let (z1, z2) = (-z1 * F0_899, -z2 * F2_562);
        let (z3, z4) = (-z3 * F1_961 + z5, -z4 * F0_390 + z5);
        let odd = [t3 + z1 + z4, t2 + z2 + z3, t1 + z2 + z4, t0 + z1 + z3];
        (even, odd)
    };
    // A block with no AC terms (common in smooth areas) is one value: the full passes
    // would give it too, every column and row taking its shortcut.
    if coef[1..64].iter().all(|&c| c == 0) {
        let dc = coef[0] as i64 * q[0] as i64;
        let v = idct_limit(descale(((dc << PASS1_BITS) as i32) as i64, PASS1_BITS + 3));
        for r in 0..8 {
            out[r * stride..r * stride + 8].fill(v);
        }
        return;
    }
    let mut ws = [0i32; 64];
    for col in 0..8 {
        let x: [i64; 8] = std::array::from_fn(|r| coef[r * 8 + col] as i64 * q[r * 8 + col] as i64);
        if x[1..].iter().all(|&v| v == 0) {
            let dc = (x[0] << PASS1_BITS) as i32;
            for r in 0..8 {
                ws[r * 8 + col] = dc;
            }
            continue;
        }
        let (e, o) = butterfly(x);
        let n = CONST_BITS - PASS1_BITS;
        for j in 0..4 {
            ws[j * 8 + col] = descale(e[j] + o[j], n) as i32;
            ws[(7 - j) * 8 + col] = descale(e[j] - o[j], n) as i32;
        }
    }
    for r in 0..8 {
        let row = &ws[r * 8..r * 8 + 8];
        let dst = &mut out[r * stride..r * stride + 8];
        if row[1..].iter().all(|&v| v == 0) {
            dst.fill(idct_limit(descale(row[0] as i64, PASS1_BITS + 3)));
            continue;
        }
        let (e, o) = butterfly(std::array::from_fn(|i| row[i] as i64));
        let n = CONST_BITS + PASS1_BITS + 3;
        for j in 0..4 {
            dst[j] = idct_limit(descale(e[j] + o[j], n));
            dst[7 - j] = idct_limit(descale(e[j] - o[j], n));
        }
    }
}

/// Inverse-transform every component, upsample, convert to RGB.
fn finish(f: Frame, is_rgb: bool) -> Result<RgbImage, Outcome> {
    let (w, h) = (f.width, f.height);
    // Each component's samples, cropped to its real size, at full resolution.
    let mut full: Vec<Vec<u8>> = Vec::with_capacity(f.comps.len());
    for c in &f.comps {
        let quant = c.quant.ok_or_else(|| corrupt("a component has no scan"))?;
        let stride = c.bw * 8;
        let mut plane = vec![0u8; stride * c.bh * 8];
        for by in 0..c.bh {
            for bx in 0..c.bw {
                let at = (by * c.bw + bx) * 64;
                idct_islow(&c.coefs[at..at + 64], &quant, &mut plane[by * 8 * stride + bx * 8..], stride);
            }
        }
        let (fh, fv) = (f.hmax / c.h, f.vmax / c.v);
        full.push(upsample(&plane, stride, c.dw, c.dh, (fh, fv), w, h));
    }
    let mut rgb = vec![0u8; 3 * w * h];
    match full.as_slice() {
        [g] => {
            for (px, &v) in rgb.chunks_exact_mut(3).zip(g) {
                px.fill(v);
            }
        }
        [a, b, c] if is_rgb => {
            for (i, px) in rgb.chunks_exact_mut(3).enumerate() {
                px.copy_from_slice(&[a[i], b[i], c[i]]);
            }
        }
        [y, cb, cr] => {
            for (((px, &y), &cb), &cr) in rgb.chunks_exact_mut(3).zip(y).zip(cb).zip(cr) {
                px.copy_from_slice(&ycc_to_rgb(y, cb, cr));
            }
        }
        _ => return Err(Outcome::Unsupported),
    }
    RgbImage::from_raw(w as u32, h as u32, rgb).ok_or_else(|| corrupt("image size"))
}

/// libjpeg's fixed-point YCbCr -> RGB (`build_ycc_rgb_table`): 16 fractional bits, the
/// constants rounded to nearest, R and B terms rounded before the add, G's two terms
/// summed with one rounding. Computed rather than looked up (the same integers: every
/// product fits in an `i32`), so the loop vectorises.
#[inline(always)]
fn ycc_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    const HALF: i32 = 1 << 15;
    const CR_R: i32 = 91_881; // FIX(1.40200)
    const CB_B: i32 = 116_130; // FIX(1.77200)
    const CR_G: i32 = 46_802; // FIX(0.71414)
    const CB_G: i32 = 22_554; // FIX(0.34414)
    let (y, cb, cr) = (y as i32, cb as i32 - 128, cr as i32 - 128);
    let r = y + ((CR_R * cr + HALF) >> 16);
    let g = y + ((-CB_G * cb + HALF - CR_G * cr) >> 16);
    let b = y + ((CB_B * cb + HALF) >> 16);
    [r.clamp(0, 255) as u8, g.clamp(0, 255) as u8, b.clamp(0, 255) as u8]
}

/// One component's `dw x dh` samples (rows `stride` apart in `plane`) upsampled by
/// `(fh, fv)` to the `w x h` image, as libjpeg does by default: triangular ("fancy")
/// filters for 2x horizontal, 2x vertical and 2x2 (edge rows and columns replicated),
/// replication for other integral factors and for rows of at most two samples.
fn upsample(
    plane: &[u8],
    stride: usize,
    dw: usize,
    dh: usize,
    (fh, fv): (usize, usize),
    w: usize,
    h: usize,
) -> Vec<u8> {
    let row = |y: usize| &plane[y.min(dh - 1) * stride..][..dw];
    let mut out = vec![0u8; w * h];
    let ow = dw * fh;
    let mut line = vec![0u8; ow];
    let mut sums = vec![0i32; dw];
    for y in 0..h {
        let (iy, sub) = (y / fv, y % fv);
        match (fh, fv) {
            (1, 1) => line[..dw].copy_from_slice(row(iy)),
            (2, 1) if dw > 2 => h2v1(row(iy), &mut line),
            (1, 2) => {
                // The nearer neighbour row: above for the upper output row, below for the lower.
                let (near, bias) = if sub == 0 { (row(iy.saturating_sub(1)), 1) } else { (row(iy + 1), 2) };
                for ((o, &a), &b) in line.iter_mut().zip(row(iy)).zip(near) {
                    *o = ((3 * a as i32 + b as i32 + bias) >> 2) as u8;
                }
            }
            (2, 2) if dw > 2 => {
                let near = if sub == 0 { row(iy.saturating_sub(1)) } else { row(iy + 1) };
                for ((s, &a), &b) in sums.iter_mut().zip(row(iy)).zip(near) {
                    *s = 3 * a as i32 + b as i32;
                }
                h2v2(&sums, &mut line);
            }
            _ => {
                for (x, o) in line.iter_mut().enumerate() {
                    *o = row(iy)[x / fh];
                }
            }
        }
        out[y * w..(y + 1) * w].copy_from_slice(&line[..w]);
    }
    out
}

/// 2x horizontal triangle filter of one row (at least 3 samples).
fn h2v1(src: &[u8], out: &mut [u8]) {
    let n = src.len();
    out[0] = src[0];
    out[1] = ((3 * src[0] as i32 + src[1] as i32 + 2) >> 2) as u8;
    for i in 1..n - 1 {
        let v = 3 * src[i] as i32;
        out[2 * i] = ((v + src[i - 1] as i32 + 1) >> 2) as u8;
        out[2 * i + 1] = ((v + src[i + 1] as i32 + 2) >> 2) as u8;
    }
    let v = 3 * src[n - 1] as i32;
    out[2 * n - 2] = ((v + src[n - 2] as i32 + 1) >> 2) as u8;
    out[2 * n - 1] = src[n - 1];
}

/// 2x horizontal triangle filter over column sums already weighted 3:1 vertically.
fn h2v2(sums: &[i32], out: &mut [u8]) {
    let n = sums.len();
    out[0] = ((sums[0] * 4 + 8) >> 4) as u8;
    out[1] = ((sums[0] * 3 + sums[1] + 7) >> 4) as u8;
    for i in 1..n - 1 {
        out[2 * i] = ((sums[i] * 3 + sums[i - 1] + 8) >> 4) as u8;
        out[2 * i + 1] = ((sums[i] * 3 + sums[i + 1] + 7) >> 4) as u8;
    }
    out[2 * n - 2] = ((sums[n - 1] * 3 + sums[n - 2] + 8) >> 4) as u8;
    out[2 * n - 1] = ((sums[n - 1] * 4 + 7) >> 4) as u8;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jpeg")
    }

    #[test]
    fn decodes_what_pil_decodes_bit_for_bit() {
        let mut names: Vec<_> = std::fs::read_dir(fixtures())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "rgb"))
            .collect();
        names.sort();
        assert!(names.len() >= 16, "fixtures missing: {}", names.len());
        for rgb in names {
            let bytes = std::fs::read(rgb.with_extension("jpg")).unwrap();
            let want = std::fs::read(&rgb).unwrap();
            let got = decode(&bytes, 16_384, 1 << 30).unwrap_or_else(|e| panic!("{}: {e:?}", rgb.display())).into_raw();
            assert_eq!(got.len(), want.len(), "{}", rgb.display());
            let differ = got.iter().zip(&want).filter(|(a, b)| a != b).count();
            assert_eq!(differ, 0, "{}: {differ} of {} values differ from PIL's", rgb.display(), want.len());
        }
    }

    #[test]
    fn leaves_arithmetic_coding_to_the_general_decoder() {
        let bytes = std::fs::read(fixtures().join("arith.jpg")).unwrap();
        assert!(matches!(decode(&bytes, 16_384, 1 << 30), Err(Outcome::Unsupported)));
    }

    #[test]
    fn limits_and_damage_are_errors_never_panics() {
        let bytes = std::fs::read(fixtures().join("s420_progressive.jpg")).unwrap();
        assert!(matches!(decode(&bytes, 39, 1 << 30), Err(Outcome::Failed(m)) if m.contains("at most 39")));
        assert!(
            matches!(decode(&bytes, 16_384, 1000), Err(Outcome::Failed(m)) if m.contains("above the limit of 1000"))
        );
        // Every truncation and a sweep of single-byte damage: an error or an image.
        for cut in 0..bytes.len() {
            let _ = decode(&bytes[..cut], 16_384, 1 << 30);
        }
        let mut damaged = bytes.clone();
        for i in 0..bytes.len() {
            for v in [0x00, 0xFF, bytes[i] ^ 0x5A] {
                damaged[i] = v;
                let _ = decode(&damaged, 16_384, 1 << 30);
            }
            damaged[i] = bytes[i];
        }
    }

    #[test]
    fn colour_conversion_is_libjpegs_table_arithmetic() {
        // The tables as libjpeg builds them (FIX from doubles, 64-bit terms), as oracle.
        let fix = |x: f64| (x * 65536.0 + 0.5) as i64;
        let half = 1i64 << 15;
        for cb in 0..=255u8 {
            for cr in 0..=255u8 {
                let (xb, xr) = (cb as i64 - 128, cr as i64 - 128);
                let cr_r = (fix(1.40200) * xr + half) >> 16;
                let cb_b = (fix(1.77200) * xb + half) >> 16;
                let g = (-fix(0.34414) * xb + half + -fix(0.71414) * xr) >> 16;
                for y in [0u8, 1, 37, 127, 128, 200, 254, 255] {
                    let lim = |v: i64| (y as i64 + v).clamp(0, 255) as u8;
                    assert_eq!(ycc_to_rgb(y, cb, cr), [lim(cr_r), lim(g), lim(cb_b)], "{y} {cb} {cr}");
                }
            }
        }
    }

    #[test]
    fn the_range_limit_wraps_as_libjpeg_table_does() {
        assert_eq!([-129, -128, 0, 127, 128, 511, 512, 895].map(idct_limit), [0, 0, 128, 255, 255, 255, 0, 0]);
        assert_eq!(idct_limit(-1), 127);
        assert_eq!(idct_limit(1024 - 1), 127);
        assert_eq!(idct_limit(1024), 128);
    }
}
