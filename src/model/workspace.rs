//! Per-call memory: two ping-pong activation buffers and the packed batch of a linear
//! layer's input.
//!
//! Sizes come from the plan (largest activation, widest linear input) times the batch,
//! computed with checked arithmetic and capped by the model before anything is allocated.
//! A workspace only grows; reused at the same or a smaller batch it allocates nothing.
//! (Convolutions need no workspace: im2col packs straight into the GEMM's per-thread
//! panel buffers.)

use crate::gemm::PackedA;
use crate::plan::Shape;

/// What a plan needs per image.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WorkspaceSize {
    /// Largest activation (values per image) at any layer boundary.
    max_act: usize,
    /// Widest flat activation (a linear layer's K), packed as the GEMM's A at batch > 1.
    max_flat: usize,
    /// Panel height of the model's kernel: the packed batch is padded to it.
    mr: usize,
}

impl WorkspaceSize {
    /// From the plan's activation shapes.
    pub(crate) fn of(shapes: &[Shape], mr: usize) -> Self {
        let max_act = shapes.iter().map(Shape::len).max().unwrap_or(0);
        let max_flat = shapes.iter().filter_map(|s| if let Shape::Flat(n) = s { Some(*n) } else { None }).max();
        WorkspaceSize { max_act, max_flat: max_flat.unwrap_or(0), mr }
    }

    /// Total bytes for `batch` images, or `None` on overflow.
    pub(crate) fn bytes(&self, batch: usize) -> Option<u64> {
        let act = self.max_act.checked_mul(batch)?.checked_mul(2)?;
        let packed = batch.checked_next_multiple_of(self.mr.max(1))?.checked_mul(self.max_flat)?;
        (act.checked_add(packed)? as u64).checked_mul(4)
    }
}

/// Buffers for one inference call.
#[derive(Debug, Default)]
pub(crate) struct Workspace {
    /// Ping-pong activations; `current` holds the latest layer's output.
    pub(crate) act: [Vec<f32>; 2],
    /// The packed input of a linear layer at batch > 1.
    packed: PackedA,
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

    /// (current activation, the other buffer, packed-input storage), borrowed together.
    pub(crate) fn split(&mut self) -> (&mut [f32], &mut [f32], &mut PackedA) {
        let [a, b] = &mut self.act;
        let (cur, other) = if self.current == 0 { (a, b) } else { (b, a) };
        (cur, other, &mut self.packed)
    }
}
