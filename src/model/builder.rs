//! [`ModelBuilder`]: the options a model is opened with.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use super::batch::Batcher;
use super::compile::{compile, Step};
use super::gate::Gate;
use super::workspace::WorkspaceSize;
use super::{Model, DEFAULT_MAX_WORKSPACE_BYTES};
use crate::cpu::{Cpu, Isa};
use crate::error::{Error, Result};
use crate::ops;
use crate::plan::Shape;
use crate::precision::Precision;
use crate::tuning::{Tuning, Uarch};
use crate::weights::{OpenMode, WeightFile};

/// Options for opening a model.
#[derive(Clone, Debug, Default)]
pub struct ModelBuilder {
    threads: Option<usize>,
    isa: Option<Isa>,
    uarch: Option<Uarch>,
    mode: OpenMode,
    verify_checksum: bool,
    max_workspace_bytes: Option<u64>,
    precision: Option<Precision>,
    max_concurrency: Option<usize>,
    batching: Option<(usize, Duration)>,
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

    /// Take the choices the tuning table makes for `uarch` (its GEMM cache blocks, for its
    /// typical caches) instead of this CPU's (default: `ALEXNET_UARCH` if set, else the core
    /// this CPU reports): another core's choice tried here side by side, or a core the
    /// table does not recognise named by hand. Results may differ from the default's in
    /// the last bits (the K slices move), never between thread counts.
    pub fn uarch(mut self, uarch: Uarch) -> Self {
        self.uarch = Some(uarch);
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

    /// Run at `precision` (default: the precision the file stores its weights at, so f32
    /// for an f32 file). An f32 file opened at bf16 rounds its linear weights to bf16 at
    /// open (one pass over them, and half their bytes held in memory instead of read in
    /// place from the map); a bf16 file opened at f32 runs its bf16 weights widened to f32,
    /// which is all the precision they have.
    pub fn precision(mut self, precision: Precision) -> Self {
        self.precision = Some(precision);
        self
    }

    /// At most `n` (at least 1) inference calls run at once; the others wait in arrival
    /// order, without allocating, and memory for activations is bounded by `n`
    /// workspaces whatever the number of callers. Default: one call per 16 pool threads
    /// (so 1 up to 15): a call spreads over its pool's threads, and a second one beside it
    /// on a small pool only shares them, gaining little throughput for a worse tail
    /// (measured in `docs/performance.md`).
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = Some(n.max(1));
        self
    }

    /// Run single-image calls that arrive while the model is busy together, up to
    /// `max_batch` images per batch (each caller gets its own row, bit for bit what it
    /// would get alone). A batch's first caller waits up to `max_wait` for it to fill
    /// once its turn has come, but only while other calls are in flight, so a lone caller
    /// never waits. Off by default. `max_batch` images must fit the workspace cap.
    pub fn batching(mut self, max_batch: usize, max_wait: Duration) -> Self {
        self.batching = Some((max_batch.max(1), max_wait));
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
        // Block sizes forced for an A/B run: a malformed value is an error, not ignored.
        crate::gemm::blocking::check_forced().map_err(Error::InvalidArgument)?;
        let tuning = Tuning::choose(self.uarch)?;
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
        let cpu = Cpu::new(isa)?;
        let shapes = weights.plan().shapes()?;
        // Packing (and Winograd-transforming) the conv weights uses the model's threads.
        let precision = self.precision.unwrap_or_else(|| Precision::of_weights(weights.weight_dtype()));
        let steps = pool.install(|| compile(&weights, &shapes, cpu, precision, &tuning))?;
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
        // The phased buffer also holds a bf16 linear layer's rounded input.
        let linear_k = steps.iter().filter_map(|s| if let Step::Linear { k, .. } = s { Some(*k) } else { None });
        let phased = phased.max(linear_k.map(crate::gemm::pairs_len).max().unwrap_or(0));
        // At int8 it holds a convolution's prepared input for one image (the convolution
        // runs image by image), or a linear layer's input codes and parameters.
        let int8 = steps.iter().zip(&shapes).filter_map(|(s, shape)| match (s, shape) {
            (Step::ConvI8 { geom, .. }, Shape::Spatial { c, .. }) => Some(ops::conv_i8::phased_len_i8(geom, *c)),
            (Step::Linear { k, .. }, _) => Some(ops::linear::i8_scratch_len(*k, 1)),
            _ => None,
        });
        let phased = phased.max(int8.max().unwrap_or(0));
        let size = WorkspaceSize::of(&shapes, conv_scratch, conv_fixed, phased);
        let input_len = shapes[0].len();
        let classes = shapes.last().map(Shape::len).unwrap_or(0);
        let batcher = match self.batching {
            Some((max_batch, max_wait)) if max_batch > 1 => {
                let cap = self.max_workspace_bytes.unwrap_or(DEFAULT_MAX_WORKSPACE_BYTES);
                if size.bytes(max_batch).is_none_or(|b| b > cap) {
                    return Err(Error::BatchTooLarge { batch: max_batch, limit_bytes: cap });
                }
                Some(Batcher::new(max_batch, max_wait, input_len, classes))
            }
            _ => None,
        };
        Ok(Model {
            weights,
            shapes,
            steps,
            cpu,
            tuning,
            precision,
            threads,
            pool,
            presized: std::sync::atomic::AtomicUsize::new(usize::MAX),
            size,
            workspaces: Mutex::new(Vec::new()),
            max_workspace_bytes: self.max_workspace_bytes.unwrap_or(DEFAULT_MAX_WORKSPACE_BYTES),
            gate: Gate::new(self.max_concurrency.unwrap_or(default_concurrency(threads))),
            batcher,
        })
    }
}

/// Calls that run at once by default on a pool of `threads`: one per 16 threads.
fn default_concurrency(threads: usize) -> usize {
    1 + threads / 16
}
