//! [`ModelBuilder`]: the options a model is opened with.

use std::path::Path;
use std::sync::Mutex;

use super::compile::{compile, Step};
use super::workspace::WorkspaceSize;
use super::{Model, DEFAULT_MAX_WORKSPACE_BYTES};
use crate::cpu::{Cpu, Isa};
use crate::error::{Error, Result};
use crate::ops;
use crate::plan::Shape;
use crate::precision::Precision;
use crate::weights::{OpenMode, WeightFile};

/// Options for opening a model.
#[derive(Clone, Debug, Default)]
pub struct ModelBuilder {
    threads: Option<usize>,
    isa: Option<Isa>,
    mode: OpenMode,
    verify_checksum: bool,
    max_workspace_bytes: Option<u64>,
    precision: Option<Precision>,
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

    /// Run at `precision` (default: the precision the file stores its weights at, so f32
    /// for an f32 file). An f32 file opened at bf16 rounds its linear weights to bf16 at
    /// open (one pass over them, and half their bytes held in memory instead of read in
    /// place from the map); a bf16 file opened at f32 runs its bf16 weights widened to f32,
    /// which is all the precision they have.
    pub fn precision(mut self, precision: Precision) -> Self {
        self.precision = Some(precision);
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
        let cpu = Cpu::new(isa)?;
        let shapes = weights.plan().shapes()?;
        // Packing (and Winograd-transforming) the conv weights uses the model's threads.
        let precision = self.precision.unwrap_or_else(|| Precision::of_weights(weights.weight_dtype()));
        let steps = pool.install(|| compile(&weights, &shapes, cpu, precision))?;
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
        let size = WorkspaceSize::of(&shapes, conv_scratch, conv_fixed, phased);
        Ok(Model {
            weights,
            shapes,
            steps,
            cpu,
            precision,
            threads,
            pool,
            size,
            workspaces: Mutex::new(Vec::new()),
            max_workspace_bytes: self.max_workspace_bytes.unwrap_or(DEFAULT_MAX_WORKSPACE_BYTES),
        })
    }
}
