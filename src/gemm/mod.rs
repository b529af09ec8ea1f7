//! SGEMM: `C = epilogue(A B)`, cache-blocked around an ISA-specific micro-kernel.
//!
//! Roles are fixed (`docs/style.md`): A = weights, `M x K`, packed once into MR-row panels
//! ([`PackedA`]); B = activations, `K x N`, any [`PackB`] source (row-major matrix,
//! im2col of an image), packed per call into NR-column panels, or for a row-major matrix
//! whose rows sit well in the caches read where it lies (only a ragged last panel is
//! packed); C = `M x N` row-major (CHW for a convolution).
//!
//! The driver is written once for every ISA, generic over [`kernel::MicroKernel`]; only
//! the micro-kernel differs. Loops, outermost first (BLIS names):
//!
//! - **jc**: N in NC blocks; one packed `KC x NC` block of B serves all of M.
//! - **pc**: K in KC slices; B's block is packed here (per thread, into its own buffer),
//!   unless it is read in place.
//! - **ic**: M in MC blocks; the `MC x KC` slice of packed A stays in L2.
//! - **jr**: NR micro-panels of the packed B block (the one in L1).
//! - **ir**: MR micro-panels of A; one micro-kernel call per `MR x NR` tile.
//!
//! Threads split M or N (whichever has more panels), never K, in whole tiles, by
//! recursive halving with `rayon::join` on the caller's pool: every element's sum runs
//! over the same K slices in the same order, so results are bitwise identical for any
//! thread count. Edge tiles run the same kernel on a stack tile whose valid part is
//! copied out, so kernels never branch on `m` or `n`; where the ISA has one, an edge
//! kernel takes a panel's last few columns (1-8 of them) for a fraction of a tile's FMAs,
//! each element by the same arithmetic as in a tile.

#[cfg(target_arch = "x86_64")]
pub mod bf16;
pub mod blocking;
pub mod i8;
pub mod kernel;
pub mod pack;

pub use blocking::BlockSizes;
pub use kernel::{gemv, MicroKernel, Weight};
pub use pack::{PackB, PackedA, RowMajor};

use kernel::{run_edge, run_tile, Store, MAX_MR, MAX_NR};

use crate::base::census;
use crate::base::mat::MatMut;
use crate::base::scalar::relu;
use crate::base::scratch::{self, Scratch};
use crate::cpu::{dispatch, Cpu};
use crate::tuning::Tuning;

/// A bias added as C is stored.
#[derive(Clone, Copy, Debug, Default)]
pub enum Bias<'a> {
    /// No bias.
    #[default]
    None,
    /// One value per row of C (`M` values): a convolution's per-channel bias.
    Row(&'a [f32]),
    /// One value per column of C (`N` values): a linear layer computed as `X W^T`.
    Col(&'a [f32]),
}

/// What is applied as each tile of C is stored: bias, then optional ReLU.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// The bias.
    pub bias: Bias<'a>,
    /// Clamp negatives to zero (NaN passes).
    pub relu: bool,
}

thread_local! {
    /// Each thread's buffer for packed blocks of B; grows to the largest block once.
    pub(crate) static PACK_B: Scratch = const { crate::base::scratch::new_scratch!() };
}

/// The tile and block sizes `cpu`'s kernels use by default (A is packed in panels of
/// `mr` rows): the process's [`Tuning`] (this CPU's, or [`crate::tuning::UARCH_VAR`]'s),
/// with MC, KC and NC as [`blocking::BLOCKS_VAR`] forces them.
pub fn blocks(cpu: Cpu) -> BlockSizes {
    blocks_for(cpu, &Tuning::default_for_process())
}

/// [`blocks`] with the cache blocks `tuning` chooses for `cpu`'s tile (then forced by
/// [`blocking::BLOCKS_VAR`] if it is set).
pub fn blocks_for(cpu: Cpu, tuning: &Tuning) -> BlockSizes {
    fn of<K: MicroKernel>(_: K, tuning: &Tuning) -> BlockSizes {
        tuned_blocks::<K>(tuning).with(blocking::forced())
    }
    dispatch!(cpu, t => of(t, tuning))
}

/// Kernel family `K`'s tile with the cache blocks `tuning` chooses for it.
pub(crate) fn tuned_blocks<K: MicroKernel>(tuning: &Tuning) -> BlockSizes {
    BlockSizes::new(K::MR, K::NR, tuning.blocks(K::MR, K::NR))
}

/// `C[m, n] = epilogue(A B)` on the current rayon pool, with `A` packed for `cpu`
/// (`a.mr() == blocks(cpu).mr`) and `c` row-major with leading dimension `ldc`.
///
/// # Panics
/// If `a` was packed for another kernel or `c` is too short: caller bugs, not input.
pub fn sgemm<B: PackB>(cpu: Cpu, a: &PackedA, b: &B, n: usize, c: &mut [f32], ldc: usize, ep: Epilogue<'_>) {
    sgemm_tasks(cpu, a, b, n, c, ldc, ep, rayon::current_num_threads());
}

/// [`sgemm`] split into at most `tasks` parts (1: run on the calling thread alone), for
/// callers that run several products side by side on one pool. The result does not
/// depend on `tasks`.
///
/// # Panics
/// As [`sgemm`].
#[allow(clippy::too_many_arguments)]
pub fn sgemm_tasks<B: PackB>(
    cpu: Cpu,
    a: &PackedA,
    b: &B,
    n: usize,
    c: &mut [f32],
    ldc: usize,
    ep: Epilogue<'_>,
    tasks: usize,
) {
    sgemm_view(cpu, a, b, n, MatMut::new(c, a.m(), n, ldc), ep, tasks);
}

/// [`sgemm_tasks`] into a view of C (`a.m() x n`), e.g. one column block of a wider
/// matrix whose other blocks other products fill at the same time.
///
/// # Panics
/// As [`sgemm`], or if the view is not `a.m() x n`.
pub fn sgemm_view<B: PackB>(
    cpu: Cpu,
    a: &PackedA,
    b: &B,
    n: usize,
    c: MatMut<'_>,
    ep: Epilogue<'_>,
    tasks: usize,
) {
    sgemm_blocked(cpu, blocking::forced(), a, b, n, c, ep, tasks)
}

/// [`sgemm_view`] with the f32 kernels' MC, KC and NC set by `forced` as
/// [`BlockSizes::with`] applies them (`None`: the kernel's own), whatever
/// [`blocking::BLOCKS_VAR`] says: the tests run block sizes chosen for other CPUs through
/// it.
///
/// # Panics
/// As [`sgemm_view`].
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub fn sgemm_blocked<B: PackB>(
    cpu: Cpu,
    forced: Option<[usize; 3]>,
    a: &PackedA,
    b: &B,
    n: usize,
    c: MatMut<'_>,
    ep: Epilogue<'_>,
    tasks: usize,
) {
    let (m, k) = (a.m(), a.k());
    assert!(c.rows() == m && c.cols() == n, "C view is {}x{}, product is {m}x{n}", c.rows(), c.cols());
    match ep.bias {
        Bias::Row(r) => assert!(r.len() >= m),
        Bias::Col(cb) => assert!(cb.len() >= n),
        Bias::None => {}
    }
    if a.is_bf16() {
        #[cfg(target_arch = "x86_64")]
        return bf16::sgemm_view(a, b, c, ep, tasks);
        #[cfg(not(target_arch = "x86_64"))]
        panic!("bf16 panels on a CPU without a bf16 kernel");
    }
    assert_eq!(a.mr(), blocks(cpu).mr, "A packed for another kernel");
    dispatch!(cpu, t => parallel(t, forced, a, b, c, 0, 0, k, ep, tasks))
}

/// Values (`u32` pairs, or the f32 storage that holds them) a vector of `k` takes as
/// bf16 pairs for the bf16 GEMV: `k` rounded up to whole vectors of 32 bf16, two per value.
pub fn pairs_len(k: usize) -> usize {
    k.div_ceil(32) * 16
}

/// Whether `cpu` multiplies bf16 natively ([`bf16`]: AVX512_BF16): weights packed for it
/// and converted by [`PackedA::into_bf16`] then run products at bf16, twice the f32 rate.
pub fn has_bf16(cpu: Cpu) -> bool {
    #[cfg(target_arch = "x86_64")]
    return bf16::supported(cpu);
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = cpu;
        false
    }
}

/// Split the block of C at `(i0, j0)` into `tasks` parts along M (in whole MR panels) or
/// N (in units of the narrow kernel's width), wherever [`best_cut`] finds the least
/// loaded slowest part.
#[allow(clippy::too_many_arguments)]
fn parallel<K: MicroKernel, B: PackB>(
    kern: K,
    forced: Option<[usize; 3]>,
    a: &PackedA,
    b: &B,
    c: MatMut<'_>,
    i0: usize,
    j0: usize,
    k: usize,
    ep: Epilogue<'_>,
    tasks: usize,
) {
    // The blocks chosen for A (the model's), else the process's; then any forced ones.
    let tuned = match a.blocks() {
        Some(blocks) => BlockSizes::new(K::MR, K::NR, blocks),
        None => tuned_blocks::<K>(&Tuning::default_for_process()),
    };
    let bs = tuned.with(forced);
    let cost = (bs, K::NARROW_NR, B::PACK_COST_IN_TILES);
    split_tasks(cost, c, (i0, j0), tasks, &|c, (i, j)| serial(kern, bs, a, b, c, i, j, k, ep));
}

/// Split `c`, the block at `(i0, j0)` of the whole C, between `tasks` threads of the
/// current pool by recursive halving at [`best_cut`] (for these block sizes, narrow
/// width and packing cost), and run `serial` on each part with its position. Every
/// driver (f32, bf16, int8) splits this way.
fn split_tasks(
    cost: (BlockSizes, usize, f64),
    c: MatMut<'_>,
    (i0, j0): (usize, usize),
    tasks: usize,
    serial: &(dyn Fn(MatMut<'_>, (usize, usize)) + Sync),
) {
    let (blocks, narrow_nr, pack) = cost;
    let left = tasks / 2;
    let cut = if tasks > 1 { best_cut(blocks, narrow_nr, pack, c.rows(), c.cols(), left, tasks - left) } else { None };
    match cut {
        None => serial(c, (i0, j0)),
        Some(Cut::Cols(cut)) => {
            let (l, r) = c.split_cols(cut);
            rayon::join(
                || census::task(|| split_tasks(cost, l, (i0, j0), left, serial)),
                || census::task(|| split_tasks(cost, r, (i0, j0 + cut), tasks - left, serial)),
            );
        }
        Some(Cut::Rows(cut)) => {
            let (t, btm) = c.split_rows(cut);
            rayon::join(
                || census::task(|| split_tasks(cost, t, (i0, j0), left, serial)),
                || census::task(|| split_tasks(cost, btm, (i0 + cut, j0), tasks - left, serial)),
            );
        }
    }
}

/// Where to split a block of C between two groups of threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cut {
    /// Columns `[0, c)` and `[c, n)`.
    Cols(usize),
    /// Rows `[0, r)` and `[r, m)`.
    Rows(usize),
}

/// Relative time of one thread's `rows x cols` block: its micro-tiles (a panel that fits
/// the narrow kernel counts half) plus packing its columns of B at `pack` tiles a panel.
fn block_cost(blocks: BlockSizes, narrow_nr: usize, pack: f64, rows: usize, cols: usize) -> f64 {
    let BlockSizes { mr, nr, .. } = blocks;
    let last = match cols % nr {
        0 => 0.0,
        r if r <= narrow_nr && narrow_nr < nr => 0.5,
        _ => 1.0,
    };
    let panels = (cols / nr) as f64 + last;
    rows.div_ceil(mr) as f64 * panels + pack * panels
}

/// The cut of an `m x n` block between `left` and `right` threads that minimises the
/// slowest thread's share of [`block_cost`]. Candidates: N in units of the narrow
/// kernel's width (a block may end in a narrow panel; N = 729 then splits 11.5 + 11.5
/// panels rather than 11 + 12), and M in whole MR panels (every thread then packs all of
/// B). Ties go to whole N panels, then to any N cut, then to M. Each element's arithmetic
/// is the same in either kernel and any tile, so every cut gives bitwise identical
/// results; the cut depends on the shape and thread count alone. `None`: the block is a
/// single tile.
fn best_cut(
    blocks: BlockSizes,
    narrow_nr: usize,
    pack: f64,
    m: usize,
    n: usize,
    left: usize,
    right: usize,
) -> Option<Cut> {
    let BlockSizes { mr, nr, .. } = blocks;
    let unit = narrow_nr.min(nr);
    let (l, r) = (left as f64, right as f64);
    let load = |a: f64, b: f64| (a / l).max(b / r);
    let cost = |rows, cols| block_cost(blocks, narrow_nr, pack, rows, cols);
    let whole = (nr..n).step_by(nr).map(Cut::Cols);
    let parts = (unit..n).step_by(unit).filter(|c| c % nr != 0).map(Cut::Cols);
    let rows = (mr..m).step_by(mr).map(Cut::Rows);
    let mut best = (f64::INFINITY, None);
    for cut in whole.chain(parts).chain(rows) {
        let t = match cut {
            Cut::Cols(c) => load(cost(m, c), cost(m, n - c)),
            Cut::Rows(c) => load(cost(c, n), cost(m - c, n)),
        };
        // A relative margin keeps the preference order among near-equal cuts.
        if t < best.0 * (1.0 - 1e-9) {
            best = (t, Some(cut));
        }
    }
    best.1
}

/// The five loops over one thread's block of C (rows `i0..`, columns `j0..` of the whole)
/// with block sizes `bs`.
#[allow(clippy::too_many_arguments)]
fn serial<K: MicroKernel, B: PackB>(
    kern: K,
    bs: BlockSizes,
    a: &PackedA,
    b: &B,
    mut c: MatMut<'_>,
    i0: usize,
    j0: usize,
    k: usize,
    ep: Epilogue<'_>,
) {
    let BlockSizes { mr, nr, mc, kc, nc } = bs;
    let (m, n) = (c.rows(), c.cols());
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        return store_bias_only(&mut c, i0, j0, ep);
    }
    census::work(flops(m, n, k));
    let kc = balanced_kc(k, kc);
    let mc = balanced_mc(m, mc, mr);
    // A row-major B is read in place where the kernel gains by it ([`read_in_place`]), all
    // but a last panel that a kernel would read past (that one is packed).
    let direct = b.direct().filter(|&(_, ld)| K::B_IN_PLACE && read_in_place(ld));
    let need = if direct.is_some() { nr * kc.min(k) } else { nc.min(n.next_multiple_of(nr)) * kc.min(k) };
    scratch::with(&PACK_B, need, |buf| {
        // The stack tile for edge blocks, zeroed only if one occurs (4 KiB a call, for the
        // many small products of a Winograd layer).
        let mut tile = None;
        let mut rbias = [0.0f32; MAX_MR];
        let mut cbias = [0.0f32; MAX_NR];
        // jc: a block of NC columns of B and C.
        for jc in (0..n).step_by(nc) {
            let ncur = nc.min(n - jc);
            // The last panel of the block and whether it is packed in direct mode.
            let tail = ncur - ncur % nr;
            let pack_tail = ncur % nr != 0 && matches!(last_panel::<K>(ncur % nr), Panel::Stack);
            // pc: a KC slice of K; pack B's KC x NC block once for all of M.
            for pc in (0..k).step_by(kc) {
                let kcur = kc.min(k - pc);
                let first = pc == 0;
                let relu = ep.relu && pc + kcur == k;
                match direct {
                    None => b.pack(pc, pc + kcur, j0 + jc, j0 + jc + ncur, nr, buf),
                    Some(_) if pack_tail => b.pack(pc, pc + kcur, j0 + jc + tail, j0 + jc + ncur, nr, buf),
                    Some(_) => {}
                }
                // ic: MC rows of A (their KC slice stays in L2).
                for ic in (0..m).step_by(mc) {
                    let mcur = mc.min(m - ic);
                    // jr: one NR micro-panel of B (packed: in L1).
                    for jr in (0..ncur).step_by(nr) {
                        let w = nr.min(ncur - jr);
                        let bp = match direct {
                            Some((data, ld)) if !(pack_tail && jr == tail) => (&data[pc * ld + j0 + jc + jr..], ld),
                            Some(_) => (&buf[..nr * kcur], nr),
                            None => (&buf[(jr / nr) * nr * kcur..(jr / nr + 1) * nr * kcur], nr),
                        };
                        let col_bias = match ep.bias {
                            Bias::Col(cb) if first => {
                                let at = j0 + jc + jr;
                                cbias[..w].copy_from_slice(&cb[at..at + w]);
                                cbias[w..nr].fill(0.0);
                                Some(&cbias[..nr])
                            }
                            _ => None,
                        };
                        // ir: one MR micro-panel of packed A: one kernel call.
                        for ir in (ic..ic + mcur).step_by(mr) {
                            let h = mr.min(m - ir);
                            let ap = a.panel((i0 + ir) / mr, pc, pc + kcur);
                            let row_bias = match ep.bias {
                                Bias::Row(rb) if first => {
                                    rbias[..h].copy_from_slice(&rb[i0 + ir..i0 + ir + h]);
                                    rbias[h..mr].fill(0.0);
                                    Some(&rbias[..mr])
                                }
                                _ => None,
                            };
                            let st = Store { first, relu, row_bias, col_bias };
                            let at = (ir, jc + jr);
                            match last_panel::<K>(w) {
                                Panel::Edge { lead } => {
                                    if lead > 0 {
                                        edge_tile(kern, kcur, ap, bp, &mut c, at, (h, lead), &st, &mut tile);
                                    }
                                    for q in (lead..w).step_by(kernel::COLUMNS) {
                                        let cw = kernel::COLUMNS.min(w - q);
                                        let st = Store { col_bias: col_bias.map(|cb| &cb[q..]), ..st };
                                        let bq = (&bp.0[q..], bp.1);
                                        run_edge(kern, kcur, ap, bq, &mut c, (ir, jc + jr + q), (h, cw), &st);
                                    }
                                }
                                Panel::Whole | Panel::Stack => {
                                    edge_tile(kern, kcur, ap, bp, &mut c, at, (h, w), &st, &mut tile)
                                }
                            }
                        }
                    }
                }
            }
        }
    });
}

/// How [`serial`] runs a panel of `w` columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Panel {
    /// A full or narrow tile exactly as wide (reads its `w` columns only).
    Whole,
    /// The edge kernel for the columns from `lead` on, after a narrow tile for the first
    /// `lead` (reads its `w` columns only).
    Edge { lead: usize },
    /// The smallest kernel wider than `w`, on a stack tile (reads past `w`).
    Stack,
}

/// How [`serial`] runs a panel of `w` (at most NR) columns on kernel family `K`.
fn last_panel<K: MicroKernel>(w: usize) -> Panel {
    let nr = K::NR;
    let narrow = w <= K::NARROW_NR && K::NARROW_NR < nr;
    let width = if narrow { K::NARROW_NR } else { nr };
    // The edge kernel takes the last few columns (after a narrow tile in place if there
    // are more than the narrow width).
    let lead = if narrow { 0 } else { K::NARROW_NR };
    if w == width {
        Panel::Whole
    } else if K::EDGE && w.checked_sub(lead).is_some_and(|r| r <= EDGE_COLUMNS) {
        Panel::Edge { lead }
    } else {
        Panel::Stack
    }
}

/// Whether [`serial`] reads a row-major B with leading dimension `ld` in place rather
/// than packs it (for kernels with [`MicroKernel::B_IN_PLACE`]). The kernel then loads
/// each k row of a panel where it lies: no packing pass, and an M split no longer packs
/// all of B once per thread. Not when the rows are a multiple of 256 bytes apart (a
/// panel's rows would fall into a few L1 sets and evict each other), nor when they are
/// more than 64 KiB apart (a KC slice's rows on more pages than the TLB holds).
fn read_in_place(ld: usize) -> bool {
    !ld.is_multiple_of(64) && ld <= 16 * 1024
}

/// The `h x w` block of C at `(i, j)` by the kernel of that size or the smallest larger
/// one (the short kernel for at most `SHORT_MR` rows, the narrow one for at most
/// `NARROW_NR` columns), in place if the block is exactly its size, else on the stack
/// tile `tile` (made on first use) whose valid part is copied out.
#[allow(clippy::too_many_arguments)]
fn edge_tile<K: MicroKernel>(
    kern: K,
    kcur: usize,
    ap: &[f32],
    bp: (&[f32], usize),
    c: &mut MatMut<'_>,
    (i, j): (usize, usize),
    (h, w): (usize, usize),
    st: &Store<'_>,
    tile: &mut Option<[f32; MAX_MR * MAX_NR]>,
) {
    let (mr, nr) = (K::MR, K::NR);
    let narrow = w <= K::NARROW_NR && K::NARROW_NR < nr;
    let width = if narrow { K::NARROW_NR } else { nr };
    let short = h <= K::SHORT_MR && K::SHORT_MR < mr;
    let height = if short { K::SHORT_MR } else { mr };
    if h == height && w == width {
        run_tile(kern, kcur, ap, bp, c, (i, j), st, (short, narrow));
    } else {
        let tile = tile.get_or_insert([0.0; MAX_MR * MAX_NR]);
        if !st.first {
            c.read_block(i, j, h, w, tile, width);
        }
        let mut t = MatMut::new(&mut tile[..height * width], height, width, width);
        run_tile(kern, kcur, ap, bp, &mut t, (0, 0), st, (short, narrow));
        c.write_block(i, j, h, w, tile, width);
    }
}

/// Most columns at the end of a panel that the edge kernel takes (in calls of
/// `kernel::COLUMNS`): up to 8 it costs at most 8 FMAs per k step where the narrow tile
/// costs `MR` (12 with AVX-512).
const EDGE_COLUMNS: usize = 8;

/// The K slice depth: as few slices as `kc_max` allows, all of (nearly) equal depth.
/// K = 1200 with KC = 384 runs 300 x 4 rather than 384 x 3 + 48: a thin last slice pays
/// a full pass of C loads and stores (and a B packing pass) for a sliver of FMAs.
/// Depends on K alone, so every element still sums the same slices in the same order.
fn balanced_kc(k: usize, kc_max: usize) -> usize {
    k.div_ceil(k.div_ceil(kc_max))
}

/// The rows per A block for `m` rows: blocks of (nearly) equal height in whole `mr`
/// panels, as few as keep each at most 5/4 of `mc_max`. M = 128 with MC = 120 runs one
/// block of 128 rows rather than 120 + 8: a thin last block pays a whole pass over B's
/// micro-panels (each fetched into L1 again) for one short tile. Row blocks do not change
/// any element's sums.
fn balanced_mc(m: usize, mc_max: usize, mr: usize) -> usize {
    let blocks = (4 * m).div_ceil(5 * mc_max).max(1);
    m.div_ceil(blocks).next_multiple_of(mr).max(mr)
}

/// Floating-point operations of an `m x n x k` product, as [`census::work`] counts them.
pub(crate) fn flops(m: usize, n: usize, k: usize) -> f64 {
    2.0 * m as f64 * n as f64 * k as f64
}

/// K = 0: C is the bias alone (then ReLU).
fn store_bias_only(c: &mut MatMut<'_>, i0: usize, j0: usize, ep: Epilogue<'_>) {
    let (m, n) = (c.rows(), c.cols());
    let mut row = vec![0.0f32; n];
    for i in 0..m {
        for (j, v) in row.iter_mut().enumerate() {
            let x = match ep.bias {
                Bias::Row(r) => r[i0 + i],
                Bias::Col(cb) => cb[j0 + j],
                Bias::None => 0.0,
            };
            *v = if ep.relu { relu(x) } else { x };
        }
        c.write_block(i, 0, 1, n, &row, n);
    }
}

#[cfg(test)]
mod tests {
    //! Small enough for Miri (`cargo miri test --lib gemm`): every kernel this build runs,
    //! edge tiles, several K slices, thread splits, the GEMV, against plain loops. Under
    //! Miri this checks the unsafe pointer code of the kernels and of `MatMut`.
    use super::*;

    /// `C = A B` in plain loops (small integers: every product and sum is exact).
    fn product(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn small_products_are_exact() {
        for cpu in Cpu::all() {
            let b = blocks(cpu);
            for (m, n, k) in [(1, 1, 1), (b.mr + 1, b.nr + 3, 3), (2 * b.mr - 1, 2 * b.nr + 1, 5), (3, b.nr - 1, 0)] {
                let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
                let bm: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 - 2.0).collect();
                let bias: Vec<f32> = (0..m).map(|i| i as f32).collect();
                let packed = PackedA::pack(&a, m, k, b.mr);
                let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
                let mut c = vec![f32::NAN; m * n];
                let ep = Epilogue { bias: Bias::Row(&bias), relu: false };
                pool.install(|| sgemm(cpu, &packed, &RowMajor { data: &bm, ld: n }, n, &mut c, n, ep));
                let want = product(m, n, k, &a, &bm);
                for i in 0..m {
                    for j in 0..n {
                        assert_eq!(c[i * n + j], want[i * n + j] + bias[i], "{} {m}x{n}x{k}", cpu.isa());
                    }
                }
            }
        }
    }

    #[test]
    fn row_blocks_are_balanced_whole_panels() {
        assert_eq!(balanced_mc(128, 120, 12), 132, "one block, not 120 + 8");
        assert_eq!(balanced_mc(384, 120, 12), 132, "three blocks, not 120 x 3 + 24");
        assert_eq!(balanced_mc(192, 120, 6), 96);
        assert_eq!(balanced_mc(96, 120, 12), 96);
        assert_eq!(balanced_mc(5, 120, 12), 12);
        for m in 1..600 {
            let mc = balanced_mc(m, 120, 12);
            assert!(mc.is_multiple_of(12) && mc <= 150 + 12, "{m}: {mc}");
            assert!(m.div_ceil(mc) <= (4 * m).div_ceil(600).max(1), "{m}: {mc}");
        }
    }

    #[test]
    fn cuts_balance_the_work() {
        let b = BlockSizes { mr: 12, nr: 32, mc: 120, kc: 384, nc: 512 };
        // conv2: 23 panels split 11.5 + 11.5 (the left part ends in a narrow panel).
        assert_eq!(best_cut(b, 16, 1.25, 128, 729, 1, 1), Some(Cut::Cols(368)));
        // Even panel counts split in whole panels.
        assert_eq!(best_cut(b, 16, 1.25, 96, 64 * 32, 1, 1), Some(Cut::Cols(32 * 32)));
        // Few columns, many rows: M, unless B is costly to pack (im2col).
        assert_eq!(best_cut(b, 16, 1.25, 384, 169, 1, 1), Some(Cut::Rows(192)));
        assert_eq!(best_cut(b, 16, 5.0, 384, 169, 1, 1), Some(Cut::Cols(96)));
        // Uneven thread groups get proportional shares.
        assert_eq!(best_cut(b, 16, 1.25, 96, 96 * 32, 1, 2), Some(Cut::Cols(32 * 32)));
        // Every cut is strictly inside the block, for any shape.
        for (m, n) in [(1, 2), (2, 1), (13, 17), (12, 33), (25, 16), (1, 1000), (1000, 1)] {
            for (l, r) in [(1, 1), (1, 2), (2, 3)] {
                match best_cut(b, 16, 1.25, m, n, l, r) {
                    Some(Cut::Cols(c)) => assert!(0 < c && c < n, "{m}x{n}: cols {c}"),
                    Some(Cut::Rows(c)) => assert!(0 < c && c < m, "{m}x{n}: rows {c}"),
                    None => assert!(m <= 12 && n <= 16, "{m}x{n} not split"),
                }
            }
        }
    }

    #[test]
    fn small_gemvs_are_exact() {
        // W x^T in plain loops, as y[vector][row].
        let dots = |w: &[f32], x: &[f32], rows: usize, vecs: usize, k: usize| -> Vec<f32> {
            let mut y = vec![0.0f32; vecs * rows];
            for b in 0..vecs {
                for r in 0..rows {
                    y[b * rows + r] = (0..k).map(|p| w[r * k + p] * x[b * k + p]).sum();
                }
            }
            y
        };
        for cpu in Cpu::all() {
            let (rows, vecs, k) = (6, 5, 19);
            let w: Vec<f32> = (0..rows * k).map(|i| (i % 3) as f32).collect();
            let x: Vec<f32> = (0..vecs * k).map(|i| (i % 4) as f32).collect();
            let mut y = vec![0.0f32; vecs * (rows + 1)];
            gemv(cpu, &w, k, &x, &mut MatMut::new(&mut y, vecs, rows, rows + 1));
            let want = dots(&w, &x, rows, vecs, k);
            for b in 0..vecs {
                assert_eq!(&y[b * (rows + 1)..b * (rows + 1) + rows], &want[b * rows..(b + 1) * rows]);
            }
        }
        // Batch > 4 (groups after the first prefetch the next rows), and W longer than the
        // rows computed (the block after them is prefetched, never computed).
        for cpu in Cpu::all() {
            let (rows, extra, vecs, k) = (9, 5, 9, 37);
            let w: Vec<f32> = (0..(rows + extra) * k).map(|i| (i % 5) as f32 - 2.0).collect();
            let x: Vec<f32> = (0..vecs * k).map(|i| (i % 3) as f32).collect();
            let mut y = vec![f32::NAN; vecs * rows];
            gemv(cpu, &w, k, &x, &mut MatMut::new(&mut y, vecs, rows, rows));
            assert_eq!(y, dots(&w, &x, rows, vecs, k), "{}", cpu.isa());
        }
    }
}
