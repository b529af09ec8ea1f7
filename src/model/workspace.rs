//! Per-call memory: two ping-pong activation buffers.
//!
//! Sized from the plan (largest activation) times the batch, with checked arithmetic, and
//! capped by the model before anything is allocated. A workspace only grows; reused at
//! the same or a smaller batch it allocates nothing. Convolutions pack im2col straight
//! into the GEMM's per-thread panel buffers and linear layers read their weights in
//! place, so nothing else is needed.

use crate::plan::Shape;

/// What a plan needs per image.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WorkspaceSize {
    /// Largest activation (values per image) at any layer boundary.
    max_act: usize,
}

impl WorkspaceSize {
    /// From the plan's activation shapes.
    pub(crate) fn of(shapes: &[Shape]) -> Self {
        WorkspaceSize { max_act: shapes.iter().map(Shape::len).max().unwrap_or(0) }
    }

    /// Total bytes for `batch` images, or `None` on overflow.
    pub(crate) fn bytes(&self, batch: usize) -> Option<u64> {
        let values = self.max_act.checked_mul(batch)?.checked_mul(2)?;
        (values as u64).checked_mul(4)
    }
}

/// Buffers for one inference call.
#[derive(Debug, Default)]
pub(crate) struct Workspace {
    /// Ping-pong activations; `current` holds the latest layer's output.
    pub(crate) act: [Vec<f32>; 2],
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
    }

    /// (current activation, the other buffer), borrowed together.
    pub(crate) fn split(&mut self) -> (&mut [f32], &mut [f32]) {
        let [a, b] = &mut self.act;
        if self.current == 0 {
            (a, b)
        } else {
            (b, a)
        }
    }
}
