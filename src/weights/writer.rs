//! Writing a weight file to disk: atomically (temporary file, fsync, rename) and in
//! block-aligned writes, so a file that a process has mapped is never truncated in place
//! and the page cache can hold the new file in huge folios.

use super::format::{layout, write_to, Dtype, OwnedTensor};
use crate::error::{Error, Result};
use crate::plan::Plan;

/// A buffered writer whose writes to the file are whole blocks at block-aligned offsets
/// (the last one excepted). Linux file systems with large folios (ext4, XFS) then cache
/// the file in 2 MiB folios, which a map of it can use as huge pages: fewer page faults
/// at the first inference and fewer TLB misses while the linear layers stream their
/// weights (`docs/performance.md` compares this with a plain `BufWriter`).
struct AlignedWriter {
    file: std::fs::File,
    buf: Vec<u8>,
}

impl AlignedWriter {
    /// Bytes per write: two 2 MiB huge pages.
    const BLOCK: usize = 4 << 20;

    /// Write what is buffered and return the file.
    fn finish(mut self) -> std::io::Result<std::fs::File> {
        use std::io::Write;
        self.file.write_all(&self.buf)?;
        Ok(self.file)
    }
}

impl std::io::Write for AlignedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(Self::BLOCK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == Self::BLOCK {
            self.file.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Write a weight file atomically: into a temporary file beside `path`, fsync, then rename.
///
/// A file that a running process has mapped is therefore never truncated in place.
pub fn write_file(path: &std::path::Path, plan: &Plan, tensors: &[OwnedTensor]) -> Result<()> {
    write_file_as(path, plan, tensors, Dtype::F32)
}

/// [`write_file`] with the weights stored as `weights` (biases stay f32).
pub fn write_file_as(path: &std::path::Path, plan: &Plan, tensors: &[OwnedTensor], weights: Dtype) -> Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // Refuse bad input before touching the file system.
    layout(plan, tensors, weights)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name =
        path.file_name().ok_or_else(|| Error::InvalidArgument(format!("{} has no file name", path.display())))?;
    let unique = format!("{}.{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
    let tmp = dir.join(format!(".{}.tmp{unique}", file_name.to_string_lossy()));
    let result = (|| -> Result<()> {
        let file = std::fs::File::create(&tmp).map_err(|source| Error::Io { path: tmp.clone(), source })?;
        let mut out = AlignedWriter { file, buf: Vec::with_capacity(AlignedWriter::BLOCK) };
        write_to(plan, tensors, weights, &mut out)?;
        let file = out.finish().map_err(|source| Error::Io { path: tmp.clone(), source })?;
        file.sync_all().map_err(|source| Error::Io { path: tmp.clone(), source })?;
        std::fs::rename(&tmp, path).map_err(|source| Error::Io { path: path.to_path_buf(), source })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
