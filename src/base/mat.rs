//! [`MatMut`]: a mutable view of a row-major matrix (C of a GEMM, an activation seen as
//! channels x pixels) that splits into disjoint row or column blocks, so threads can each
//! own a block. The only place raw pointers into such outputs are made.
#![allow(unsafe_code)]

use std::marker::PhantomData;

/// A mutable `rows x cols` view of row-major C with leading dimension `ld`.
///
/// Like `&mut [f32]`, but splittable into disjoint column blocks as well as row blocks.
pub struct MatMut<'a> {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
    ld: usize,
    _borrow: PhantomData<&'a mut [f32]>,
}

// SAFETY: a MatMut is an exclusive borrow of the elements it covers (no two views
// overlap), exactly like `&mut [f32]`, which is Send.
unsafe impl Send for MatMut<'_> {}

impl<'a> MatMut<'a> {
    /// View `data` as `rows x cols` with leading dimension `ld`.
    ///
    /// # Panics
    /// If `data` is too short or `ld < cols` (a caller bug, never input-dependent).
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize, ld: usize) -> Self {
        assert!(ld >= cols, "leading dimension {ld} < columns {cols}");
        let need = if rows == 0 || cols == 0 { 0 } else { (rows - 1) * ld + cols };
        assert!(data.len() >= need, "C has {} values, view needs {need}", data.len());
        MatMut { ptr: data.as_mut_ptr(), rows, cols, ld, _borrow: PhantomData }
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Split into rows `[0, r)` and `[r, rows)`.
    pub fn split_rows(self, r: usize) -> (MatMut<'a>, MatMut<'a>) {
        assert!(r <= self.rows);
        // SAFETY: offset r*ld stays within (or one past) the borrowed region when r <= rows.
        let lower = unsafe { self.ptr.add(if r < self.rows { r * self.ld } else { 0 }) };
        (
            MatMut { ptr: self.ptr, rows: r, cols: self.cols, ld: self.ld, _borrow: PhantomData },
            MatMut { ptr: lower, rows: self.rows - r, cols: self.cols, ld: self.ld, _borrow: PhantomData },
        )
    }

    /// Split into columns `[0, c)` and `[c, cols)`.
    pub fn split_cols(self, c: usize) -> (MatMut<'a>, MatMut<'a>) {
        assert!(c <= self.cols);
        // SAFETY: c <= cols <= ld, so the offset stays within the first row's span.
        let right = unsafe { self.ptr.add(if c < self.cols { c } else { 0 }) };
        (
            MatMut { ptr: self.ptr, rows: self.rows, cols: c, ld: self.ld, _borrow: PhantomData },
            MatMut { ptr: right, rows: self.rows, cols: self.cols - c, ld: self.ld, _borrow: PhantomData },
        )
    }

    /// Copy the `h x w` block at `(i, j)` into `tile` (leading dimension `ldt`).
    pub fn read_block(&self, i: usize, j: usize, h: usize, w: usize, tile: &mut [f32], ldt: usize) {
        assert!(i + h <= self.rows && j + w <= self.cols && w <= ldt && tile.len() >= h * ldt);
        for r in 0..h {
            // SAFETY: (i + r, j .. j + w) lies inside the view (checked above).
            let src = unsafe { std::slice::from_raw_parts(self.ptr.add((i + r) * self.ld + j), w) };
            tile[r * ldt..r * ldt + w].copy_from_slice(src);
        }
    }

    /// Copy `tile` (leading dimension `ldt`) into the `h x w` block at `(i, j)`.
    pub fn write_block(&mut self, i: usize, j: usize, h: usize, w: usize, tile: &[f32], ldt: usize) {
        assert!(i + h <= self.rows && j + w <= self.cols && w <= ldt && tile.len() >= h * ldt);
        for r in 0..h {
            // SAFETY: (i + r, j .. j + w) lies inside the view, which we borrow exclusively.
            let dst = unsafe { std::slice::from_raw_parts_mut(self.ptr.add((i + r) * self.ld + j), w) };
            dst.copy_from_slice(&tile[r * ldt..r * ldt + w]);
        }
    }

    /// Row `i` of the view.
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        assert!(i < self.rows);
        // SAFETY: row i (cols values from ptr + i*ld) lies inside the view, which we
        // borrow exclusively for the lifetime of the returned slice.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(i * self.ld), self.cols) }
    }

    /// Pointer to element `(i, j)` and the leading dimension, for a kernel writing the
    /// `mr x nr` block there, after checking it lies inside the view.
    pub(crate) fn block_ptr(&mut self, i: usize, j: usize, mr: usize, nr: usize) -> (*mut f32, usize) {
        assert!(i + mr <= self.rows && j + nr <= self.cols, "tile ({i}, {j}) {mr}x{nr} outside view");
        // SAFETY: (i, j) is inside the view (checked above).
        (unsafe { self.ptr.add(i * self.ld + j) }, self.ld)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_views_write_only_their_blocks() {
        let mut data = vec![0.0f32; 4 * 6];
        let (l, r) = MatMut::new(&mut data, 4, 5, 6).split_cols(2);
        let ((mut tl, _), (_, mut br)) = (l.split_rows(1), r.split_rows(3));
        tl.row_mut(0).fill(1.0);
        br.row_mut(0).fill(2.0);
        assert_eq!(&data[..6], &[1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(&data[18..], &[0.0, 0.0, 2.0, 2.0, 2.0, 0.0]);
    }
}
