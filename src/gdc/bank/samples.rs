//! Embeddings as they come in (row lists or row-major matrices, f32 or
//! f64), checked and copied into the f64 matrices the bank computes with.

use super::BankError;

/// Embeddings of one class (or a batch of queries): rows of a matrix.
#[derive(Debug, Clone, Copy)]
pub enum Samples<'a> {
    RowsF32(&'a [Vec<f32>]),
    RowsF64(&'a [Vec<f64>]),
    /// n×dim row-major.
    MatrixF32 {
        data: &'a [f32],
        dim: usize,
    },
    /// n×dim row-major.
    MatrixF64 {
        data: &'a [f64],
        dim: usize,
    },
}

impl<'a> From<&'a [Vec<f32>]> for Samples<'a> {
    fn from(rows: &'a [Vec<f32>]) -> Self {
        Samples::RowsF32(rows)
    }
}
impl<'a> From<&'a Vec<Vec<f32>>> for Samples<'a> {
    fn from(rows: &'a Vec<Vec<f32>>) -> Self {
        Samples::RowsF32(rows)
    }
}
impl<'a> From<&'a [Vec<f64>]> for Samples<'a> {
    fn from(rows: &'a [Vec<f64>]) -> Self {
        Samples::RowsF64(rows)
    }
}
impl<'a> From<&'a Vec<Vec<f64>>> for Samples<'a> {
    fn from(rows: &'a Vec<Vec<f64>>) -> Self {
        Samples::RowsF64(rows)
    }
}

impl Samples<'_> {
    /// The row length (of the first row for row lists), without copying.
    pub(super) fn dim(&self) -> usize {
        match *self {
            Samples::RowsF32(rows) => rows.first().map_or(0, Vec::len),
            Samples::RowsF64(rows) => rows.first().map_or(0, Vec::len),
            Samples::MatrixF32 { dim, .. } | Samples::MatrixF64 { dim, .. } => dim,
        }
    }

    /// Copy into an n×d row-major f64 matrix, checking shape and finiteness.
    /// `what` names the data in errors; `expected_dim` is the bank's d, if known.
    pub(super) fn to_f64(&self, what: &str, expected_dim: Option<usize>) -> Result<(Vec<f64>, usize, usize), BankError> {
        let (out, n, dim) = match *self {
            Samples::RowsF32(rows) => rows_to_f64(rows.iter().map(|r| r.as_slice()), what)?,
            Samples::RowsF64(rows) => rows_to_f64(rows.iter().map(|r| r.as_slice()), what)?,
            Samples::MatrixF32 { data, dim } => matrix_to_f64(data, dim, what)?,
            Samples::MatrixF64 { data, dim } => matrix_to_f64(data, dim, what)?,
        };
        if n == 0 {
            return Err(BankError::NoSamples(what.to_string()));
        }
        if dim == 0 {
            return Err(BankError::DimensionMismatch {
                what: what.to_string(),
                expected: 1,
                got: 0,
            });
        }
        if let Some(expected) = expected_dim {
            if dim != expected {
                return Err(BankError::DimensionMismatch {
                    what: what.to_string(),
                    expected,
                    got: dim,
                });
            }
        }
        if out.iter().any(|v| !v.is_finite()) {
            return Err(BankError::NonFinite(what.to_string()));
        }
        Ok((out, n, dim))
    }
}

fn rows_to_f64<'r, T: Copy + Into<f64> + 'r>(
    rows: impl Iterator<Item = &'r [T]>,
    what: &str,
) -> Result<(Vec<f64>, usize, usize), BankError> {
    let mut out = Vec::new();
    let (mut n, mut dim) = (0, 0);
    for row in rows {
        if n == 0 {
            dim = row.len();
        } else if row.len() != dim {
            return Err(BankError::DimensionMismatch {
                what: format!("{what}, row {n}"),
                expected: dim,
                got: row.len(),
            });
        }
        out.extend(row.iter().map(|&v| v.into()));
        n += 1;
    }
    Ok((out, n, dim))
}

fn matrix_to_f64<T: Copy + Into<f64>>(
    data: &[T],
    dim: usize,
    what: &str,
) -> Result<(Vec<f64>, usize, usize), BankError> {
    if dim == 0 || data.len() % dim != 0 {
        return Err(BankError::InvalidParameter {
            name: "dim",
            reason: format!("{what}: {} values do not form rows of length {dim}", data.len()),
        });
    }
    Ok((data.iter().map(|&v| v.into()).collect(), data.len() / dim, dim))
}
