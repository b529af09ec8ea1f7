//! The model: a validated weight file, its plan compiled into steps, the kernels chosen
//! for this CPU, and a thread pool sized by the caller.
//!
//! `Model` is `Send + Sync`. Every method takes `&self`; any number of threads may call
//! [`Model::infer`] / [`Model::infer_into`] on one model at once and get the same results
//! as sequential calls. Calls are admitted in arrival order, at most
//! [`ModelBuilder::max_concurrency`] at once (`gate`); the others wait without
//! allocating. Each running call borrows a [`workspace::Workspace`] from a small cache (or
//! makes one), so memory is bounded by the concurrency, not by the number of callers,
//! and once every slot has run a batch of a given size the steady state allocates
//! nothing. With [`ModelBuilder::batching`], single-image calls that arrive while the
//! model is busy run together as one batch (`batch`).

mod batch;
mod builder;
mod compile;
mod gate;
mod workspace;

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rayon::prelude::*;

pub use builder::ModelBuilder;
use compile::{I8Codes, LinearWeight, Step};
use workspace::{Workspace, WorkspaceSize};

use crate::base::census::{self, Partition};
use crate::base::scalar::relu;
use crate::cpu::{Cpu, Isa};
use crate::error::{Error, Result};
use crate::ops;
use crate::plan::{Layer, Plan, Preprocess, Shape};
use crate::precision::Precision;
use crate::weights::{OpenMode, WeightFile};

/// Default cap on the memory one inference call may use for activations and scratch.
pub const DEFAULT_MAX_WORKSPACE_BYTES: u64 = 8 << 30;

/// An AlexNet-family network ready to run.
pub struct Model {
    weights: WeightFile,
    shapes: Vec<Shape>,
    steps: Vec<Step>,
    cpu: Cpu,
    /// The tuning table's choice the conv weights were packed with.
    tuning: crate::tuning::Tuning,
    precision: Precision,
    threads: usize,
    pool: rayon::ThreadPool,
    /// [`crate::base::scratch::raised`]'s count when the pool's threads were last grown to
    /// the scratch marks (`usize::MAX`: never).
    presized: std::sync::atomic::AtomicUsize,
    size: WorkspaceSize,
    workspaces: Mutex<Vec<Workspace>>,
    max_workspace_bytes: u64,
    gate: gate::Gate,
    batcher: Option<batch::Batcher>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("input", &self.input_shape())
            .field("classes", &self.num_classes())
            .field("isa", &self.cpu.isa())
            .field("precision", &self.precision)
            .field("threads", &self.threads)
            .field("weights", &self.weights)
            .finish()
    }
}

impl Model {
    /// The arithmetic the model runs in (see [`ModelBuilder::precision`]).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Options for opening a model: threads, ISA, mapped or owned, checksum, precision.
    pub fn builder() -> ModelBuilder {
        ModelBuilder::default()
    }

    /// Memory-map and validate the weight file at `path`, with default options.
    ///
    /// No weight bytes are copied: tensors are read in place from the map. The file must
    /// not be truncated or rewritten while the model lives (the OS would deliver SIGBUS
    /// on access); use [`Model::open_owned`] when that cannot be promised.
    pub fn open(path: impl AsRef<Path>) -> Result<Model> {
        Model::builder().open(path)
    }

    /// Read the weight file into memory and validate it: immune to later file changes.
    pub fn open_owned(path: impl AsRef<Path>) -> Result<Model> {
        Model::builder().mode(OpenMode::Owned).open(path)
    }

    /// Validate and load a weight file's bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Model> {
        Model::builder().from_bytes(bytes)
    }

    /// The network plan.
    pub fn plan(&self) -> &Plan {
        self.weights.plan()
    }

    /// The weight file (tensor table, mapping mode).
    pub fn weight_file(&self) -> &WeightFile {
        &self.weights
    }

    /// Input `[channels, height, width]` of one image.
    pub fn input_shape(&self) -> [usize; 3] {
        self.plan().input.map(|d| d as usize)
    }

    /// Values per input image.
    pub fn input_len(&self) -> usize {
        self.shapes[0].len()
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.shapes.last().map(Shape::len).unwrap_or(0)
    }

    /// Preprocessing metadata for images.
    pub fn preprocess(&self) -> &Preprocess {
        &self.plan().preprocess
    }

    /// Class labels stored in the file (may be empty).
    pub fn labels(&self) -> &[String] {
        &self.plan().labels
    }

    /// The ISA whose kernels this model runs.
    pub fn isa(&self) -> Isa {
        self.cpu.isa()
    }

    /// The core whose entry of the tuning table this model runs (`docs/architecture.md`,
    /// "Choices per microarchitecture"): the one this CPU reports, or the one forced by
    /// [`ModelBuilder::uarch`] or `ALEXNET_UARCH`.
    pub fn uarch(&self) -> crate::Uarch {
        self.tuning.uarch
    }

    /// The whole choice: the entry, whether it was forced, the L2 it was sized for.
    #[cfg(feature = "internals")]
    #[doc(hidden)]
    pub fn tuning(&self) -> crate::tuning::Tuning {
        self.tuning
    }

    /// The f32 GEMM's tile and cache blocks for this model's ISA and tuning.
    #[cfg(feature = "internals")]
    #[doc(hidden)]
    pub fn gemm_blocks(&self) -> crate::gemm::BlockSizes {
        crate::gemm::blocks_for(self.cpu, &self.tuning)
    }

    /// Threads in the model's pool.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Activation shapes: the input, then each layer's output.
    pub fn shapes(&self) -> &[Shape] {
        &self.shapes
    }

    /// Class probabilities for a batch: `input` is `[N, C, H, W]` flattened, the result
    /// `[N, classes]`. A softmax is applied when the network itself ends in logits.
    pub fn infer(&self, input: &[f32]) -> Result<Vec<f32>> {
        let batch = self.batch_of(input)?;
        // The result counts against the cap too, and is checked before it is allocated.
        let len = self.admit(batch, true)?;
        let mut out = vec![0.0f32; len];
        self.infer_into(input, &mut out)?;
        Ok(out)
    }

    /// Check a batch against the workspace cap (plus the `[N, classes]` result when the
    /// call allocates it) before anything sized by it is allocated; the output length.
    fn admit(&self, batch: usize, owned_output: bool) -> Result<usize> {
        let expected = batch.checked_mul(self.num_classes()).ok_or(Error::Overflow("output length"))?;
        let mut bytes = self.size.bytes(batch).ok_or(Error::Overflow("workspace size"))?;
        if owned_output {
            let out = (expected as u64).checked_mul(4).ok_or(Error::Overflow("output length"))?;
            bytes = bytes.checked_add(out).ok_or(Error::Overflow("workspace size"))?;
        }
        if bytes > self.max_workspace_bytes {
            return Err(Error::BatchTooLarge { batch, limit_bytes: self.max_workspace_bytes });
        }
        Ok(expected)
    }

    /// [`Model::infer`] into a caller's buffer of `N * classes` values.
    pub fn infer_into(&self, input: &[f32], output: &mut [f32]) -> Result<()> {
        self.run(input, output, true)
    }

    /// [`Model::infer`], giving up with [`Error::Timeout`] if the call cannot start within
    /// `timeout` (calls wait their turn in arrival order). A call that gives up has done no
    /// work; once started it runs to the end. Calls with a timeout are never batched.
    pub fn infer_timeout(&self, input: &[f32], timeout: Duration) -> Result<Vec<f32>> {
        let batch = self.batch_of(input)?;
        let len = self.admit(batch, true)?;
        let mut out = vec![0.0f32; len];
        self.infer_into_timeout(input, &mut out, timeout)?;
        Ok(out)
    }

    /// [`Model::infer_into`] with a timeout, as [`Model::infer_timeout`].
    pub fn infer_into_timeout(&self, input: &[f32], output: &mut [f32], timeout: Duration) -> Result<()> {
        // A timeout too long to add to now is no deadline at all (but still unbatched).
        self.run_inner(input, output, true, None, Wait::Until(Instant::now().checked_add(timeout)))
    }

    /// Calls that may run at once ([`ModelBuilder::max_concurrency`]).
    pub fn max_concurrency(&self) -> usize {
        self.gate.max()
    }

    /// Images a shared batch holds at most ([`ModelBuilder::batching`]); `None`: calls
    /// are not batched.
    pub fn max_batch(&self) -> Option<usize> {
        self.batcher.as_ref().map(batch::Batcher::max_batch)
    }

    /// With batching on: how many shared batches have run and how many images they held
    /// (their ratio is the mean batch size); `None` when calls are not batched.
    pub fn batch_counts(&self) -> Option<(u64, u64)> {
        self.batcher.as_ref().map(batch::Batcher::counts)
    }

    /// The network's own output (logits if it does not end in softmax) into `output`.
    pub fn infer_raw_into(&self, input: &[f32], output: &mut [f32]) -> Result<()> {
        self.run(input, output, false)
    }

    fn batch_of(&self, input: &[f32]) -> Result<usize> {
        let per = self.input_len();
        if input.is_empty() {
            return Err(Error::EmptyBatch);
        }
        if !input.len().is_multiple_of(per) {
            let [c, h, w] = self.input_shape();
            return Err(Error::InputLength {
                per_image: per,
                found: input.len(),
                shape: format!("[N, {c}, {h}, {w}]"),
            });
        }
        Ok(input.len() / per)
    }

    /// [`Model::infer_into`] that also records each layer's wall time into `times`
    /// (one entry per plan layer; a ReLU fused into its producer records zero).
    pub fn infer_timed(&self, input: &[f32], output: &mut [f32], times: &mut [std::time::Duration]) -> Result<()> {
        if times.len() != self.steps.len() {
            return Err(Error::InvalidArgument(format!(
                "{} layer timings requested, the plan has {} layers",
                times.len(),
                self.steps.len()
            )));
        }
        self.run_inner(input, output, true, Some(times), Wait::Batchable)
    }

    /// Work per image of each layer: (FLOPs, weight bytes read), in plan order. Convolutions
    /// and linear layers count 2 FLOPs per multiply-add; other layers count as 0 FLOPs.
    pub fn layer_costs(&self) -> Vec<(u64, u64)> {
        self.steps
            .iter()
            .map(|s| match s {
                Step::Conv { out, geom, .. } => {
                    // FLOPs of the direct convolution, whatever the algorithm.
                    let m = *out;
                    (2 * (m * geom.k() * geom.n()) as u64, (m * geom.k() * 4) as u64)
                }
                Step::ConvI8 { out, geom, .. } => {
                    let m = *out;
                    (2 * (m * geom.k() * geom.n()) as u64, (m * geom.k()) as u64)
                }
                Step::Linear { m, k, weight, .. } => {
                    let bytes = match weight {
                        LinearWeight::F32(_) | LinearWeight::OwnedF32(_) => 4,
                        LinearWeight::Bf16(_) | LinearWeight::OwnedBf16(_) => 2,
                        LinearWeight::I8 { .. } => 1,
                    };
                    (2 * (m * k) as u64, (bytes * m * k) as u64)
                }
                _ => (0, 0),
            })
            .collect()
    }

    /// How each layer's work is cut into tasks on a pool of `threads` for `batch` images,
    /// one entry per plan layer: the tasks it offers the pool and the largest one's share
    /// of its work (`1 / threads` is an even split; a layer fused into its producer or a
    /// flatten has none). A model of the split, not a timing: it runs the network once
    /// on zeros on a pool of that many threads made for the purpose (any number, on any
    /// machine), counting each task's work as the kernels report it (floating-point
    /// operations for products, values moved for the rest). Neither this model's pool
    /// nor its calls are touched.
    pub fn partition(&self, threads: usize, batch: usize) -> Result<Vec<Partition>> {
        let batch = batch.max(1);
        let bytes = self.size.bytes(batch).ok_or(Error::Overflow("workspace size"))?;
        if bytes > self.max_workspace_bytes {
            return Err(Error::BatchTooLarge { batch, limit_bytes: self.max_workspace_bytes });
        }
        let _one = census::exclusive();
        let pool = census::pool(threads.max(1)).map_err(|e| Error::InvalidArgument(format!("thread pool: {e}")))?;
        let input = vec![0.0f32; batch * self.input_len()];
        let mut ws = Workspace::default();
        ws.ensure(&self.size, batch);
        let mut tasks = vec![Vec::new(); self.steps.len()];
        census::take();
        pool.install(|| self.forward(&input, batch, &mut ws, None, None, Some(&mut tasks)));
        Ok(tasks.iter().map(|t| Partition::of(t)).collect())
    }

    fn run(&self, input: &[f32], output: &mut [f32], probabilities: bool) -> Result<()> {
        self.run_inner(input, output, probabilities, None, Wait::Batchable)
    }

    /// Check the call, then run it: in a shared batch (a single image's probabilities,
    /// no timings, no deadline, batching on), else on its own once admitted.
    fn run_inner(
        &self,
        input: &[f32],
        output: &mut [f32],
        probabilities: bool,
        times: Option<&mut [std::time::Duration]>,
        wait: Wait,
    ) -> Result<()> {
        let batch = self.batch_of(input)?;
        let classes = self.num_classes();
        let expected = batch.checked_mul(classes).ok_or(Error::Overflow("output length"))?;
        if output.len() != expected {
            return Err(Error::OutputLength { expected, found: output.len() });
        }
        self.admit(batch, false)?;
        if let Some(b) = self.batcher.as_ref().filter(|_| batch == 1 && probabilities && times.is_none()) {
            if matches!(wait, Wait::Batchable) {
                match b.join(input) {
                    batch::Role::Follower { buf, batch, row } => return b.wait(buf, batch, row, output),
                    batch::Role::Leader { buf, .. } => {
                        let _pass = self.gate.enter(None);
                        let mut sealed = b.seal(buf, self.gate.others_in_flight());
                        let n = sealed.images;
                        let (len, rows) = (self.input_len(), n * classes);
                        let (inputs, outputs) = (&sealed.inputs[..n * len], &mut sealed.outputs[..rows]);
                        self.execute(inputs, n, outputs, true, None);
                        sealed.publish(true, output);
                        return Ok(());
                    }
                    batch::Role::Alone => {}
                }
            }
        }
        let started = Instant::now();
        let deadline = match wait {
            Wait::Batchable => None,
            Wait::Until(d) => d,
        };
        let _pass = self.gate.enter(deadline).ok_or_else(|| Error::Timeout {
            waited_ms: started.elapsed().as_millis().try_into().unwrap_or(u64::MAX),
        })?;
        self.execute(input, batch, output, probabilities, times);
        Ok(())
    }

    /// Run an admitted, checked call: `batch` images of `input` into `output`.
    fn execute(
        &self,
        input: &[f32],
        batch: usize,
        output: &mut [f32],
        probabilities: bool,
        times: Option<&mut [std::time::Duration]>,
    ) {
        let classes = self.num_classes();
        let expected = batch * classes;
        let mut ws = self.take_workspace();
        ws.ensure(&self.size, batch);
        self.pool.install(|| self.forward(input, batch, &mut ws, times, None, None));
        // When a scratch buffer has met a larger request than this pool's threads were
        // grown for (in this model or another), grow every pool thread's buffers now
        // (this allocates, once per new size), so that a thread meeting that size in a
        // later call, whichever work it is handed, does not.
        let raised = crate::base::scratch::raised();
        if self.presized.swap(raised, std::sync::atomic::Ordering::Relaxed) != raised {
            self.pool.broadcast(|_| crate::base::scratch::presize(&scratch_kinds()));
        }
        output.copy_from_slice(&ws.act[ws.current][..expected]);
        if probabilities && !self.plan().ends_in_softmax() {
            ops::softmax::softmax_rows(output, classes);
        }
        self.give_back(ws);
    }

    fn take_workspace(&self) -> Workspace {
        let mut cache = self.workspaces.lock().unwrap_or_else(|e| e.into_inner());
        cache.pop().unwrap_or_default()
    }

    fn give_back(&self, ws: Workspace) {
        let mut cache = self.workspaces.lock().unwrap_or_else(|e| e.into_inner());
        cache.push(ws);
    }

    /// The range (minimum and maximum, with 0) of the input of every conv and linear
    /// layer over the images of `input`, by weight name, in plan order: what calibration
    /// ([`crate::weights::format::input_quant_values`]) turns into fixed int8 input
    /// parameters. Run on an f32 model, so that the ranges are those of the exact network.
    pub fn input_ranges(&self, input: &[f32]) -> Result<Vec<(String, (f32, f32))>> {
        let batch = self.batch_of(input)?;
        self.admit(batch, false)?;
        let _pass = self.gate.enter(None);
        let mut ranges = vec![None; self.steps.len()];
        let mut ws = self.take_workspace();
        ws.ensure(&self.size, batch);
        self.pool.install(|| self.forward(input, batch, &mut ws, None, Some(&mut ranges), None));
        self.give_back(ws);
        let names = self.plan().layers.iter().map(|l| match l {
            Layer::Conv(c) => Some(&c.name),
            Layer::Linear(l) => Some(&l.name),
            _ => None,
        });
        let found = names.zip(ranges).filter_map(|(n, r)| Some((format!("{}.weight", n?), r?)));
        Ok(found.collect())
    }

    /// Walk the steps over ping-pong activation buffers (recording each layer's time, and
    /// the range of each conv and linear layer's input, when asked).
    fn forward(
        &self,
        input: &[f32],
        batch: usize,
        ws: &mut Workspace,
        mut times: Option<&mut [std::time::Duration]>,
        mut ranges: Option<&mut [Option<(f32, f32)>]>,
        mut tasks: Option<&mut [Vec<f64>]>,
    ) {
        ws.current = 0;
        // A first step that writes elsewhere reads the caller's input where it lies; an
        // in-place or empty one gets a copy in the first buffer.
        let direct = self.steps.first().is_some_and(Step::swaps);
        if !direct {
            ws.act[0][..input.len()].copy_from_slice(input);
        }
        for (i, step) in self.steps.iter().enumerate() {
            let started = times.as_ref().map(|_| std::time::Instant::now());
            let (in_len, out_len) = (self.shapes[i].len(), self.shapes[i + 1].len());
            let (cur, other, scratch, phased) = ws.split();
            let cur = &mut cur[..batch * in_len];
            let given = (i == 0 && direct).then(|| &input[..batch * in_len]);
            if let Some(r) = ranges.as_deref_mut().filter(|_| step.weighted()) {
                let x = given.unwrap_or(cur);
                r[i] = Some(x.iter().fold((0.0f32, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v))));
            }
            // One task: what the step runs on this thread outside the tasks it shares out.
            census::task(|| {
                let src = given.unwrap_or(cur);
                let dst = &mut other[..batch * out_len];
                match step {
                    Step::Conv { weights, bias, geom, relu, .. } => {
                        let b = self.weights.f32s(bias.clone());
                        ops::conv::conv2d(self.cpu, src, batch, geom, weights, b, *relu, dst, scratch, phased);
                    }
                    Step::ConvI8 { weights, bias, geom, relu, quant, .. } => {
                        let b = self.weights.f32s(bias.clone());
                        let kern = crate::gemm::kernel::i8::Kernel::for_cpu(self.cpu);
                        ops::conv_i8::conv2d_i8(kern, src, batch, geom, weights, b, (*quant, *relu), dst, phased);
                    }
                    // Standalone pooling and LRN: whole images shared out over the pool.
                    Step::MaxPool { pool, input, out } => {
                        let pairs = dst.par_chunks_mut(out_len).zip(src.par_chunks(in_len));
                        pairs.for_each(|(y, x)| {
                            census::task(|| ops::maxpool::maxpool(self.cpu, x, *input, pool, *out, y))
                        });
                    }
                    Step::AvgPool { pool, input, out } => {
                        let pairs = dst.par_chunks_mut(out_len).zip(src.par_chunks(in_len));
                        pairs.for_each(|(y, x)| {
                            census::task(|| ops::avgpool::avgpool(self.cpu, x, *input, pool, *out, y))
                        });
                    }
                    Step::AdaptiveAvgPool { pool, input } => {
                        let pairs = dst.par_chunks_mut(out_len).zip(src.par_chunks(in_len));
                        pairs.for_each(|(y, x)| {
                            census::task(|| ops::avgpool::adaptive_avgpool(self.cpu, x, *input, pool, y))
                        });
                    }
                    Step::Lrn { lrn, c, hw } => {
                        let pairs = dst.par_chunks_mut(out_len).zip(src.par_chunks(in_len));
                        pairs.for_each(|(y, x)| census::task(|| ops::lrn::lrn(x, *c, *hw, lrn, y)));
                    }
                    Step::LrnWithin { lrn, input } => {
                        let pairs = dst.par_chunks_mut(out_len).zip(src.par_chunks(in_len));
                        pairs.for_each(|(y, x)| census::task(|| ops::lrn::lrn_within(self.cpu, x, *input, lrn, y)));
                    }
                    Step::Linear { weight, bias, m, k, relu } => {
                        let b = self.weights.f32s(bias.clone());
                        self.linear(weight, src, batch, b, (*m, *k, *relu), dst, phased);
                    }
                    Step::Relu => {
                        census::work(cur.len() as f64);
                        cur.iter_mut().for_each(|v| *v = relu(*v))
                    }
                    Step::Softmax => {
                        census::work(cur.len() as f64);
                        ops::softmax::softmax_rows(cur, in_len)
                    }
                    Step::PoolLrn(p) if batch > 1 => ops::pool_lrn::pool_lrn_batch(self.cpu, src, batch, p, dst),
                    Step::PoolLrn(p) => ops::pool_lrn::pool_lrn(self.cpu, src, p, dst),
                    Step::Flatten | Step::Fused => {}
                }
            });
            if let Some(t) = tasks.as_deref_mut() {
                t[i] = census::take();
            }
            if step.swaps() {
                ws.current ^= 1;
            }
            if let (Some(t), Some(start)) = (times.as_deref_mut(), started) {
                t[i] = start.elapsed();
            }
        }
    }
}

impl Model {
    /// One linear layer: on the bf16 kernel when the model is bf16 on a CPU that
    /// multiplies bf16 natively (input rounded to bf16 into `pairs`), else on the f32
    /// FMA kernel reading the weights as stored.
    #[allow(clippy::too_many_arguments)]
    fn linear(
        &self,
        weight: &LinearWeight,
        src: &[f32],
        batch: usize,
        b: &[f32],
        (m, k, relu): (usize, usize, bool),
        dst: &mut [f32],
        pairs: &mut [f32],
    ) {
        let cpu = self.cpu;
        #[cfg(target_arch = "x86_64")]
        // The AVX-512 kernels, and a CPU with AVX512_BF16 (the token proves it).
        if self.precision == Precision::Bf16 && matches!(cpu, Cpu::Avx512(_)) {
            if let Some(tok) = crate::gemm::kernel::bf16::Avx512Bf16::new() {
                let w = match weight {
                    LinearWeight::Bf16(r) => Some(self.weights.bf16s(r.clone())),
                    LinearWeight::OwnedBf16(w) => Some(&w[..]),
                    _ => None,
                };
                if let Some(w) = w {
                    return ops::linear::linear_bf16(tok, src, batch, w, b, (m, k), relu, dst, pairs);
                }
            }
        }
        match weight {
            LinearWeight::I8 { codes, scales, sums, quant } => {
                let kern = crate::gemm::kernel::i8::Kernel::for_cpu(cpu);
                let codes = match codes {
                    I8Codes::File(r) => self.weights.i8s(r.clone()),
                    I8Codes::Owned(c) => &c[..],
                };
                ops::linear::linear_i8(kern, src, batch, (codes, scales, sums), b, (m, k), (*quant, relu), dst, pairs)
            }
            LinearWeight::OwnedF32(w) => ops::linear::linear(cpu, src, batch, w, b, m, k, relu, dst),
            LinearWeight::F32(r) => {
                ops::linear::linear(cpu, src, batch, self.weights.f32s(r.clone()), b, m, k, relu, dst)
            }
            LinearWeight::Bf16(r) => {
                ops::linear::linear(cpu, src, batch, self.weights.bf16s(r.clone()), b, m, k, relu, dst)
            }
            LinearWeight::OwnedBf16(w) => ops::linear::linear(cpu, src, batch, w, b, m, k, relu, dst),
        }
    }
}

/// How a call waits for its turn.
#[derive(Clone, Copy, Debug)]
enum Wait {
    /// As long as it takes; a single image may join a shared batch.
    Batchable,
    /// Until the deadline, if any; never batched.
    Until(Option<Instant>),
}

// A model is shared across threads by design; make the promise a compile-time check.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Model>();
};

/// Every kind of per-thread scratch buffer the inference path uses.
fn scratch_kinds() -> Vec<&'static std::thread::LocalKey<crate::base::scratch::Scratch>> {
    let common = [
        &crate::gemm::PACK_B,
        &crate::gemm::i8::PACK_QUADS,
        &ops::lrn::PLANE,
        &ops::maxpool::ROWS,
        &ops::pool_lrn::BAND,
        &ops::avgpool::COLUMNS,
    ];
    #[cfg(target_arch = "x86_64")]
    let bf16 = [&crate::gemm::bf16::PACK_F32, &crate::gemm::bf16::PACK_PAIRS];
    #[cfg(not(target_arch = "x86_64"))]
    let bf16: [&'static std::thread::LocalKey<crate::base::scratch::Scratch>; 0] = [];
    common.into_iter().chain(bf16).collect()
}
