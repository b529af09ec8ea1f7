//! Batching across callers: single-image calls that arrive while the model is busy are
//! run together as one batch, each caller getting its own row.
//!
//! Two staging buffers, allocated when the model opens, take turns. A single-image call
//! copies its image into the buffer being formed: the first to arrive becomes the
//! batch's leader and takes a place at the gate like any call; the ones after it, until
//! the batch is full, are followers and just wait. Once admitted (and, if other calls are
//! in flight, after waiting up to `max_wait` for the batch to fill) the leader seals the
//! batch, so later arrivals form the next one in the other buffer, runs it, and
//! publishes the results; each follower copies its row out. A call that finds both
//! buffers busy runs alone through the gate. The runtime gives each image of a batch the
//! same bits as when it runs alone, so a caller cannot tell (but by the time) whether
//! its image was batched.
//!
//! Nothing here allocates once the model is open. A leader that panics marks its batch
//! failed, so its followers return [`crate::Error::BatchFailed`] instead of waiting
//! forever, and the buffer is rebuilt for later batches.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Where a staging buffer is in its cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    /// Unused: the next batch may form here.
    Free,
    /// Taking images; its leader waits at the gate.
    Forming,
    /// Sealed and running.
    Running,
    /// Results ready; followers are copying their rows out.
    Done,
    /// The run failed; followers are leaving.
    Failed,
}

/// One staging buffer.
#[derive(Debug)]
struct Buffer {
    /// `max_batch` images.
    inputs: Vec<f32>,
    /// `max_batch` rows of probabilities.
    outputs: Vec<f32>,
    /// Which batch it holds (so a follower knows its batch from a later one).
    batch: u64,
    /// Images staged.
    filled: usize,
    status: Status,
    /// Followers yet to copy their row out (or leave).
    readers: usize,
}

#[derive(Debug)]
struct State {
    bufs: [Buffer; 2],
    next_batch: u64,
    /// The next ticket for a call staging its image, and the oldest not yet staged.
    next_ticket: u64,
    head_ticket: u64,
}

/// The batcher of one model.
#[derive(Debug)]
pub(crate) struct Batcher {
    max_batch: usize,
    max_wait: Duration,
    input_len: usize,
    classes: usize,
    state: Mutex<State>,
    changed: Condvar,
    /// Batches run, and the images in them.
    counts: [std::sync::atomic::AtomicU64; 2],
}

/// What a call is in its batch.
#[derive(Debug)]
pub(crate) enum Role {
    /// It formed the batch in buffer `buf`: it runs it.
    Leader { buf: usize },
    /// Its image is row `row` of batch `batch` in buffer `buf`.
    Follower { buf: usize, batch: u64, row: usize },
    /// No buffer had room: it runs on its own.
    Alone,
}

/// A sealed batch, out of the shared state while its leader runs it.
#[derive(Debug)]
pub(crate) struct Sealed<'b> {
    batcher: &'b Batcher,
    buf: usize,
    /// Images in the batch.
    pub(crate) images: usize,
    /// The images (`images * input_len` values are the batch).
    pub(crate) inputs: Vec<f32>,
    /// Where the batch's results go (`images * classes` values).
    pub(crate) outputs: Vec<f32>,
    published: bool,
}

impl Batcher {
    /// A batcher for up to `max_batch` images of `input_len` values and `classes`
    /// results each.
    pub(crate) fn new(max_batch: usize, max_wait: Duration, input_len: usize, classes: usize) -> Batcher {
        let max_batch = max_batch.max(1);
        let buf = || Buffer {
            inputs: vec![0.0; max_batch * input_len],
            outputs: vec![0.0; max_batch * classes],
            batch: 0,
            filled: 0,
            status: Status::Free,
            readers: 0,
        };
        let state = State { bufs: [buf(), buf()], next_batch: 1, next_ticket: 0, head_ticket: 0 };
        let counts = Default::default();
        Batcher { max_batch, max_wait, input_len, classes, state: Mutex::new(state), changed: Condvar::new(), counts }
    }

    /// Images per batch at most.
    pub(crate) fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// (batches run, images in them) so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.counts[0].load(Relaxed), self.counts[1].load(Relaxed))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stage one image (`input_len` values): join the batch being formed, or form a new
    /// one, waiting while both buffers are busy (one running, one full and waiting for
    /// its turn, or followers still copying their rows out: both free up without anyone
    /// else's help). Running alone instead would queue a one-image call behind the full
    /// batch, at a third of a batched image's throughput.
    pub(crate) fn join(&self, image: &[f32]) -> Role {
        let mut s = self.lock();
        // Waiters take their places in arrival order (tickets, as at the gate).
        let ticket = s.next_ticket;
        s.next_ticket += 1;
        while s.head_ticket != ticket
            || !s
                .bufs
                .iter()
                .any(|b| b.status == Status::Free || b.status == Status::Forming && b.filled < self.max_batch)
        {
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        s.head_ticket += 1;
        if s.next_ticket > s.head_ticket {
            // The next waiter may find room too.
            self.changed.notify_all();
        }
        let forming = s.bufs.iter().position(|b| b.status == Status::Forming && b.filled < self.max_batch);
        if let Some(i) = forming {
            let b = &mut s.bufs[i];
            let row = b.filled;
            b.inputs[row * self.input_len..(row + 1) * self.input_len].copy_from_slice(image);
            b.filled += 1;
            b.readers += 1;
            let batch = b.batch;
            drop(s);
            // A leader lingering for a fuller batch may now have it.
            self.changed.notify_all();
            return Role::Follower { buf: i, batch, row };
        }
        let Some(i) = s.bufs.iter().position(|b| b.status == Status::Free) else { return Role::Alone };
        // (Unreachable: the wait above left a forming buffer with room or a free one.)
        let batch = s.next_batch;
        s.next_batch += 1;
        let b = &mut s.bufs[i];
        b.inputs[..self.input_len].copy_from_slice(image);
        (b.filled, b.readers, b.batch, b.status) = (1, 0, batch, Status::Forming);
        Role::Leader { buf: i }
    }

    /// The leader, admitted: wait up to `max_wait` for more images if `others` (other
    /// calls are in flight), then seal its batch and take it out to run.
    pub(crate) fn seal(&self, buf: usize, others: bool) -> Sealed<'_> {
        let mut s = self.lock();
        if others && !self.max_wait.is_zero() {
            let until = Instant::now() + self.max_wait;
            while s.bufs[buf].filled < self.max_batch {
                let now = Instant::now();
                if now >= until {
                    break;
                }
                s = self.changed.wait_timeout(s, until - now).unwrap_or_else(|e| e.into_inner()).0;
            }
        }
        let b = &mut s.bufs[buf];
        b.status = Status::Running;
        self.counts[0].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.counts[1].fetch_add(b.filled as u64, std::sync::atomic::Ordering::Relaxed);
        let (inputs, outputs) = (std::mem::take(&mut b.inputs), std::mem::take(&mut b.outputs));
        Sealed { batcher: self, buf, images: b.filled, inputs, outputs, published: false }
    }

    /// A follower: wait for its batch, copy its row into `out`.
    pub(crate) fn wait(&self, buf: usize, batch: u64, row: usize, out: &mut [f32]) -> crate::Result<()> {
        let mut s = self.lock();
        loop {
            let b = &s.bufs[buf];
            debug_assert_eq!(b.batch, batch, "a buffer is reused only after its followers leave");
            match b.status {
                Status::Done | Status::Failed => break,
                _ => s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner()),
            }
        }
        let b = &mut s.bufs[buf];
        let ok = b.status == Status::Done;
        if ok {
            out.copy_from_slice(&b.outputs[row * self.classes..(row + 1) * self.classes]);
        }
        b.readers -= 1;
        if b.readers == 0 {
            b.status = Status::Free;
            drop(s);
            self.changed.notify_all();
        }
        if ok {
            Ok(())
        } else {
            Err(crate::Error::BatchFailed)
        }
    }
}

impl Sealed<'_> {
    /// Put the results back for the followers; the leader's own row (row 0) into `out`.
    pub(crate) fn publish(mut self, ok: bool, out: &mut [f32]) {
        let classes = self.batcher.classes;
        if ok {
            out.copy_from_slice(&self.outputs[..classes]);
        }
        self.finish(if ok { Status::Done } else { Status::Failed });
    }

    fn finish(&mut self, status: Status) {
        self.published = true;
        let mut s = self.batcher.lock();
        let b = &mut s.bufs[self.buf];
        b.inputs = std::mem::take(&mut self.inputs);
        b.outputs = std::mem::take(&mut self.outputs);
        b.status = if b.readers == 0 { Status::Free } else { status };
        drop(s);
        self.batcher.changed.notify_all();
    }
}

impl Drop for Sealed<'_> {
    /// A leader that unwinds before publishing fails its batch; the buffers it held are
    /// made again so later batches can form.
    fn drop(&mut self) {
        if !self.published {
            let (n, c) = (self.batcher.max_batch, (self.batcher.input_len, self.batcher.classes));
            if self.inputs.len() < n * c.0 {
                self.inputs = vec![0.0; n * c.0];
            }
            if self.outputs.len() < n * c.1 {
                self.outputs = vec![0.0; n * c.1];
            }
            self.finish(Status::Failed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn followers_get_their_rows_and_the_buffer_is_reused() {
        let b = Arc::new(Batcher::new(4, Duration::ZERO, 3, 2));
        let Role::Leader { buf } = b.join(&[1.0, 2.0, 3.0]) else { panic!("first call leads") };
        let Role::Follower { buf: fb, batch, row } = b.join(&[4.0, 5.0, 6.0]) else { panic!("second follows") };
        assert_eq!((fb, row), (buf, 1));
        let b2 = Arc::clone(&b);
        let follower = std::thread::spawn(move || {
            let mut out = [0.0; 2];
            b2.wait(fb, batch, row, &mut out).map(|()| out)
        });
        let mut sealed = b.seal(buf, false);
        assert_eq!(sealed.images, 2);
        assert_eq!(&sealed.inputs[..6], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        sealed.outputs[..4].copy_from_slice(&[0.25, 0.75, 0.5, 0.5]);
        // A call arriving while the batch runs forms the next one in the other buffer.
        let Role::Leader { buf: next } = b.join(&[0.0; 3]) else { panic!("a new batch forms") };
        assert_ne!(next, buf);
        let mut mine = [0.0; 2];
        sealed.publish(true, &mut mine);
        assert_eq!(mine, [0.25, 0.75]);
        assert_eq!(follower.join().unwrap().unwrap(), [0.5, 0.5]);
        assert_eq!(b.lock().bufs[buf].status, Status::Free);
        assert_eq!(b.counts(), (1, 2));
    }

    #[test]
    fn a_leader_that_unwinds_fails_its_batch_and_frees_the_buffer() {
        let b = Arc::new(Batcher::new(4, Duration::ZERO, 3, 2));
        let Role::Leader { buf } = b.join(&[1.0; 3]) else { panic!("first call leads") };
        let Role::Follower { buf: fb, batch, row } = b.join(&[2.0; 3]) else { panic!("second follows") };
        let b2 = Arc::clone(&b);
        let follower = std::thread::spawn(move || b2.wait(fb, batch, row, &mut [0.0; 2]));
        drop(b.seal(buf, false));
        assert!(matches!(follower.join().unwrap(), Err(crate::Error::BatchFailed)));
        assert_eq!(b.lock().bufs[buf].status, Status::Free);
        let Role::Leader { .. } = b.join(&[3.0; 3]) else { panic!("batches form again") };
    }
}
