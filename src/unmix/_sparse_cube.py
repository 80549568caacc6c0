"""A spectrum image held as sparse rows: CSR ``(pixels, channels)`` with its full shape.

Event-mode detectors and low-dose counts give files that are mostly zeros; a
:class:`SparseCube` keeps them as one CSR matrix while :class:`unmix.SpectralImage` sees
the logical shape ``(*spatial_shape, *signal_shape)``.  :meth:`SpectralImage.unfold`
returns the CSR matrix itself (never a dense copy); anything that would need the dense
array (``np.asarray(image.data)``) is refused with a message, so a sparse file is never
densified by accident.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["SparseCube"]


class SparseCube:
    """CSR rows ``(pixels, channels)`` standing for an array of shape ``shape``.

    Parameters
    ----------
    csr : scipy.sparse CSR array (pixels, channels)
    shape : sequence of int
        ``(*spatial_shape, *signal_shape)``: the leading sizes multiply to the pixels, the
        trailing ones to the channels.
    """

    def __init__(self, csr: Any, shape: Sequence[int]) -> None:
        self.csr = csr
        self.shape = tuple(int(s) for s in shape)
        n, m = (int(s) for s in csr.shape)
        if _split(self.shape, m) is None or math.prod(self.shape) != n * m:
            raise ValueError(
                f"shape {self.shape} does not hold {n} pixels x {m} channels "
                "(leading sizes: the pixels, trailing sizes: the channels)"
            )

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.csr.dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nnz(self) -> int:
        return int(self.csr.nnz)

    @property
    def nbytes(self) -> int:
        c = self.csr
        return int(c.data.nbytes + c.indices.nbytes + c.indptr.nbytes)

    def reshape(self, shape: Sequence[int]) -> SparseCube:
        """The same rows under another logical shape (pixels and channels kept)."""
        return SparseCube(self.csr, shape)

    def toarray(self) -> np.ndarray:
        """The dense array of shape ``shape`` (explicit; as large as the data unpacked)."""
        return self.csr.toarray().reshape(self.shape)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError(
            f"this spectrum image is held sparse ({self.nnz:,} stored values of "
            f"{math.prod(self.shape):,}); take SpectralImage.unfold() (a CSR matrix for "
            "unmix.factorize) or, if it fits in memory, image.data.toarray()"
        )

    def __getitem__(self, key: Any) -> Any:
        return self.__array__()


def _split(shape: tuple[int, ...], n_channels: int) -> int | None:
    """How many trailing sizes of ``shape`` multiply to ``n_channels`` (1 or 2)."""
    for ndim in (1, 2):
        if len(shape) > ndim and math.prod(shape[-ndim:]) == n_channels:
            return ndim
    return None
