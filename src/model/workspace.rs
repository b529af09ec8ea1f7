//! Per-call memory: two ping-pong activation buffers, and at batch > 1 the scratch where a
//! batched convolution's GEMM lands before its rows go to each image.
//!
//! Sized from the plan times the batch, with checked arithmetic, and capped by the model
//! before anything is allocated. A workspace only grows; reused at the same or a smaller
//! batch it allocates nothing. Convolutions pack im2col straight into the GEMM's
//! per-thread panel buffers and linear layers read their weights in place.

use crate::plan::Shape;

/// What a plan needs per image.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WorkspaceSize {
    /// Largest activation (values per image) at any layer boundary.
    max_act: usize,
    /// Largest batched-convolution output (values per image), for the GEMM's scratch.
    conv_scratch: usize,
    /// Largest scratch a convolution needs whatever the batch (Winograd tiles).
    conv_fixed: usize,
    /// Largest prepared (padded, phased) convolution input (values per image).
    phased: usize,
}

impl WorkspaceSize {
    /// From the plan's activation shapes.
    pub(crate) fn of(shapes: &[Shape], conv_scratch: usize, conv_fixed: usize, phased: usize) -> Self {
        let max_act = shapes.iter().map(Shape::len).max().unwrap_or(0);
        WorkspaceSize { max_act, conv_scratch, conv_fixed, phased }
    }

    /// Scratch values for `batch` images (the caller has checked [`Self::bytes`]).
    fn scratch(&self, batch: usize) -> usize {
        let batched = if batch > 1 { self.conv_scratch * batch } else { 0 };
        batched.max(self.conv_fixed)
    }

    /// Total bytes for `batch` images, or `None` on overflow.
    /// Everything [`Workspace::ensure`] may allocate is counted: both activation buffers,
    /// the conv scratch and the phased input of a strided convolution.
    pub(crate) fn bytes(&self, batch: usize) -> Option<u64> {
        let values = self
            .max_act
            .checked_mul(batch)?
            .checked_mul(2)?
            .checked_add(self.conv_scratch.checked_mul(batch)?)?
            .checked_add(self.phased.checked_mul(batch)?)?
            .checked_add(self.conv_fixed)?;
        (values as u64).checked_mul(4)
    }
}

/// Buffers for one inference call.
#[derive(Debug, Default)]
pub(crate) struct Workspace {
    /// Ping-pong activations; `current` holds the latest layer's output.
    pub(crate) act: [Vec<f32>; 2],
    /// Where a batched convolution's GEMM writes.
    scratch: Vec<f32>,
    /// A strided convolution's phased input.
    phased: Vec<f32>,
    /// Which of `act` is current.
    pub(crate) current: usize,
}

impl Workspace {
    /// Grow to hold `batch` images (the caller has checked the size against its cap).
    pub(crate) fn ensure(&mut self, size: &WorkspaceSize, batch: usize) {
        let act = size.max_act * batch;
        for buf in &mut self.act {
            if buf.len() < act {
                buf.resize(act, 0.0);
            }
        }
        let scratch = size.scratch(batch);
        if self.scratch.len() < scratch {
            self.scratch.resize(scratch, 0.0);
        }
        if self.phased.len() < size.phased * batch {
            self.phased.resize(size.phased * batch, 0.0);
        }
    }

    /// (current activation, the other buffer, scratch, phased input), borrowed together.
    pub(crate) fn split(&mut self) -> (&mut [f32], &mut [f32], &mut [f32], &mut [f32]) {
        let [a, b] = &mut self.act;
        let (cur, other) = if self.current == 0 { (a, b) } else { (b, a) };
        (cur, other, &mut self.scratch, &mut self.phased)
    }
}
