//! The int8 micro-kernels: `u8` activations times `i8` weights summed exactly in i32.
//!
//! Operands are byte quads: A (weights) packed in [`MR`]-row panels, for each group of
//! four k steps [`MR`] `u32` (row r's codes at k = 4p .. 4p + 3, low byte first); B
//! (activations) in [`NR`]-column panels, for each quad [`NR`] `u32` the same way. With
//! AVX512_VNNI one `vpdpbusd` multiplies 16 columns' quads by a broadcast quad of A and
//! adds the four products to 16 i32 accumulators: four times the multiply-adds of an
//! f32 FMA per instruction. Per quad: 2 vector loads of B, 12 broadcasts, 24 dot
//! products into 24 accumulators. AVX2 without VNNI multiplies 16-bit values
//! (`vpmaddwd`, twice the multiply-adds of an FMA per instruction but an add beside
//! it), so its A panels are widened once per B block ([`panel_for`]); weights whose
//! codes all lie in `-64..=64` (7-bit weights) it multiplies as bytes instead
//! (`vpmaddubsw`, whose i16 pair sums then cannot saturate: [`Kernel::Avx2Small`]).
//! Other targets run plain integer loops on the same layout.
//!
//! The sums are exact integers, so every ISA and every split of M and N gives the same
//! value; the store dequantizes by the one formula of [`crate::quant`]: conversion,
//! product, sum, in that order (no fused multiply-add), then ReLU.
//!
//! The GEMV for linear layers reads the weights row-major where they lie (the file's
//! int8 tensor) and the input as `u8` rows, in 64-byte steps with a masked tail.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use crate::base::mat::MatMut;
use crate::cpu::Cpu;
use crate::quant::ActParams;
#[cfg(target_arch = "x86_64")]
use crate::quant::QUOTIENT_LIMIT;

/// Rows of an A panel.
pub const MR: usize = 12;
/// Columns of a B panel.
pub const NR: usize = 32;

/// Proof that this CPU runs AVX-512F/BW and AVX512_VNNI: only [`Vnni::new`], after the
/// feature check, makes one.
#[derive(Clone, Copy, Debug)]
pub struct Vnni(());

impl Vnni {
    /// The token, if the CPU has the instructions.
    pub fn new() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        {
            let has = crate::cpu::Isa::Avx512.is_supported()
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vnni");
            has.then_some(Vnni(()))
        }
        #[cfg(not(target_arch = "x86_64"))]
        None
    }
}

/// Proof that this CPU runs AVX2 and AVX-VNNI (`vpdpbusd` on ymm registers, VEX
/// encoded: Intel cores since Alder Lake, AMD Zen 5): only [`AvxVnni::new`] makes one.
#[derive(Clone, Copy, Debug)]
pub struct AvxVnni(());

impl AvxVnni {
    /// The token, if the CPU has the instructions.
    pub fn new() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        {
            let has = crate::cpu::Isa::Avx2.is_supported() && std::arch::is_x86_feature_detected!("avxvnni");
            has.then_some(AvxVnni(()))
        }
        #[cfg(not(target_arch = "x86_64"))]
        None
    }
}

/// Proof that this CPU runs AVX2 (the int8 kernels on ymm registers without VNNI): only
/// [`Avx2Int8::new`] makes one.
#[derive(Clone, Copy, Debug)]
pub struct Avx2Int8(());

impl Avx2Int8 {
    /// The token, if the CPU has the instructions.
    pub fn new() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        return crate::cpu::Isa::Avx2.is_supported().then_some(Avx2Int8(()));
        #[cfg(not(target_arch = "x86_64"))]
        None
    }
}

/// Which int8 code a model's kernel family runs.
#[derive(Clone, Copy, Debug)]
pub enum Kernel {
    /// `vpdpbusd` on zmm registers.
    Vnni(Vnni),
    /// `vpdpbusd` on ymm registers (AVX-VNNI), for AVX2 models.
    AvxVnni(AvxVnni),
    /// AVX2 without VNNI: `vpmaddwd` on both operands widened to 16 bits.
    Avx2(Avx2Int8),
    /// AVX2 without VNNI, for weights whose codes all lie in `[-SMALL_CODE, SMALL_CODE]`
    /// ([`Kernel::for_weights`] picks it): `vpmaddubsw` on the byte quads as they are.
    Avx2Small(Avx2Int8),
    /// The integer loops for the baseline target (SSE2, NEON, anything).
    Plain,
}

impl Kernel {
    /// The kernel for a model whose f32 kernels are `cpu`'s.
    pub fn for_cpu(cpu: Cpu) -> Kernel {
        match cpu {
            #[cfg(target_arch = "x86_64")]
            Cpu::Avx512(_) => Vnni::new().map(Kernel::Vnni).unwrap_or_else(Kernel::avx2),
            #[cfg(target_arch = "x86_64")]
            Cpu::Avx2(_) => Kernel::avx2(),
            _ => Kernel::Plain,
        }
    }

    /// The best kernel on ymm registers of a CPU with AVX2.
    #[cfg(target_arch = "x86_64")]
    fn avx2() -> Kernel {
        let avx2 = || Avx2Int8::new().map_or(Kernel::Plain, Kernel::Avx2);
        AvxVnni::new().map_or_else(avx2, Kernel::AvxVnni)
    }

    /// The kernel to run weights with on a CPU whose model kernel is `self`: where every
    /// code lies in `[-SMALL_CODE, SMALL_CODE]` (`small`), AVX2 without VNNI multiplies
    /// the bytes as they are ([`Kernel::Avx2Small`]); the sums are the same integers.
    pub fn for_weights(self, small: bool) -> Kernel {
        match self {
            Kernel::Avx2(t) if small => Kernel::Avx2Small(t),
            other => other,
        }
    }

    /// Every kernel this CPU runs, for tests.
    pub fn all() -> Vec<Kernel> {
        let mut all = vec![Kernel::Plain];
        all.extend(Avx2Int8::new().map(Kernel::Avx2));
        all.extend(AvxVnni::new().map(Kernel::AvxVnni));
        all.extend(Vnni::new().map(Kernel::Vnni));
        all
    }

    /// `u32` words per code quad of an A panel as this kernel reads it: 2 for
    /// [`Kernel::Avx2`], whose `vpmaddwd` multiplies 16-bit values ([`panel_for`]),
    /// 1 for the byte quads of the rest.
    pub fn a_words(self) -> usize {
        match self {
            Kernel::Avx2(_) => 2,
            _ => 1,
        }
    }

    /// Short name, for test messages and the bench.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Vnni(_) => "avx512-vnni",
            Kernel::AvxVnni(_) => "avx-vnni",
            Kernel::Avx2(_) => "avx2",
            Kernel::Avx2Small(_) => "avx2-small",
            Kernel::Plain => "plain",
        }
    }
}

/// How a tile's sums become outputs: per row of the tile, `f32(acc - zero_term) * scale +
/// bias`, then ReLU.
#[derive(Clone, Copy, Debug)]
pub struct Dequant<'a> {
    /// `zero point * sum of the row's codes`, per row.
    pub zero_term: &'a [i32],
    /// Weight scale times activation scale, per row.
    pub scale: &'a [f32],
    /// Bias, per row.
    pub bias: &'a [f32],
    /// ReLU after.
    pub relu: bool,
}

/// The `h x w` block of `c` at `(i, j)` from `kq` quads of an A panel in the kernel's
/// layout (`kq * MR * kern.a_words()` values: [`panel_for`]'s for [`Kernel::Avx2`])
/// and a B panel (`kq * NR` values).
///
/// # Panics
/// If an operand is too short or the block lies outside `c` (caller bugs).
#[allow(clippy::too_many_arguments)]
pub fn run_tile(
    kern: Kernel,
    kq: usize,
    a: &[u32],
    b: &[u32],
    c: &mut MatMut<'_>,
    (i, j): (usize, usize),
    (h, w): (usize, usize),
    dq: &Dequant<'_>,
) {
    assert!((1..=MR).contains(&h) && (1..=NR).contains(&w), "int8 tile {h}x{w}");
    assert!(a.len() >= kq * MR * kern.a_words() && b.len() >= kq * NR, "int8 panels too short");
    assert!(dq.zero_term.len() >= h && dq.scale.len() >= h && dq.bias.len() >= h, "int8 epilogue too short");
    match kern {
        #[cfg(target_arch = "x86_64")]
        Kernel::Vnni(_) => {
            let out = c.block_ptr(i, j, h, w);
            // SAFETY: the token proves the features; lengths, the block and the epilogue
            // were checked above.
            unsafe {
                // A panel's last rows (M = 128: 10 panels and 8 rows) run only the rows
                // they have: a 12-row tile there spent a third of its products on zeros.
                let (a, b) = (a.as_ptr(), b.as_ptr());
                match (w <= 16, h) {
                    (true, ..=4) => tile_vnni::<1, 4>(kq, a, b, out, (h, w), dq),
                    (true, ..=8) => tile_vnni::<1, 8>(kq, a, b, out, (h, w), dq),
                    (true, _) => tile_vnni::<1, MR>(kq, a, b, out, (h, w), dq),
                    (false, ..=4) => tile_vnni::<2, 4>(kq, a, b, out, (h, w), dq),
                    (false, ..=8) => tile_vnni::<2, 8>(kq, a, b, out, (h, w), dq),
                    (false, _) => tile_vnni::<2, MR>(kq, a, b, out, (h, w), dq),
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::AvxVnni(_) => {
            let out = c.block_ptr(i, j, h, w);
            // SAFETY: the token proves the features; lengths, the block and the epilogue
            // were checked above. Each sub-tile is the part of the block it covers.
            unsafe {
                for half in 0..2 {
                    let rows = h.saturating_sub(half * HALF_MR).min(HALF_MR);
                    for part in 0..NR / 16 {
                        let cols = w.saturating_sub(part * 16).min(16);
                        if rows == 0 || cols == 0 {
                            continue;
                        }
                        let at = (out.0.add(half * HALF_MR * out.1 + part * 16), out.1);
                        let (a, b) = (a.as_ptr().add(half * HALF_MR), b.as_ptr().add(part * 16));
                        tile_avxvnni(kq, a, b, at, (rows, cols), dq, half * HALF_MR);
                    }
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2(_) => {
            let out = c.block_ptr(i, j, h, w);
            // SAFETY: the token proves AVX2; lengths (A widened: two
            // words per quad), the block and the epilogue were checked above. Each
            // sub-tile is the part of the block it covers.
            unsafe {
                let wide = a.as_ptr().cast::<u64>();
                for half in 0..2 {
                    let rows = h.saturating_sub(half * HALF_MR).min(HALF_MR);
                    for part in 0..NR / 8 {
                        let cols = w.saturating_sub(part * 8).min(8);
                        if rows == 0 || cols == 0 {
                            continue;
                        }
                        let at = (out.0.add(half * HALF_MR * out.1 + part * 8), out.1);
                        let (a, b) = (wide.add(half * HALF_MR), b.as_ptr().add(part * 8));
                        let r0 = half * HALF_MR;
                        match rows {
                            1..=2 => tile_avx2::<2>(kq, a, b, at, (rows, cols), dq, r0),
                            3..=4 => tile_avx2::<4>(kq, a, b, at, (rows, cols), dq, r0),
                            _ => tile_avx2::<HALF_MR>(kq, a, b, at, (rows, cols), dq, r0),
                        }
                    }
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2Small(_) => {
            let out = c.block_ptr(i, j, h, w);
            // SAFETY: the token proves AVX2; lengths, the block and the epilogue were checked above;
            // each sub-tile is the part of the block it covers. Exactness rests on the
            // caller's promise that the codes are small, not on memory safety.
            unsafe {
                for third in 0..3 {
                    let r0 = third * SMALL_ROWS;
                    let rows = h.saturating_sub(r0).min(SMALL_ROWS);
                    for part in 0..NR / 16 {
                        let cols = w.saturating_sub(part * 16).min(16);
                        if rows == 0 || cols == 0 {
                            continue;
                        }
                        let at = (out.0.add(r0 * out.1 + part * 16), out.1);
                        let (a, b) = (a.as_ptr().add(r0), b.as_ptr().add(part * 16));
                        match (rows, cols) {
                            (1..=2, ..=8) => tile_avx2_small::<2, 1>(kq, a, b, at, (rows, cols), dq, r0),
                            (1..=2, _) => tile_avx2_small::<2, 2>(kq, a, b, at, (rows, cols), dq, r0),
                            (_, ..=8) => tile_avx2_small::<SMALL_ROWS, 1>(kq, a, b, at, (rows, cols), dq, r0),
                            _ => tile_avx2_small::<SMALL_ROWS, 2>(kq, a, b, at, (rows, cols), dq, r0),
                        }
                    }
                }
            }
        }
        _ => {
            let mut acc = [[0i32; NR]; MR];
            sums(kq, a, b, &mut acc);
            store(&acc, c, (i, j), (h, w), dq);
        }
    }
}

/// The tile's sums in plain integer loops.
#[inline(always)]
fn sums(kq: usize, a: &[u32], b: &[u32], acc: &mut [[i32; NR]; MR]) {
    for p in 0..kq {
        let bq = &b[p * NR..(p + 1) * NR];
        for (i, row) in acc.iter_mut().enumerate() {
            let wa = a[p * MR + i].to_le_bytes().map(|v| v as i8 as i32);
            for (s, &bv) in row.iter_mut().zip(bq) {
                let xb = bv.to_le_bytes();
                *s += wa[0] * xb[0] as i32 + wa[1] * xb[1] as i32 + wa[2] * xb[2] as i32 + wa[3] * xb[3] as i32;
            }
        }
    }
}

/// An A panel's quads (`a`, as [`crate::gemm::i8::PackedI8`] holds them) in the layout
/// `kern` reads: `a` itself for the byte-quad kernels; for [`Kernel::Avx2`] each quad as
/// two words in `scratch` (at least `2 * a.len()` long), its four codes sign-extended to
/// 16 bits, the first in the low half of the first word.
///
/// # Panics
/// If [`Kernel::Avx2`]'s `scratch` is too short.
pub fn panel_for<'a>(kern: Kernel, a: &'a [u32], scratch: &'a mut [u32]) -> &'a [u32] {
    #[cfg(target_arch = "x86_64")]
    if let Kernel::Avx2(_) = kern {
        let wide = &mut scratch[..2 * a.len()];
        // Little-endian: the layout is the codes' bytes in order, each as an i16.
        // SAFETY: the token proves AVX2.
        unsafe { widen_avx2(bytemuck::cast_slice(a), bytemuck::cast_slice_mut(wide)) };
        return wide;
    }
    let _ = (kern, scratch); // byte quads as they are
    a
}

/// Each code of `codes` sign-extended into `wide`, 16 per `vpmovsxbw`.
///
/// # Safety
/// The CPU runs AVX2.
///
/// # Panics
/// If `wide` is shorter than `codes`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn widen_avx2(codes: &[i8], wide: &mut [i16]) {
    let mut chunks = codes.chunks_exact(16);
    let mut outs = wide[..codes.len()].chunks_exact_mut(16);
    for (c, o) in chunks.by_ref().zip(outs.by_ref()) {
        // SAFETY: 16 codes read, 16 values written, inside the chunks; AVX2 enabled.
        unsafe {
            let v = _mm256_cvtepi8_epi16(_mm_loadu_si128(c.as_ptr().cast()));
            _mm256_storeu_si256(o.as_mut_ptr().cast(), v);
        }
    }
    for (o, &c) in outs.into_remainder().iter_mut().zip(chunks.remainder()) {
        *o = c as i16;
    }
}

/// Dequantize the valid `h x w` part of a tile's sums into `c`.
fn store(acc: &[[i32; NR]; MR], c: &mut MatMut<'_>, (i, j): (usize, usize), (h, w): (usize, usize), dq: &Dequant<'_>) {
    for (r, sums) in acc.iter().enumerate().take(h) {
        let row = &mut c.row_mut(i + r)[j..j + w];
        for (o, &s) in row.iter_mut().zip(sums) {
            *o = crate::quant::dequantize(s, dq.zero_term[r], dq.scale[r], dq.bias[r], dq.relu);
        }
    }
}

/// The VNNI tile: the first `ROWS` rows of `kq` quads of an A panel times the first `NV`
/// vectors of a B panel, dequantized into the `h x w` block at `c`.
///
/// # Safety
/// The CPU runs AVX-512F/BW and AVX512_VNNI; `a` holds `kq * MR` values, `b` `kq * NR`;
/// `c` is valid for writes of `h <= ROWS <= MR` rows of `w <= NV * 16` values `ldc`
/// apart; the epilogue slices hold `h` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[allow(clippy::needless_range_loop)]
unsafe fn tile_vnni<const NV: usize, const ROWS: usize>(
    kq: usize,
    a: *const u32,
    b: *const u32,
    (c, ldc): (*mut f32, usize),
    (h, w): (usize, usize),
    dq: &Dequant<'_>,
) {
    // SAFETY: every pointer range is as the contract promises; the features are enabled.
    unsafe {
        let mut acc = [[_mm512_setzero_si512(); NV]; ROWS];
        for p in 0..kq {
            let ap = a.add(p * MR);
            let mut bv = [_mm512_setzero_si512(); NV];
            for v in 0..NV {
                bv[v] = _mm512_loadu_si512(b.add(p * NR + v * 16).cast());
            }
            for i in 0..ROWS {
                let av = _mm512_set1_epi32(*ap.add(i) as i32);
                for v in 0..NV {
                    acc[i][v] = _mm512_dpbusd_epi32(acc[i][v], bv[v], av);
                }
            }
        }
        // Each row's store written out with a constant index, so that the accumulators
        // stay in registers (a loop over `0..h` spilled them to a zeroed stack array).
        macro_rules! rows {
            ($($i:literal)*) => {$(
                // `h <= ROWS`: past the tile's rows it has returned.
                let Some(sums) = acc.get($i).filter(|_| $i < h) else {
                    return;
                };
                let row = c.add($i * ldc);
                let zero = _mm512_set1_epi32(dq.zero_term[$i]);
                let scale = _mm512_set1_ps(dq.scale[$i]);
                let bias = _mm512_set1_ps(dq.bias[$i]);
                for v in 0..NV {
                    let cols = w.saturating_sub(v * 16).min(16);
                    if cols == 0 {
                        break;
                    }
                    let mask = ((1u32 << cols) - 1) as __mmask16;
                    let y = _mm512_cvtepi32_ps(_mm512_sub_epi32(sums[v], zero));
                    let mut y = _mm512_add_ps(_mm512_mul_ps(y, scale), bias);
                    if dq.relu {
                        // max(0, y) returns the second operand when either is NaN: NaN is kept.
                        y = _mm512_max_ps(_mm512_setzero_ps(), y);
                    }
                    _mm512_mask_storeu_ps(row.add(v * 16), mask, y);
                }
            )*};
        }
        const _: () = assert!(MR == 12, "one store per row below");
        rows!(0 1 2 3 4 5 6 7 8 9 10 11);
    }
}

/// The AVX2 sub-tile: the first `ROWS` of rows `r0 .. r0 + 6` of a tile (`a` at the
/// panel's row `r0`, widened by [`panel_for`], [`MR`] rows apart per quad) times 8
/// columns of a B panel (`b` at the first, [`NR`] apart per quad), dequantized into the
/// `h x w` block at `c`.
///
/// Without VNNI the exact product is `vpmaddwd`: 16-bit pairs multiplied and summed into
/// i32 lanes (`vpmaddubsw` takes bytes but saturates its 16-bit sums, which `u8` times
/// `i8` codes can reach). Per quad, four columns' codes are zero-extended to 16 bits in
/// one load (`vpmovzxbw`), two i32 lanes per column; each row's quad is broadcast as
/// four 16-bit values, so a `vpmaddwd` gives each column's sums of codes 0-1 and 2-3 in
/// its two lanes, added at the store. Per quad: 2 B loads, `ROWS` broadcasts, `2 ROWS`
/// `vpmaddwd` and as many `vpaddd`, into `2 ROWS` ymm accumulators.
///
/// # Safety
/// The CPU runs AVX2; `a` holds `(kq - 1) * MR + ROWS` quads of four `i16`, `b`
/// `(kq - 1) * NR + 8` values; `c` is valid for writes of `h <= ROWS <= 6` rows of
/// `w <= 8` values `ldc` apart; the epilogue slices hold `r0 + h` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::needless_range_loop)]
unsafe fn tile_avx2<const ROWS: usize>(
    kq: usize,
    a: *const u64,
    b: *const u32,
    (c, ldc): (*mut f32, usize),
    (h, w): (usize, usize),
    dq: &Dequant<'_>,
    r0: usize,
) {
    // SAFETY: every pointer range is as the contract promises; the feature is enabled.
    unsafe {
        let mut acc = [[_mm256_setzero_si256(); 2]; ROWS];
        for p in 0..kq {
            let bp = b.add(p * NR);
            let bv = [
                _mm256_cvtepu8_epi16(_mm_loadu_si128(bp.cast())),
                _mm256_cvtepu8_epi16(_mm_loadu_si128(bp.add(4).cast())),
            ];
            let ap = a.add(p * MR);
            for i in 0..ROWS {
                let av = _mm256_set1_epi64x(ap.add(i).read_unaligned() as i64);
                for v in 0..2 {
                    acc[i][v] = _mm256_add_epi32(acc[i][v], _mm256_madd_epi16(bv[v], av));
                }
            }
        }
        for i in 0..ROWS {
            if i >= h {
                break;
            }
            // Lane pairs summed: columns 0 1 4 5 | 2 3 6 7, then the 64-bit pairs put in order.
            let sums = _mm256_hadd_epi32(acc[i][0], acc[i][1]);
            let sums = _mm256_permute4x64_epi64::<0b11_01_10_00>(sums);
            store8(c.add(i * ldc), sums, w, dq, r0 + i);
        }
    }
}

/// Largest weight code magnitude [`Kernel::Avx2Small`] takes: `vpmaddubsw` adds two
/// products of a `u8` and an `i8` code in an i16 that saturates, and `255 * (64 + 64) =
/// 32640` still fits, so every pair sum, and every tile sum, is exact.
pub const SMALL_CODE: i8 = 64;

/// Rows of a [`tile_avx2_small`] sub-tile: a third of an A panel.
#[cfg(target_arch = "x86_64")]
const SMALL_ROWS: usize = MR / 3;

/// The AVX2 sub-tile for small weight codes ([`SMALL_CODE`]): rows `r0 .. r0 + ROWS` of a
/// tile (`a` at the panel's row `r0`, byte quads [`MR`] apart per quad) times `8 NV`
/// columns of a B panel, dequantized into the `h x w` block at `c`. Per quad: `NV` loads
/// of B, `ROWS` broadcasts, and per row and vector a `vpmaddubsw` (u8 x i8 pairs into
/// i16), a `vpmaddwd` by ones (the two pairs of a quad into i32) and a `vpaddd`: 2
/// multiplies per 32 products where [`tile_avx2`] spends 4 (and widens B first). At 4
/// rows x 2 vectors (8 accumulators, 14 ymm in all) a broadcast, which takes a vector
/// pipe on Zen 3, serves 64 products rather than 32 at 6 x 1.
///
/// # Safety
/// The CPU runs AVX2; `a` holds `(kq - 1) * MR + ROWS` values, `b` `(kq - 1) * NR + 8
/// NV`; `c` is valid for writes of `h <= ROWS <= 6` rows of `w <= 8 NV` values `ldc`
/// apart; the epilogue slices hold `r0 + h` values. (Sums are exact only if every code
/// of `a` lies in `[-SMALL_CODE, SMALL_CODE]`; past that they saturate, still safely.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::needless_range_loop)]
unsafe fn tile_avx2_small<const ROWS: usize, const NV: usize>(
    kq: usize,
    a: *const u32,
    b: *const u32,
    (c, ldc): (*mut f32, usize),
    (h, w): (usize, usize),
    dq: &Dequant<'_>,
    r0: usize,
) {
    // SAFETY: every pointer range is as the contract promises; the feature is enabled.
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_si256(); NV]; ROWS];
        for p in 0..kq {
            let mut bv = [_mm256_setzero_si256(); NV];
            for v in 0..NV {
                bv[v] = _mm256_loadu_si256(b.add(p * NR + 8 * v).cast());
            }
            let ap = a.add(p * MR);
            for i in 0..ROWS {
                let av = _mm256_set1_epi32(*ap.add(i) as i32);
                for v in 0..NV {
                    let pairs = _mm256_maddubs_epi16(bv[v], av);
                    acc[i][v] = _mm256_add_epi32(acc[i][v], _mm256_madd_epi16(pairs, ones));
                }
            }
        }
        for i in 0..ROWS {
            if i >= h {
                break;
            }
            for v in 0..NV {
                let cols = w.saturating_sub(v * 8).min(8);
                if cols == 0 {
                    break;
                }
                store8(c.add(i * ldc + v * 8), acc[i][v], cols, dq, r0 + i);
            }
        }
    }
}

/// The first `cols <= 8` of eight sums of row `r` dequantized by `dq` into `row`.
///
/// # Safety
/// The CPU runs AVX2; `row` is valid for writes of `cols` values; `dq`'s slices hold
/// more than `r` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn store8(row: *mut f32, sums: __m256i, cols: usize, dq: &Dequant<'_>, r: usize) {
    let zero = _mm256_set1_epi32(dq.zero_term[r]);
    let y = _mm256_cvtepi32_ps(_mm256_sub_epi32(sums, zero));
    let mut y = _mm256_add_ps(_mm256_mul_ps(y, _mm256_set1_ps(dq.scale[r])), _mm256_set1_ps(dq.bias[r]));
    if dq.relu {
        // max(0, y) returns the second operand when either is NaN: NaN is kept.
        y = _mm256_max_ps(_mm256_setzero_ps(), y);
    }
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols as i32), lanes);
    // SAFETY: the mask covers the first `cols` lanes, which the caller says are valid.
    unsafe { _mm256_maskstore_ps(row, mask, y) };
}

/// Rows of an AVX-VNNI sub-tile: half an A panel.
#[cfg(target_arch = "x86_64")]
const HALF_MR: usize = MR / 2;

/// The AVX-VNNI sub-tile: rows `r0 .. r0 + 6` of a tile (`a` at the panel's row `r0`,
/// rows [`MR`] apart per quad) times 16 columns of a B panel (`b` at the first, [`NR`]
/// apart per quad), dequantized into the `h x w` block at `c`. Per quad: 2 loads of B,
/// 6 broadcasts, 12 `vpdpbusd` into 12 ymm accumulators.
///
/// # Safety
/// The CPU runs AVX2 and AVX-VNNI; `a` holds `(kq - 1) * MR + 6` values, `b`
/// `(kq - 1) * NR + 16`; `c` is valid for writes of `h <= 6` rows of `w <= 16` values
/// `ldc` apart; the epilogue slices hold `r0 + h` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avxvnni")]
#[allow(clippy::needless_range_loop)]
unsafe fn tile_avxvnni(
    kq: usize,
    a: *const u32,
    b: *const u32,
    (c, ldc): (*mut f32, usize),
    (h, w): (usize, usize),
    dq: &Dequant<'_>,
    r0: usize,
) {
    // SAFETY: every pointer range is as the contract promises; the features are enabled.
    unsafe {
        let mut acc = [[_mm256_setzero_si256(); 2]; HALF_MR];
        for p in 0..kq {
            let bp = b.add(p * NR);
            let bv = [_mm256_loadu_si256(bp.cast()), _mm256_loadu_si256(bp.add(8).cast())];
            let ap = a.add(p * MR);
            for i in 0..HALF_MR {
                let av = _mm256_set1_epi32(*ap.add(i) as i32);
                for v in 0..2 {
                    acc[i][v] = _mm256_dpbusd_avx_epi32(acc[i][v], bv[v], av);
                }
            }
        }
        for i in 0..HALF_MR {
            if i >= h {
                break;
            }
            for v in 0..2 {
                let cols = w.saturating_sub(v * 8).min(8);
                if cols == 0 {
                    break;
                }
                store8(c.add(i * ldc + v * 8), acc[i][v], cols, dq, r0 + i);
            }
        }
    }
}

/// `x` (one image's `k` values) quantized by `q` into `out` (`k` codes).
///
/// # Panics
/// If `out` is shorter than `x`.
pub fn quantize_row(kern: Kernel, x: &[f32], q: &ActParams, out: &mut [u8]) {
    assert!(out.len() >= x.len(), "int8 row too short");
    #[cfg(target_arch = "x86_64")]
    if let Kernel::Vnni(_) = kern {
        // SAFETY: the token proves the features; lengths checked above.
        return unsafe { quantize_row_avx512(x, q, out) };
    }
    #[cfg(target_arch = "x86_64")]
    if let Kernel::Avx2(_) | Kernel::Avx2Small(_) | Kernel::AvxVnni(_) = kern {
        // SAFETY: these kernels exist only on a CPU with AVX2; lengths checked above.
        return unsafe { quantize_row_avx2(x, q, out) };
    }
    let _ = kern; // one family on other targets
    quantize_row_plain(x, q, out)
}

/// [`quantize_row`] in plain loops (vectorized by the compiler for the shell's ISA).
#[inline(always)]
fn quantize_row_plain(x: &[f32], q: &ActParams, out: &mut [u8]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = q.quantize(v);
    }
}

/// Eight values' codes as i32 lanes: `x * inv` clamped to the quotient limit, rounded
/// to nearest even (the default mode, as `round_ties_even`), plus the zero point,
/// saturated to `0..=255` (callable from AVX2 code only).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn codes_avx2(v: __m256, inv: __m256, zero: __m256i) -> __m256i {
    let t = _mm256_mul_ps(v, inv);
    let t = _mm256_min_ps(_mm256_max_ps(t, _mm256_set1_ps(-QUOTIENT_LIMIT)), _mm256_set1_ps(QUOTIENT_LIMIT));
    let c = _mm256_add_epi32(_mm256_cvtps_epi32(t), zero);
    _mm256_min_epi32(_mm256_max_epi32(c, _mm256_setzero_si256()), _mm256_set1_epi32(255))
}

/// # Safety
/// The CPU runs AVX2; `out` holds `x.len()` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_row_avx2(x: &[f32], q: &ActParams, out: &mut [u8]) {
    let (inv, zero) = (_mm256_set1_ps(q.inv), _mm256_set1_epi32(q.zero));
    let full = x.len() / 8;
    for c in 0..full {
        // SAFETY: eight values read and eight codes written inside `x` and `out`.
        unsafe {
            let codes = codes_avx2(_mm256_loadu_ps(x.as_ptr().add(8 * c)), inv, zero);
            // Narrowed in each 128-bit half (values 0..=255 pass unchanged): codes 0-3
            // lead the low half, 4-7 the high.
            let w = _mm256_packus_epi32(codes, codes);
            let b = _mm256_packus_epi16(w, w);
            let lo = _mm_cvtsi128_si32(_mm256_castsi256_si128(b)) as u32;
            let hi = _mm_cvtsi128_si32(_mm256_extracti128_si256::<1>(b)) as u32;
            let bytes = (u64::from(hi) << 32 | u64::from(lo)).to_le_bytes();
            out.as_mut_ptr().add(8 * c).cast::<[u8; 8]>().write_unaligned(bytes);
        }
    }
    quantize_row_plain(&x[8 * full..], q, &mut out[8 * full..]);
}

/// # Safety
/// The CPU runs AVX-512F; `out` holds `x.len()` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize_row_avx512(x: &[f32], q: &ActParams, out: &mut [u8]) {
    // SAFETY: masked loads and stores stay inside `x` and `out`; features enabled.
    unsafe {
        let inv = _mm512_set1_ps(q.inv);
        let zero = _mm512_set1_epi32(q.zero);
        let (lo, hi) = (_mm512_set1_ps(-QUOTIENT_LIMIT), _mm512_set1_ps(QUOTIENT_LIMIT));
        for c in 0..x.len().div_ceil(16) {
            let n = (x.len() - 16 * c).min(16);
            let mask = ((1u32 << n) - 1) as __mmask16;
            let v = _mm512_maskz_loadu_ps(mask, x.as_ptr().add(16 * c));
            let t = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v, inv), lo), hi);
            let codes = _mm512_add_epi32(_mm512_cvtps_epi32(t), zero);
            // Unsigned saturation to 0..=255, then narrowed to bytes.
            _mm512_mask_cvtusepi32_storeu_epi8(
                out.as_mut_ptr().add(16 * c).cast(),
                mask,
                _mm512_max_epi32(codes, _mm512_setzero_si512()),
            );
        }
    }
}

/// [`crate::quant::range`] of `x` (its `(min, max)` and 0, `None` if a value is not
/// finite) compiled for the kernel's ISA, pieces shared out over the current rayon pool
/// (min and max are exact: any split gives the same result).
pub fn range(kern: Kernel, x: &[f32]) -> Option<(f32, f32)> {
    use rayon::prelude::*;
    let piece = |c: &[f32]| match kern {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves AVX-512F.
        Kernel::Vnni(_) => unsafe { range_avx512(c) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: these kernels exist only on a CPU with AVX2.
        Kernel::Avx2(_) | Kernel::Avx2Small(_) | Kernel::AvxVnni(_) => unsafe { range_avx2(c) },
        _ => crate::quant::range(c),
    };
    let both = |a: Option<(f32, f32)>, b: Option<(f32, f32)>| match (a, b) {
        (Some((l0, h0)), Some((l1, h1))) => Some((if l1 < l0 { l1 } else { l0 }, if h1 > h0 { h1 } else { h0 })),
        _ => None,
    };
    let piece = |c: &[f32]| {
        crate::base::census::task(|| {
            crate::base::census::work(c.len() as f64);
            piece(c)
        })
    };
    x.par_chunks(1 << 14).map(piece).reduce(|| Some((0.0, 0.0)), both)
}

/// # Safety
/// The CPU runs AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn range_avx512(x: &[f32]) -> Option<(f32, f32)> {
    crate::quant::range(x)
}

/// # Safety
/// The CPU runs AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn range_avx2(x: &[f32]) -> Option<(f32, f32)> {
    crate::quant::range(x)
}

/// Four planes of values (`None`: a padding channel, the zero point) quantized by `q`
/// into one plane of quads, value `t` of each in byte `t`.
///
/// # Panics
/// If a plane is shorter than `dst`.
pub fn quantize_quads(kern: Kernel, planes: [Option<&[f32]>; 4], q: &ActParams, dst: &mut [u32]) {
    assert!(planes.iter().flatten().all(|p| p.len() >= dst.len()), "int8 planes too short");
    #[cfg(target_arch = "x86_64")]
    if let Kernel::Vnni(_) = kern {
        // SAFETY: the token proves the features; lengths checked above.
        return unsafe { quantize_quads_avx512(planes, q, dst) };
    }
    #[cfg(target_arch = "x86_64")]
    if let Kernel::Avx2(_) | Kernel::Avx2Small(_) | Kernel::AvxVnni(_) = kern {
        // SAFETY: these kernels exist only on a CPU with AVX2; lengths checked above.
        return unsafe { quantize_quads_avx2(planes, q, dst) };
    }
    let _ = kern; // one family on other targets
    quantize_quads_plain(planes, q, dst)
}

/// [`quantize_quads`] in plain loops (vectorized by the compiler for the shell's ISA).
#[inline(always)]
fn quantize_quads_plain(planes: [Option<&[f32]>; 4], q: &ActParams, dst: &mut [u32]) {
    let zero = q.zero as u8;
    for (i, d) in dst.iter_mut().enumerate() {
        *d = u32::from_le_bytes(planes.map(|p| p.map_or(zero, |p| q.quantize(p[i]))));
    }
}

/// # Safety
/// The CPU runs AVX2; every plane holds at least `dst.len()` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_quads_avx2(planes: [Option<&[f32]>; 4], q: &ActParams, dst: &mut [u32]) {
    let (inv, zero) = (_mm256_set1_ps(q.inv), _mm256_set1_epi32(q.zero));
    let full = dst.len() / 8;
    for c in 0..full {
        let mut word = _mm256_setzero_si256();
        for (t, plane) in planes.iter().enumerate() {
            let code = match plane {
                // SAFETY: eight values inside the plane (at least `dst.len()` long).
                Some(p) => codes_avx2(unsafe { _mm256_loadu_ps(p.as_ptr().add(8 * c)) }, inv, zero),
                None => zero,
            };
            word = _mm256_or_si256(word, _mm256_sllv_epi32(code, _mm256_set1_epi32(8 * t as i32)));
        }
        // SAFETY: eight words inside `dst`.
        unsafe { _mm256_storeu_si256(dst.as_mut_ptr().add(8 * c).cast(), word) };
    }
    let rest = planes.map(|p| p.map(|p| &p[8 * full..]));
    quantize_quads_plain(rest, q, &mut dst[8 * full..]);
}

/// # Safety
/// The CPU runs AVX-512F; every plane holds at least `dst.len()` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize_quads_avx512(planes: [Option<&[f32]>; 4], q: &ActParams, dst: &mut [u32]) {
    // SAFETY: masked loads and stores stay inside the planes and `dst`; features enabled.
    unsafe {
        let inv = _mm512_set1_ps(q.inv);
        let zero = _mm512_set1_epi32(q.zero);
        let (lo, hi) = (_mm512_setzero_si512(), _mm512_set1_epi32(255));
        let (tlo, thi) = (_mm512_set1_ps(-QUOTIENT_LIMIT), _mm512_set1_ps(QUOTIENT_LIMIT));
        for c in 0..dst.len().div_ceil(16) {
            let n = (dst.len() - 16 * c).min(16);
            let mask = ((1u32 << n) - 1) as __mmask16;
            let mut word = _mm512_setzero_si512();
            for (t, plane) in planes.iter().enumerate() {
                let code = match plane {
                    Some(p) => {
                        let v = _mm512_maskz_loadu_ps(mask, p.as_ptr().add(16 * c));
                        let t = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v, inv), tlo), thi);
                        // Round to nearest even (the default mode), as `round_ties_even`.
                        let c = _mm512_add_epi32(_mm512_cvtps_epi32(t), zero);
                        _mm512_min_epi32(_mm512_max_epi32(c, lo), hi)
                    }
                    None => zero,
                };
                word = _mm512_or_si512(word, _mm512_sllv_epi32(code, _mm512_set1_epi32(8 * t as i32)));
            }
            _mm512_mask_storeu_epi32(dst.as_mut_ptr().add(16 * c).cast(), mask, word);
        }
    }
}

/// Rows of W per GEMV pass at one image.
pub const GEMV_ROWS: usize = 4;
/// Images per GEMV pass at batch 4 and above.
pub const GEMV_IMAGES: usize = 4;

/// What a GEMV pass fetches into L2 while it computes: its share of the next block of
/// rows. Passes over a block after the first read it from the caches, and the memory
/// stream would stop meanwhile; so pass `phase + 1` of `phases + 1` fetches the lines
/// `c` of each next row with `c % phases == phase`.
#[derive(Clone, Copy, Debug)]
pub struct Ahead<'a> {
    /// The next block's rows (`R` rows of `k` codes).
    pub rows: &'a [i8],
    /// This pass's share.
    pub phase: usize,
    /// Shares.
    pub phases: usize,
}

/// `sums[v][r] = dot(W[r0 + r], x[v])` for `R` rows of row-major `w` (`k` columns) and
/// `V` rows of `x` (`k` codes each, `ldx` apart); fetching `ahead` on the way.
///
/// # Panics
/// If `w`, `x` or `ahead` is too short.
pub fn dots<const R: usize, const V: usize>(
    kern: Kernel,
    w: &[i8],
    k: usize,
    x: &[u8],
    ldx: usize,
    ahead: Option<Ahead<'_>>,
) -> [[i32; R]; V] {
    assert!(w.len() >= R * k && ldx >= k && x.len() >= (V - 1) * ldx + k, "int8 gemv operands too short");
    assert!(ahead.is_none_or(|a| a.rows.len() >= R * k && a.phases > a.phase), "int8 gemv fetch outside W");
    match kern {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves the features; lengths checked above.
        Kernel::Vnni(_) => unsafe {
            let (p, phase, phases) = ahead.map_or((std::ptr::null(), 0, 1), |a| (a.rows.as_ptr(), a.phase, a.phases));
            dots_vnni::<R, V>(w.as_ptr(), k, x.as_ptr(), ldx, (p, phase, phases))
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: these kernels exist only on a CPU with AVX2 (see `run_tile`); lengths
        // checked above.
        Kernel::Avx2(_) | Kernel::Avx2Small(_) | Kernel::AvxVnni(_) => unsafe {
            let mut out = [[0i32; R]; V];
            let p = ahead.map_or(std::ptr::null(), |a| a.rows.as_ptr());
            let (phase, phases) = ahead.map_or((0, 1), |a| (a.phase, a.phases));
            // Two images a pass (2R accumulators of 16 ymm); W's rows, read from memory
            // by the first, come from L2 for the second.
            for v0 in (0..V).step_by(2) {
                let x = x.as_ptr().add(v0 * ldx);
                let ahead = (if v0 == 0 { p } else { std::ptr::null() }, phase, phases);
                if V - v0 >= 2 {
                    let s = dots_avx2::<R, 2>(w.as_ptr(), k, x, ldx, ahead);
                    out[v0..v0 + 2].copy_from_slice(&s);
                } else {
                    out[v0] = dots_avx2::<R, 1>(w.as_ptr(), k, x, ldx, ahead)[0];
                }
            }
            out
        },
        _ => dots_plain::<R, V>(w, k, x, ldx),
    }
}

#[inline(always)]
fn dots_plain<const R: usize, const V: usize>(w: &[i8], k: usize, x: &[u8], ldx: usize) -> [[i32; R]; V] {
    let mut out = [[0i32; R]; V];
    for (v, o) in out.iter_mut().enumerate() {
        let xv = &x[v * ldx..v * ldx + k];
        for (r, s) in o.iter_mut().enumerate() {
            let wr = &w[r * k..(r + 1) * k];
            *s = wr.iter().zip(xv).map(|(&a, &b)| a as i32 * b as i32).sum();
        }
    }
    out
}

/// As [`dots_vnni`] on ymm registers without VNNI: 16 codes of W sign-extended and 16 of
/// each image zero-extended to 16 bits per step, `vpmaddwd` and `vpaddd` into one
/// accumulator per row and image; the last `k % 16` codes in plain arithmetic.
///
/// # Safety
/// The CPU runs AVX2; `w` holds `R * k` values, `x` `V` rows of `k` values `ldx` apart;
/// `ahead.0`, if not null, `R * k` values (prefetches only).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::needless_range_loop)]
unsafe fn dots_avx2<const R: usize, const V: usize>(
    w: *const i8,
    k: usize,
    x: *const u8,
    ldx: usize,
    (ahead, phase, phases): (*const i8, usize, usize),
) -> [[i32; R]; V] {
    // SAFETY: full 16-byte steps and the tail stay inside each row; prefetches stay
    // inside `ahead`'s rows; the feature is enabled.
    unsafe {
        let mut acc = [[_mm256_setzero_si256(); R]; V];
        let steps = k / 16;
        for c in 0..steps {
            // One prefetch per 64-byte line, this pass's share of them.
            if !ahead.is_null() && c % 4 == 0 && (c / 4) % phases == phase {
                for r in 0..R {
                    _mm_prefetch::<_MM_HINT_T1>(ahead.add(r * k + 16 * c).cast());
                }
            }
            let mut xv = [_mm256_setzero_si256(); V];
            for v in 0..V {
                xv[v] = _mm256_cvtepu8_epi16(_mm_loadu_si128(x.add(v * ldx + 16 * c).cast()));
            }
            for r in 0..R {
                let wv = _mm256_cvtepi8_epi16(_mm_loadu_si128(w.add(r * k + 16 * c).cast()));
                for v in 0..V {
                    acc[v][r] = _mm256_add_epi32(acc[v][r], _mm256_madd_epi16(xv[v], wv));
                }
            }
        }
        let mut out = [[0i32; R]; V];
        for v in 0..V {
            for r in 0..R {
                let s = _mm_add_epi32(_mm256_castsi256_si128(acc[v][r]), _mm256_extracti128_si256::<1>(acc[v][r]));
                let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
                let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
                let mut sum = _mm_cvtsi128_si32(s);
                for i in 16 * steps..k {
                    sum += *w.add(r * k + i) as i32 * *x.add(v * ldx + i) as i32;
                }
                out[v][r] = sum;
            }
        }
        out
    }
}

/// # Safety
/// The CPU runs AVX-512F/BW and AVX512_VNNI; `w` holds `R * k` values, `x` `V` rows of
/// `k` values `ldx` apart; `ahead.0`, if not null, `R * k` values (prefetches only).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[allow(clippy::needless_range_loop)]
unsafe fn dots_vnni<const R: usize, const V: usize>(
    w: *const i8,
    k: usize,
    x: *const u8,
    ldx: usize,
    (ahead, phase, phases): (*const i8, usize, usize),
) -> [[i32; R]; V] {
    // SAFETY: masked loads stay inside each row; prefetches stay inside `ahead`'s rows;
    // features enabled.
    unsafe {
        let mut acc = [[_mm512_setzero_si512(); R]; V];
        for c in 0..k.div_ceil(64) {
            if !ahead.is_null() && c % phases == phase {
                for r in 0..R {
                    _mm_prefetch::<_MM_HINT_T1>(ahead.add(r * k + 64 * c).cast());
                }
            }
            let n = (k - 64 * c).min(64);
            let mask: __mmask64 = if n == 64 { !0 } else { (1u64 << n) - 1 };
            let mut xv = [_mm512_setzero_si512(); V];
            for v in 0..V {
                xv[v] = _mm512_maskz_loadu_epi8(mask, x.add(v * ldx + 64 * c).cast());
            }
            for r in 0..R {
                let wv = _mm512_maskz_loadu_epi8(mask, w.add(r * k + 64 * c).cast());
                for v in 0..V {
                    acc[v][r] = _mm512_dpbusd_epi32(acc[v][r], xv[v], wv);
                }
            }
        }
        let mut out = [[0i32; R]; V];
        for v in 0..V {
            for r in 0..R {
                out[v][r] = _mm512_reduce_add_epi32(acc[v][r]);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    //! Small enough for Miri (which runs the AVX2 kernels' unsafe code under CI's `gemm`
    //! filter): every kernel this CPU runs against the plain loops on the same operands.
    use super::*;

    fn words(seed: u32, n: usize) -> Vec<u32> {
        (0..n as u32).map(|i| (i ^ seed).wrapping_mul(0x9E37_79B9).rotate_left(seed % 31)).collect()
    }

    #[test]
    fn every_int8_tile_gives_the_plain_sums() {
        let kq = 3;
        let (a, b) = (words(5, kq * MR), words(9, kq * NR));
        let zero_term: Vec<i32> = (0..MR as i32).map(|r| r * 37 - 200).collect();
        let scale: Vec<f32> = (0..MR).map(|r| 0.001 * (r + 1) as f32).collect();
        let bias: Vec<f32> = (0..MR).map(|r| r as f32 - 5.0).collect();
        for relu in [false, true] {
            let dq = Dequant { zero_term: &zero_term, scale: &scale, bias: &bias, relu };
            for (h, w) in [(MR, NR), (7, 9), (1, 1), (5, 17)] {
                let run = |kern: Kernel| {
                    let mut wide = vec![0u32; kq * MR * kern.a_words()];
                    let ap = panel_for(kern, &a, &mut wide);
                    let ldc = NR + 3;
                    let mut c = vec![-1.0f32; MR * ldc];
                    run_tile(kern, kq, ap, &b, &mut MatMut::new(&mut c, MR, ldc, ldc), (0, 0), (h, w), &dq);
                    c.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                };
                let want = run(Kernel::Plain);
                for kern in Kernel::all() {
                    assert_eq!(run(kern), want, "{} {h}x{w}", kern.name());
                }
            }
        }
    }

    /// [`Kernel::Avx2Small`] on codes within [`SMALL_CODE`], up to its edge: every pair of
    /// products at +-255 * 64 + 255 * 64, beside random small codes and activations.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn small_codes_tile_gives_the_plain_sums_up_to_its_edge() {
        let Some(t) = Avx2Int8::new() else { return };
        let kq = 5;
        let small = |v: u32| u32::from_le_bytes(v.to_le_bytes().map(|b| ((b as i8) / 2).clamp(-64, 64) as u8));
        let edge = [0x4040_4040u32, 0xC0C0_C0C0, 0x40C0_40C0, 0x0040_C040];
        let mut a: Vec<u32> = words(7, kq * MR).into_iter().map(small).collect();
        a[..2 * MR].iter_mut().enumerate().for_each(|(i, v)| *v = edge[i % 4]);
        let mut b = words(2, kq * NR);
        b[..2 * NR].fill(u32::MAX);
        let zero_term: Vec<i32> = (0..MR as i32).map(|r| r * 11 - 60).collect();
        let scale: Vec<f32> = (0..MR).map(|r| 0.003 * (r + 1) as f32).collect();
        let bias = vec![0.25f32; MR];
        let dq = Dequant { zero_term: &zero_term, scale: &scale, bias: &bias, relu: false };
        for (h, w) in [(MR, NR), (6, 8), (5, 17), (2, 1), (11, 30)] {
            let run = |kern: Kernel| {
                let mut wide = vec![0u32; kq * MR * kern.a_words()];
                let ap = panel_for(kern, &a, &mut wide);
                let mut c = vec![-1.0f32; MR * NR];
                run_tile(kern, kq, ap, &b, &mut MatMut::new(&mut c, MR, NR, NR), (0, 0), (h, w), &dq);
                c.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            };
            assert_eq!(run(Kernel::Avx2Small(t)), run(Kernel::Plain), "{h}x{w}");
        }
    }

    #[test]
    fn every_int8_gemv_and_quantizer_gives_the_plain_result() {
        let k = 37; // two 16-code steps and a tail
        let w: Vec<i8> = words(3, 8 * k).iter().map(|&v| v as i8).collect();
        let x: Vec<u8> = words(4, 3 * k + 8).iter().map(|&v| v as u8).collect();
        let vals: Vec<f32> = (0..k).map(|i| (i as f32 - 17.0) * 0.37).collect();
        let q = ActParams::from_range(-6.0, 7.0);
        for kern in Kernel::all() {
            let name = kern.name();
            assert_eq!(dots::<8, 1>(kern, &w, k, &x, k, None), dots::<8, 1>(Kernel::Plain, &w, k, &x, k, None), "{name}");
            let ahead = Some(Ahead { rows: &w[4 * k..], phase: 0, phases: 1 });
            let want = dots::<4, 3>(Kernel::Plain, &w, k, &x[1..], k + 2, None);
            assert_eq!(dots::<4, 3>(kern, &w, k, &x[1..], k + 2, ahead), want, "{name}");
            let (mut row, mut plain) = (vec![0u8; k], vec![0u8; k]);
            quantize_row(kern, &vals, &q, &mut row);
            quantize_row(Kernel::Plain, &vals, &q, &mut plain);
            assert_eq!(row, plain, "{name}");
            let planes = [Some(&vals[..]), None, Some(&vals[2..]), Some(&vals[1..])];
            let (mut quads, mut plain) = (vec![0u32; k - 2], vec![0u32; k - 2]);
            quantize_quads(kern, planes, &q, &mut quads);
            quantize_quads(Kernel::Plain, planes, &q, &mut plain);
            assert_eq!(quads, plain, "{name}");
        }
    }
}
