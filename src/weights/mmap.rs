//! Where weight bytes live: a read-only memory map of the file, or an owned copy.
//!
//! The map asks the kernel for transparent huge pages (Linux `MADV_HUGEPAGE`, a hint it
//! may ignore): the linear layers stream 234 MB per inference, and with 4 KiB pages every
//! 4 KiB of that stream costs a TLB miss and stops the hardware prefetcher at a page
//! boundary (`docs/performance.md` has the measured difference). With a cold page cache
//! the advice makes the kernel read the file into 2 MiB folios; a warm cache keeps the
//! folios the file was written in, which is why the weight writer writes aligned 4 MiB
//! blocks.
//!
//! This is the only module of the weight loader that holds `unsafe`: creating a map.
//! Mapping is sound only while no one truncates or rewrites the file; the OS gives no
//! protection (a truncated mapped file raises SIGBUS on access). `convert-weights` never
//! rewrites in place (temp file + rename), and [`Storage::read_owned`] exists for callers
//! who cannot promise the file stays put.
#![allow(unsafe_code)]

use std::fs::File;
use std::path::Path;

use crate::error::{Error, Result};

/// A 64-byte aligned block, so an owned buffer gives the same alignment as a map.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
pub(crate) struct Block([u8; 64]);

/// The bytes of a weight file.
pub(crate) enum Storage {
    /// A read-only map of the file: opening copies no weight bytes.
    Mapped(memmap2::Mmap),
    /// The file read into 64-byte aligned memory. (Heap memory, not huge pages: advised
    /// anonymous memory streams a little faster but makes the cold start slow and erratic
    /// on virtual machines, a fresh huge page being memory the host has not backed yet;
    /// see `docs/performance.md`.)
    Owned { blocks: Vec<Block>, len: usize },
}

/// Ask for transparent huge pages on `map` (a hint: errors, such as a kernel built
/// without THP, change nothing and are ignored).
fn advise_huge_pages(map: &memmap2::Mmap) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = map.advise(memmap2::Advice::HugePage);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = map;
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// Open `path` for reading, refusing anything but a regular file before `open` can block
/// (a FIFO would hang) or a device be read.
fn open_regular(path: &Path) -> Result<(File, u64)> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    if !meta.is_file() {
        return Err(Error::NotRegularFile(path.to_path_buf()));
    }
    let file = File::open(path).map_err(io_err(path))?;
    // Re-check on the opened handle: the path may have been swapped in between.
    let meta = file.metadata().map_err(io_err(path))?;
    if !meta.is_file() {
        return Err(Error::NotRegularFile(path.to_path_buf()));
    }
    Ok((file, meta.len()))
}

impl Storage {
    /// Map `path` read-only.
    pub(crate) fn map(path: &Path) -> Result<Storage> {
        let (file, len) = open_regular(path)?;
        if len == 0 {
            // Mapping an empty file fails on some systems; an empty vector is the same bytes.
            return Ok(Storage::from_vec(Vec::new()));
        }
        // SAFETY: the map is read-only and private to this process. Its contents are
        // undefined if another process truncates or rewrites the file while it is mapped;
        // that hazard is documented on `Model::open`, and `Model::open_owned` avoids it.
        let map = unsafe { memmap2::MmapOptions::new().map(&file) }.map_err(io_err(path))?;
        advise_huge_pages(&map);
        Ok(Storage::Mapped(map))
    }

    /// Read `path` into owned, aligned memory.
    pub(crate) fn read_owned(path: &Path) -> Result<Storage> {
        use std::io::Read;
        let (mut file, len) = open_regular(path)?;
        let len = usize::try_from(len).map_err(|_| Error::Overflow("file length"))?;
        let mut blocks = vec![Block([0; 64]); len.div_ceil(64)];
        let buf: &mut [u8] = bytemuck::cast_slice_mut(&mut blocks);
        file.read_exact(&mut buf[..len]).map_err(io_err(path))?;
        Ok(Storage::Owned { blocks, len })
    }

    /// Copy `bytes` into owned, aligned memory.
    pub(crate) fn from_vec(bytes: Vec<u8>) -> Storage {
        let len = bytes.len();
        let mut blocks = vec![Block([0; 64]); len.div_ceil(64)];
        bytemuck::cast_slice_mut::<Block, u8>(&mut blocks)[..len].copy_from_slice(&bytes);
        Storage::Owned { blocks, len }
    }

    /// The whole file.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned { blocks, len } => &bytemuck::cast_slice(blocks)[..*len],
        }
    }

    /// True when the bytes are a map of the file (no copy).
    pub(crate) fn is_mapped(&self) -> bool {
        matches!(self, Storage::Mapped(_))
    }
}
