"""The inverse of a symmetric 3x3 matrix, written out by cofactors: one copy for the two places
that invert a colour covariance per window (:mod:`dugray.solve.laplacian`'s numba kernel, on
scalars, and :mod:`dugray.upsample`'s colour guided filter, on whole arrays at once).

Plain arithmetic, no imports: it runs as it is on numpy arrays (one matrix per pixel) and
compiles in numba (``njit(sym3_cofactors)``) for the kernel. The caller divides by the
determinant (or multiplies by its inverse) itself, in the order its numbers have always
been computed in.
"""


def sym3_cofactors(a00, a01, a02, a11, a12, a22):
    """Cofactors and determinant of the symmetric matrix [[a00 a01 a02] [a01 a11 a12] [a02 a12 a22]]:
    ``(c00, c01, c02, c11, c12, c22, det)``; its inverse is ``[[c00 c01 c02] [c01 c11 c12]
    [c02 c12 c22]] / det``."""
    c00 = a11 * a22 - a12 * a12
    c01 = a02 * a12 - a01 * a22
    c02 = a01 * a12 - a02 * a11
    c11 = a00 * a22 - a02 * a02
    c12 = a01 * a02 - a00 * a12
    c22 = a00 * a11 - a01 * a01
    return c00, c01, c02, c11, c12, c22, a00 * c00 + a01 * c01 + a02 * c02
