"""One code path, two array libraries: NumPy arrays on the CPU, CuPy arrays on a GPU.

Every layer begins with ``xp = array_module(x)`` and computes with ``xp`` where it would
write ``np``: NumPy for NumPy arrays, CuPy for CuPy arrays (``cupy.get_array_module``),
so there is one copy of each layer's math. NumPy is what runs when CuPy is not installed.
The two libraries agree on almost everything the layers use (ufuncs with ``out=``,
matmul, einsum, reshapes and views); the one place they part is strided views, below:
NumPy's checked buffer view and its writeable ``sliding_window_view`` have no CuPy twin,
so CuPy takes ``as_strided``, the same memory seen the same way.
"""

import numpy as np

try:  # CuPy is the optional "gpu" extra (pip install -e ".[gpu]")
    import cupy
except ImportError:
    cupy = None


def array_module(*arrays):
    """The array library of ``arrays``: cupy if any is a CuPy array, else numpy."""
    return np if cupy is None else cupy.get_array_module(*arrays)


def gpu_missing():
    """What keeps the GPU from use, in words, or "" when CuPy is installed and finds a CUDA
    device. (Importing CuPy needs no device: it is asked for one here.)"""
    if cupy is None:
        return 'CuPy is not installed (pip install -e ".[gpu]")'
    try:
        found = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as err:
        return f"CuPy finds no CUDA device ({err})"
    return "" if found else "CuPy finds no CUDA device"


def on_gpu(a):
    """True for a CuPy array."""
    return array_module(a) is not np


def to_numpy(a):
    """``a`` as a NumPy array: copied from the GPU for a CuPy array, itself for a NumPy one."""
    xp = array_module(a)
    return a if xp is np else xp.asnumpy(a)


def strided_view(a, shape, strides):
    """A view of the C-contiguous copy of ``a`` (``a`` itself when it is one) with ``shape``
    and byte ``strides``, which must stay inside it.

    NumPy builds it as a buffer view, and checks that it stays inside the buffer; CuPy, which
    has no such check, as ``as_strided``.
    """
    xp = array_module(a)
    if xp is np:
        return np.ndarray(shape, a.dtype, buffer=np.ascontiguousarray(a), strides=strides)
    return xp.lib.stride_tricks.as_strided(xp.ascontiguousarray(a), shape, strides)


def window_view(x, size, writeable=False):
    """x (N, C, H, W) -> view (N, C, H - size + 1, W - size + 1, size, size) of every window.

    Element [n, c, r, s, i, j] is x[n, c, r + i, s + j]. writeable only for arrays we own
    and write each pixel of once per window offset (a pooling backward's dx): the windows
    overlap. NumPy: sliding_window_view (read-only unless writeable); CuPy: strided_windows.
    """
    if array_module(x) is np:
        return np.lib.stride_tricks.sliding_window_view(
            x, (size, size), axis=(2, 3), writeable=writeable
        )
    return strided_windows(x, size, writeable)


def strided_windows(x, size, writeable=False):
    """window_view as CuPy takes it: as_strided on x itself, which must then be C-contiguous
    when writeable, else the writes would land in a copy. It works on NumPy arrays too, where
    the tests compare it with sliding_window_view."""
    if writeable and not x.flags.c_contiguous:
        raise ValueError("window_view: a writeable view needs a C-contiguous array")
    n, c, h, w = x.shape
    s = array_module(x).ascontiguousarray(x).strides
    shape = (n, c, h - size + 1, w - size + 1, size, size)
    return strided_view(x, shape, (*s, s[2], s[3]))
