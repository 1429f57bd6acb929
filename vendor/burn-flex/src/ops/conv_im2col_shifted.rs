//! PATCH (scal-rs): im2col and col2im as one span per kernel offset.
//!
//! For a stride-1 convolution whose output is as wide as its input (every 3 × 3 "same"
//! convolution, and 1 × 1 ones), each row of the column matrix is the input plane shifted by
//! one constant. im2col then copies its valid part in one piece and zeroes the few entries that
//! stand for padding; col2im zeroes those entries in its scratch column buffer and adds each
//! row back in one vectorised loop. On small maps (rows of 4 to 32 values) the row-by-row
//! loops spent more in calls to `memcpy` and `memset` than in moving bytes. Same values: col2im
//! adds the same terms in the same order, plus zeros.

use crate::ops::conv_im2col::{Block, ConvElement, Geometry};

/// What one kernel offset of a [`Geometry::is_row_shift`] convolution reads: output
/// positions `first..last` (flattened) read input positions `read..read + (last − first)`
/// of the same channel, one to one. Between rows, the span also covers the columns outside
/// `columns`, which read neighbouring pixels and stand for padding
/// ([`zero_padding_columns`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    pub(crate) first: usize,
    pub(crate) last: usize,
    pub(crate) read: usize,
    /// The valid output rows, `valid_range(0, i)`.
    pub(crate) rows: (usize, usize),
    /// The valid output columns, `valid_range(1, j)`.
    pub(crate) columns: (usize, usize),
}

impl Geometry {
    /// Stride 1 and an output map as wide as the input (a "same" convolution, or any 1×1
    /// stride-1 one): output position `(oy, ox)` then reads input position
    /// `(oy, ox) + (i·d − p, j·d − p)` for kernel offset `(i, j)`, one constant shift of the
    /// flattened plane.
    pub(crate) fn is_row_shift(&self) -> bool {
        self.stride == [1, 1] && self.ow == self.w
    }

    /// For kernel offset `(i, j)` of a [`Self::is_row_shift`] convolution: the span of
    /// flattened output positions from the first valid one to the last, or `None` when no
    /// output position reads inside the input ([`Span`]).
    pub(crate) fn shifted_span(&self, i: usize, j: usize) -> Option<Span> {
        let (rows, columns) = (self.valid_range(0, i), self.valid_range(1, j));
        if rows.0 >= rows.1 || columns.0 >= columns.1 {
            return None;
        }
        let shift = (i * self.dilation[0]) as isize - self.pad[0] as isize;
        let shift =
            shift * self.w as isize + (j * self.dilation[1]) as isize - self.pad[1] as isize;
        let (first, last) = (
            rows.0 * self.ow + columns.0,
            (rows.1 - 1) * self.ow + columns.1,
        );
        Some(Span {
            first,
            last,
            read: (first as isize + shift) as usize,
            rows,
            columns,
        })
    }
}

/// [`im2col`](crate::ops::conv_im2col::im2col) when the output map has the input's width and stride 1
/// ([`Geometry::is_row_shift`]): each row of the column matrix is then the input plane shifted
/// by one constant, so its valid part is one copy (rather than one per output row, which
/// cost more in call overhead than in bytes on maps a few dozen values wide) and the
/// columns that fall into the padding are zeroed afterwards, one kernel column at a time.
///
/// # Shapes
/// - `x_group`: `[C_in/groups, H, W]`
/// - `col`: `[C_in/groups · kh · kw, block.stride]`
pub(crate) fn im2col_shifted<T: ConvElement>(
    g: &Geometry,
    x_group: &[T],
    col: &mut [T],
    block: Block,
) {
    let out_sp = g.out_spatial();
    for i in 0..g.kh {
        for j in 0..g.kw {
            let span = g.shifted_span(i, j);
            for c in 0..g.c_in_g {
                let plane = &x_group[c * g.in_spatial()..(c + 1) * g.in_spatial()];
                let row = (c * g.kh + i) * g.kw + j;
                let start = row * block.stride + block.offset;
                let out = &mut col[start..start + out_sp];
                let Some(span) = &span else {
                    out.fill(T::ZERO);
                    continue;
                };
                let (first, last) = (span.first, span.last);
                out[..first].fill(T::ZERO);
                out[first..last].copy_from_slice(&plane[span.read..span.read + (last - first)]);
                out[last..].fill(T::ZERO);
                zero_padding_columns(g.ow, span, out);
            }
        }
    }
}

/// Zeroes, in one row of a column matrix (`[OH · OW]`), the entries inside `span` whose
/// column falls outside its valid columns: those read padding. One column at a time, down
/// the rows (there are only `pad` such columns; a loop along a row would become a call to
/// `memset` for one or two values).
#[inline]
pub(crate) fn zero_padding_columns<T: ConvElement>(ow: usize, span: &Span, out: &mut [T]) {
    let ((y_lo, y_hi), (x_lo, x_hi)) = (span.rows, span.columns);
    for x in (0..x_lo).chain(x_hi..ow) {
        let column = out[y_lo * ow + x..].iter_mut().step_by(ow);
        column.take(y_hi - y_lo).for_each(|v| *v = T::ZERO);
    }
}

/// [`col2im`](crate::ops::conv_im2col::col2im) when [`Geometry::is_row_shift`]: the entries that stand for padding are
/// zeroed in `col` first ([`zero_padding_columns`]; `col` is scratch), so that each kernel
/// offset adds one contiguous span into the plane in one vectorised loop, rather than one
/// short loop per output row. Each input position receives the same terms in the same order
/// as in [`col2im_plane`](crate::ops::conv_im2col::col2im_plane), plus zeros.
///
/// # Shapes
/// - `col`: `[C_in/groups · kh · kw, block.stride]`, its padding entries zeroed
/// - `dx_group`: `[C_in/groups, H, W]`, accumulated into (zero it first)
pub(crate) fn col2im_shifted<T: ConvElement>(
    g: &Geometry,
    col: &mut [T],
    dx_group: &mut [T],
    block: Block,
) {
    let in_sp = g.in_spatial();
    for i in 0..g.kh {
        for j in 0..g.kw {
            let Some(span) = g.shifted_span(i, j) else {
                continue;
            };
            let len = span.last - span.first;
            for (c, plane) in dx_group.chunks_exact_mut(in_sp).enumerate() {
                let row = (c * g.kh + i) * g.kw + j;
                let start = row * block.stride + block.offset;
                let src = &mut col[start..start + g.out_spatial()];
                zero_padding_columns(g.ow, &span, src);
                let dst = &mut plane[span.read..span.read + len];
                for (d, &v) in dst.iter_mut().zip(&src[span.first..span.last]) {
                    *d = *d + v;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv_im2col::reference::{cases, hashed};
    use alloc::vec;
    use alloc::vec::Vec;
    use burn_backend::ops::ConvOptions;
    use burn_std::Shape;

    /// The column matrix by its definition:
    /// `col[(c·kh + i)·kw + j][oy·OW + ox] = x[c][oy·s + i·d − p][ox·s + j·d − p]`, zero outside.
    fn im2col_by_definition(g: &Geometry, x: &[f64]) -> Vec<f64> {
        let (rows, out_sp) = (g.col_rows(), g.out_spatial());
        let mut col = vec![0.0; rows * out_sp];
        for c in 0..g.c_in_g {
            for (i, j) in (0..g.kh).flat_map(|i| (0..g.kw).map(move |j| (i, j))) {
                for (oy, ox) in (0..g.oh).flat_map(|oy| (0..g.ow).map(move |ox| (oy, ox))) {
                    let iy = (oy * g.stride[0] + i * g.dilation[0]) as isize - g.pad[0] as isize;
                    let ix = (ox * g.stride[1] + j * g.dilation[1]) as isize - g.pad[1] as isize;
                    if iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w {
                        col[((c * g.kh + i) * g.kw + j) * out_sp + oy * g.ow + ox] =
                            x[(c * g.h + iy as usize) * g.w + ix as usize];
                    }
                }
            }
        }
        col
    }

    /// Every case with an output as wide as its input: the spans give the column matrix of
    /// the definition (stale values in the buffer overwritten), and col2im of it adds each
    /// entry back where it was read (`⟨col2im(col), x⟩ = ⟨col, im2col(x)⟩`).
    #[test]
    fn the_spans_give_the_column_matrix_and_its_adjoint() {
        let mut checked = 0;
        for case in cases() {
            let options = ConvOptions::new(case.stride, case.pad, case.dilation, case.groups);
            let g = Geometry::new(
                &Shape::new(case.x_shape()),
                &Shape::new(case.w_shape()),
                &Shape::new(case.y_shape()),
                &options,
            );
            if !g.is_row_shift() {
                continue;
            }
            checked += 1;
            let x = hashed(g.c_in_g * g.in_spatial(), 10);
            let expected = im2col_by_definition(&g, &x);
            let block = Block {
                stride: g.out_spatial(),
                offset: 0,
            };
            let mut col = vec![7.0; expected.len()];
            im2col_shifted(&g, &x, &mut col, block);
            assert_eq!(col, expected, "{case:?}");

            let mut cotangent = hashed(expected.len(), 11);
            let dot_col: f64 = cotangent.iter().zip(&expected).map(|(a, b)| a * b).sum();
            let mut dx = vec![0.0; x.len()];
            col2im_shifted(&g, &mut cotangent, &mut dx, block);
            let dot_x: f64 = dx.iter().zip(&x).map(|(a, b)| a * b).sum();
            assert!(
                (dot_col - dot_x).abs() < 1e-9,
                "{case:?}: {dot_col} against {dot_x}"
            );
        }
        assert!(checked >= 4, "only {checked} row-shift cases");
    }
}
