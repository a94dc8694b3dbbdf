#!/usr/bin/env python3
"""Generate the tiny reference files used by tests/test_io.cpp.

Writes into tests/fixtures/io/ (relative to the repository root) using the real numpy and
safetensors packages, so the C++ readers are checked against the reference writers and the C++
writers can be compared byte for byte. The expected values are hard-coded in tests/test_io.cpp;
keep the two in sync. Run:  /opt/fixenv/bin/python scripts/gen_io_fixtures.py
"""
import os
import sys

import numpy as np
import numpy.lib.format as npf
import safetensors.numpy
from safetensors import TensorSpec, serialize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "io")


def path(name):
    return os.path.join(OUT, name)


def save_npy(name, a, version=None):
    with open(path(name), "wb") as f:
        if version is None:
            np.save(f, a)
        else:
            npf.write_array(f, a, version=version)


def npy_fixtures():
    save_npy("f32_2x3.npy", (np.arange(6, dtype=np.float32).reshape(2, 3) * 0.5 - 1.0))
    save_npy("f64_scalar.npy", np.array(3.25, dtype=np.float64))
    save_npy("f16_vec.npy", np.array([1.0, -2.0, 65504.0, 2.0**-24, np.inf, -np.inf, 0.1],
                                     dtype=np.float16))
    save_npy("i32_vec.npy", np.array([0, 1, -1, 2**31 - 1, -2**31], dtype=np.int32))
    save_npy("i64_2x2.npy", np.array([[2**40, -1], [7, -2**63]], dtype=np.int64))
    save_npy("u8_vec.npy", np.array([0, 1, 127, 128, 255], dtype=np.uint8))
    save_npy("bool_vec.npy", np.array([True, False, True, True], dtype=np.bool_))
    save_npy("f32_bigendian_2x2.npy", np.array([[1.5, -2.0], [3.0, 1e-3]], dtype=">f4"))
    save_npy("i64_bigendian_vec.npy", np.array([1, -2, 2**40], dtype=">i8"))
    # Fortran-ordered arrays: np.save writes fortran_order True and column-major data.
    save_npy("i32_fortran_2x3.npy", np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3)))
    save_npy("i64_fortran_2x3x4.npy",
             np.asfortranarray(np.arange(24, dtype=np.int64).reshape(2, 3, 4)))
    save_npy("f32_v2.npy", np.array([1.0, 2.0, 3.0], dtype=np.float32), version=(2, 0))
    save_npy("f32_v3.npy", np.array([4.0, 5.0], dtype=np.float32), version=(3, 0))
    save_npy("f32_empty_0x3.npy", np.zeros((0, 3), dtype=np.float32))


def st_fixtures():
    # Every dtype genlm supports, plus a scalar and an empty tensor, and metadata.
    f16 = np.array([1.0, -2.0, 65504.0, 2.0**-24], dtype=np.float16)
    bf16 = np.array([0x3F80, 0xC000, 0x7F80, 0x0001], dtype=np.uint16)  # 1, -2, inf, min subnormal
    f32 = (np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5)
    f64 = np.array(3.25, dtype=np.float64)
    i32 = np.array([-7, 0, 2**31 - 1], dtype=np.int32)
    i64 = np.array([[2**40], [-3]], dtype=np.int64)
    u8 = np.array([0, 200, 255], dtype=np.uint8)
    b = np.array([True, False, True], dtype=np.bool_)
    empty = np.zeros((0, 3), dtype=np.float32)
    arrays = {  # name: (safetensors dtype, numpy array holding the bits)
        "f16": ("float16", f16), "bf16": ("bfloat16", bf16), "f32": ("float32", f32),
        "f64_scalar": ("float64", f64), "i32": ("int32", i32), "i64": ("int64", i64),
        "u8": ("uint8", u8), "bool": ("bool", b), "empty": ("float32", empty),
    }
    specs = {name: TensorSpec(dtype=dt, shape=list(a.shape), data_ptr=a.ctypes.data,
                              data_len=a.nbytes) for name, (dt, a) in arrays.items()}
    data = bytes(serialize(specs, metadata={"format": "pt", "note": "genlm fixture"}))
    with open(path("all_dtypes.safetensors"), "wb") as f:
        f.write(data)

    # Single dtype, no metadata, exercising the space padding of the header.
    with open(path("f32_pair.safetensors"), "wb") as f:
        f.write(safetensors.numpy.save({"weight": np.array([[1.0, 2.0], [3.0, 4.0]], np.float32),
                                        "bias": np.array([0.5], np.float32)}))

    # Sanity-check with the reference loader (bf16 cannot be loaded into numpy; skip it).
    for name, t in safetensors.numpy.load_file(path("f32_pair.safetensors")).items():
        assert t.dtype == np.float32, name


def main():
    os.makedirs(OUT, exist_ok=True)
    npy_fixtures()
    st_fixtures()
    for name in sorted(os.listdir(OUT)):
        print(f"{os.path.getsize(path(name)):6d}  {name}")


if __name__ == "__main__":
    sys.exit(main())
