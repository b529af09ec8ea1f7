//! The model: a validated weight file, its plan compiled into steps, the kernels chosen
//! for this CPU, and a thread pool sized by the caller.
//!
//! `Model` is `Send + Sync`. Every method takes `&self`; any number of threads may call
//! [`Model::infer`] / [`Model::infer_into`] on one model at once and get the same results
//! as sequential calls. Each call borrows a [`workspace::Workspace`] from a small cache
//! (or makes one), so once every concurrent caller has run a batch of a given size the
//! steady state allocates nothing.

mod workspace;

use std::ops::Range;
use std::path::Path;
use std::sync::Mutex;

use rayon::prelude::*;

use crate::cpu::Isa;
use crate::error::{Error, Result};
use crate::gemm::{Kernel, PackedA};
use crate::ops;
use crate::ops::im2col::ConvGeom;
use crate::plan::{Layer, Lrn, MaxPool, Plan, Preprocess, Shape};
use crate::weights::{OpenMode, WeightFile};
use workspace::{Workspace, WorkspaceSize};

/// Default cap on the memory one inference call may use for activations and scratch.
pub const DEFAULT_MAX_WORKSPACE_BYTES: u64 = 8 << 30;

/// One executable step, compiled from the plan with shapes resolved and ReLU fused.
#[derive(Clone, Debug)]
enum Step {
    /// Weights packed per group for the model's kernel at open.
    Conv {
        weights: Vec<PackedA>,
        /// Byte range of the bias in the file.
        bias: Range<usize>,
        /// Output channels (all groups).
        out: usize,
        geom: ConvGeom,
        relu: bool,
    },
    Relu,
    MaxPool {
        pool: MaxPool,
        input: [usize; 3],
        out: [usize; 2],
    },
    Lrn {
        lrn: Lrn,
        c: usize,
        hw: usize,
    },
    Flatten,
    Linear {
        weight: Range<usize>,
        bias: Range<usize>,
        m: usize,
        k: usize,
        relu: bool,
    },
    /// Max-pool and LRN in one pass (either order); the second layer of the pair is `Fused`.
    PoolLrn(ops::pool_lrn::PoolLrn),
    Softmax,
    /// A layer folded into the step before it (a ReLU into its producer's epilogue, the
    /// second half of a pool+LRN pair): nothing to do.
    Fused,
}

impl Step {
    /// True when the step writes a new buffer (false: it works in place).
    fn swaps(&self) -> bool {
        matches!(
            self,
            Step::Conv { .. } | Step::MaxPool { .. } | Step::Lrn { .. } | Step::Linear { .. } | Step::PoolLrn(_)
        )
    }
}

/// Options for opening a model.
#[derive(Clone, Debug, Default)]
pub struct ModelBuilder {
    threads: Option<usize>,
    isa: Option<Isa>,
    mode: OpenMode,
    verify_checksum: bool,
    max_workspace_bytes: Option<u64>,
}

impl ModelBuilder {
    /// Threads in the model's own pool (default: the machine's available parallelism).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads.max(1));
        self
    }

    /// Force an ISA (default: `ALEXNET_ISA` if set, else the best this CPU runs).
    /// Opening fails with [`Error::UnsupportedIsa`] if the CPU lacks it.
    pub fn isa(mut self, isa: Isa) -> Self {
        self.isa = Some(isa);
        self
    }

    /// Map the file (default) or read it into memory.
    pub fn mode(mut self, mode: OpenMode) -> Self {
        self.mode = mode;
        self
    }

    /// Verify the data checksum at open (reads every byte; off by default).
    pub fn verify_checksum(mut self, yes: bool) -> Self {
        self.verify_checksum = yes;
        self
    }

    /// Cap on activation + scratch memory per call; larger batches are refused.
    pub fn max_workspace_bytes(mut self, bytes: u64) -> Self {
        self.max_workspace_bytes = Some(bytes);
        self
    }

    /// Open and validate the weight file at `path`.
    pub fn open(self, path: impl AsRef<Path>) -> Result<Model> {
        let file = WeightFile::open(path, self.mode)?;
        self.build(file)
    }

    /// Validate and load a weight file held in memory.
    pub fn from_bytes(self, bytes: Vec<u8>) -> Result<Model> {
        self.build(WeightFile::from_bytes(bytes)?)
    }

    fn build(self, weights: WeightFile) -> Result<Model> {
        let isa = match self.isa {
            Some(isa) => isa.require()?,
            None => Isa::from_env()?,
        };
        if self.verify_checksum {
            weights.verify_checksum()?;
        }
        let threads =
            self.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("alexnet-{i}"))
            .build()
            .map_err(|e| Error::ThreadPool(e.to_string()))?;
        let kernel = Kernel::new(isa)?;
        let shapes = weights.plan().shapes()?;
        // Packing (and Winograd-transforming) the conv weights uses the model's threads.
        let steps = pool.install(|| compile(&weights, &shapes, kernel))?;
        // Per conv step: (channels in, channels out) alongside its geometry.
        let convs = || {
            steps.iter().zip(&shapes).filter_map(|(s, shape)| match (s, shape) {
                (Step::Conv { geom, out, .. }, Shape::Spatial { c, .. }) => Some((geom, *c, *out)),
                _ => None,
            })
        };
        let conv_scratch = convs().map(|(g, _, o)| ops::conv::scratch_len(g, o, 2) / 2).max().unwrap_or(0);
        let conv_fixed = convs().map(|(g, c, o)| ops::conv::fixed_scratch_len(g, c, o)).max().unwrap_or(0);
        let phased = convs().map(|(g, c, _)| ops::conv::phased_len(g, c)).max().unwrap_or(0);
        let size = WorkspaceSize::of(&shapes, conv_scratch, conv_fixed, phased);
        Ok(Model {
            weights,
            shapes,
            steps,
            kernel,
            threads,
            pool,
            size,
            workspaces: Mutex::new(Vec::new()),
            max_workspace_bytes: self.max_workspace_bytes.unwrap_or(DEFAULT_MAX_WORKSPACE_BYTES),
        })
    }
}

/// An AlexNet-family network ready to run.
pub struct Model {
    weights: WeightFile,
    shapes: Vec<Shape>,
    steps: Vec<Step>,
    kernel: Kernel,
    threads: usize,
    pool: rayon::ThreadPool,
    size: WorkspaceSize,
    workspaces: Mutex<Vec<Workspace>>,
    max_workspace_bytes: u64,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("input", &self.input_shape())
            .field("classes", &self.num_classes())
            .field("isa", &self.kernel.isa())
            .field("threads", &self.threads)
            .field("weights", &self.weights)
            .finish()
    }
}

/// Resolve the plan into steps: tensor ranges, geometry, ReLU fused into conv/linear.
fn compile(weights: &WeightFile, shapes: &[Shape], kernel: Kernel) -> Result<Vec<Step>> {
    let mr = kernel.blocks().mr;
    let plan = weights.plan();
    let mut steps: Vec<Step> = Vec::with_capacity(plan.layers.len());
    for (i, layer) in plan.layers.iter().enumerate() {
        let (inp, out) = (shapes[i], shapes[i + 1]);
        let step = match (layer, inp, out) {
            (Layer::Conv(cv), Shape::Spatial { c, h, w }, Shape::Spatial { h: oh, w: ow, .. }) => {
                let geom = ConvGeom {
                    cg: c / cv.groups as usize,
                    h,
                    w,
                    kh: cv.kernel[0] as usize,
                    kw: cv.kernel[1] as usize,
                    sh: cv.stride[0] as usize,
                    sw: cv.stride[1] as usize,
                    pads: cv.pads,
                    oh,
                    ow,
                };
                // Each group's OIHW weights packed into MR panels (Winograd-transformed
                // first for a 3x3 stride-1 layer).
                let wt = weights.tensor(&format!("{}.weight", cv.name))?;
                let groups = cv.groups as usize;
                let og = cv.out_channels as usize / groups;
                Step::Conv {
                    weights: ops::conv::pack_weights(wt, &geom, groups, og, mr),
                    bias: weights.tensor_range(&format!("{}.bias", cv.name))?,
                    out: cv.out_channels as usize,
                    geom,
                    relu: cv.relu,
                }
            }
            (Layer::Relu, ..) => {
                // Fuse into the producer's epilogue when there is one.
                match steps.last_mut() {
                    Some(Step::Conv { relu, .. }) | Some(Step::Linear { relu, .. }) if !*relu => {
                        *relu = true;
                        // Keep step indices aligned with layers: a no-op stands in.
                        Step::Fused
                    }
                    _ => Step::Relu,
                }
            }
            (Layer::MaxPool(p), Shape::Spatial { c, h, w }, Shape::Spatial { h: oh, w: ow, .. }) => {
                Step::MaxPool { pool: p.clone(), input: [c, h, w], out: [oh, ow] }
            }
            (Layer::Lrn(l), Shape::Spatial { c, h, w }, _) => Step::Lrn { lrn: l.clone(), c, hw: h * w },
            (Layer::Flatten, ..) => Step::Flatten,
            (Layer::Linear(l), Shape::Flat(k), Shape::Flat(m)) => Step::Linear {
                weight: weights.tensor_range(&format!("{}.weight", l.name))?,
                bias: weights.tensor_range(&format!("{}.bias", l.name))?,
                m,
                k,
                relu: l.relu,
            },
            (Layer::Softmax, ..) => Step::Softmax,
            (layer, ..) => {
                return Err(Error::InvalidLayer { index: i, kind: layer.kind(), reason: format!("input shape {inp}") })
            }
        };
        steps.push(step);
    }
    fuse_pool_lrn(&mut steps, shapes);
    Ok(steps)
}

/// Merge each max-pool directly followed by an LRN, or LRN followed by max-pool, into one
/// [`Step::PoolLrn`]; the second step of the pair becomes [`Step::Fused`].
fn fuse_pool_lrn(steps: &mut [Step], shapes: &[Shape]) {
    use ops::pool_lrn::{Order, PoolLrn};
    for i in 0..steps.len().saturating_sub(1) {
        let (Shape::Spatial { c, h, w }, Shape::Spatial { h: oh, w: ow, .. }) = (shapes[i], shapes[i + 2]) else {
            continue;
        };
        let fused = match (&steps[i], &steps[i + 1]) {
            (Step::MaxPool { pool, .. }, Step::Lrn { lrn, .. }) => PoolLrn {
                pool: pool.clone(),
                lrn: lrn.clone(),
                order: Order::PoolThenLrn,
                input: [c, h, w],
                out: [oh, ow],
            },
            (Step::Lrn { lrn, .. }, Step::MaxPool { pool, .. }) => PoolLrn {
                pool: pool.clone(),
                lrn: lrn.clone(),
                order: Order::LrnThenPool,
                input: [c, h, w],
                out: [oh, ow],
            },
            _ => continue,
        };
        steps[i] = Step::PoolLrn(fused);
        steps[i + 1] = Step::Fused;
    }
}

impl Model {
    /// Options for opening a model: threads, ISA, mapped or owned, checksum.
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
        self.kernel.isa()
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
        self.run_inner(input, output, true, Some(times))
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
                Step::Linear { m, k, .. } => (2 * (m * k) as u64, (4 * m * k) as u64),
                _ => (0, 0),
            })
            .collect()
    }

    fn run(&self, input: &[f32], output: &mut [f32], probabilities: bool) -> Result<()> {
        self.run_inner(input, output, probabilities, None)
    }

    fn run_inner(
        &self,
        input: &[f32],
        output: &mut [f32],
        probabilities: bool,
        times: Option<&mut [std::time::Duration]>,
    ) -> Result<()> {
        let batch = self.batch_of(input)?;
        let classes = self.num_classes();
        let expected = batch.checked_mul(classes).ok_or(Error::Overflow("output length"))?;
        if output.len() != expected {
            return Err(Error::OutputLength { expected, found: output.len() });
        }
        self.admit(batch, false)?;
        let mut ws = self.take_workspace();
        ws.ensure(&self.size, batch);
        self.pool.install(|| self.forward(input, batch, &mut ws, times));
        output.copy_from_slice(&ws.act[ws.current][..expected]);
        if probabilities && !self.plan().ends_in_softmax() {
            ops::softmax::softmax_rows(output, classes);
        }
        self.give_back(ws);
        Ok(())
    }

    fn take_workspace(&self) -> Workspace {
        let mut cache = self.workspaces.lock().unwrap_or_else(|e| e.into_inner());
        cache.pop().unwrap_or_default()
    }

    fn give_back(&self, ws: Workspace) {
        let mut cache = self.workspaces.lock().unwrap_or_else(|e| e.into_inner());
        cache.push(ws);
    }

    /// Walk the steps over ping-pong activation buffers.
    fn forward(&self, input: &[f32], batch: usize, ws: &mut Workspace, mut times: Option<&mut [std::time::Duration]>) {
        ws.current = 0;
        ws.act[0][..input.len()].copy_from_slice(input);
        for (i, step) in self.steps.iter().enumerate() {
            let started = times.as_ref().map(|_| std::time::Instant::now());
            let (in_len, out_len) = (self.shapes[i].len(), self.shapes[i + 1].len());
            let (cur, other, scratch, phased) = ws.split();
            let cur = &mut cur[..batch * in_len];
            let (src, dst) = (&*cur, &mut other[..batch * out_len]);
            match step {
                Step::Conv { weights, bias, geom, relu, .. } => {
                    let b = self.weights.f32s(bias.clone());
                    ops::conv::conv2d(self.kernel, src, batch, geom, weights, b, *relu, dst, scratch, phased);
                }
                // Standalone pooling and LRN: whole images shared out over the pool.
                Step::MaxPool { pool, input, out } => {
                    let pairs = dst.par_chunks_mut(out_len).zip(src.par_chunks(in_len));
                    pairs.for_each(|(y, x)| ops::maxpool::maxpool(x, *input, pool, *out, y));
                }
                Step::Lrn { lrn, c, hw } => {
                    let pairs = dst.par_chunks_mut(out_len).zip(src.par_chunks(in_len));
                    pairs.for_each(|(y, x)| ops::lrn::lrn(x, *c, *hw, lrn, y));
                }
                Step::Linear { weight, bias, m, k, relu } => {
                    let (w, b) = (self.weights.f32s(weight.clone()), self.weights.f32s(bias.clone()));
                    ops::linear::linear(self.kernel, src, batch, w, b, *m, *k, *relu, dst);
                }
                Step::Relu => cur.iter_mut().for_each(|v| *v = ops::reference::relu1(*v)),
                Step::Softmax => ops::softmax::softmax_rows(cur, in_len),
                Step::PoolLrn(p) if batch > 1 => ops::pool_lrn::pool_lrn_batch(self.kernel, src, batch, p, dst),
                Step::PoolLrn(p) => ops::pool_lrn::pool_lrn(self.kernel, src, p, dst),
                Step::Flatten | Step::Fused => {}
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

// A model is shared across threads by design; make the promise a compile-time check.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Model>();
};
