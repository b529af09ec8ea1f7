//! Per-call memory: two ping-pong activation buffers and kernel scratch.
//!
//! Sizes come from the plan (largest activation, largest im2col matrix, widest linear
//! layer) times the batch, computed with checked arithmetic and capped by the model
//! before anything is allocated. A workspace only grows; reused at the same or a smaller
//! batch it allocates nothing.

/// What a plan needs per image.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WorkspaceSize {
    /// Largest activation (values per image) of any layer boundary.
    max_act: usize,
    /// Largest im2col matrix of one group of one image (batch independent).
    conv_scratch: usize,
    /// Widest linear output (values per image), for the transposed batch output.
    linear_m: usize,
}

impl WorkspaceSize {
    /// From per-step (in, out, conv scratch, linear m) sizes.
    pub(crate) fn of(steps: &[(usize, usize, usize, usize)]) -> Self {
        steps.iter().fold(WorkspaceSize::default(), |s, &(i, o, c, m)| WorkspaceSize {
            max_act: s.max_act.max(i).max(o),
            conv_scratch: s.conv_scratch.max(c),
            linear_m: s.linear_m.max(m),
        })
    }

    /// (activation values per buffer, scratch values) for `batch` images.
    fn values(&self, batch: usize) -> Option<(usize, usize)> {
        let act = self.max_act.checked_mul(batch)?;
        let scratch = self.conv_scratch.max(self.linear_m.checked_mul(batch)?);
        Some((act, scratch))
    }

    /// Total bytes for `batch` images, or `None` on overflow.
    pub(crate) fn bytes(&self, batch: usize) -> Option<u64> {
        let (act, scratch) = self.values(batch)?;
        let values = act.checked_mul(2)?.checked_add(scratch)?;
        (values as u64).checked_mul(4)
    }
}

/// Buffers for one inference call.
#[derive(Debug, Default)]
pub(crate) struct Workspace {
    /// Ping-pong activations; `current` holds the latest layer's output.
    pub(crate) act: [Vec<f32>; 2],
    /// im2col matrix or transposed linear output.
    scratch: Vec<f32>,
    /// Which of `act` is current.
    pub(crate) current: usize,
}

impl Workspace {
    /// Grow to hold `batch` images (the caller has checked the size against its cap).
    pub(crate) fn ensure(&mut self, size: &WorkspaceSize, batch: usize) {
        let (act, scratch) = size.values(batch).unwrap_or((0, 0));
        for buf in &mut self.act {
            if buf.len() < act {
                buf.resize(act, 0.0);
            }
        }
        if self.scratch.len() < scratch {
            self.scratch.resize(scratch, 0.0);
        }
    }

    /// (current activation, the other buffer, scratch), borrowed together.
    pub(crate) fn split(&mut self) -> (&mut [f32], &mut [f32], &mut [f32]) {
        let [a, b] = &mut self.act;
        let (cur, other) = if self.current == 0 { (a, b) } else { (b, a) };
        (cur, other, &mut self.scratch)
    }
}
