"""Tensor-core instructions: where each lane of a warp holds its fragments, and the named
CUDA helper per instruction shape and input type that the renderer calls.

`mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32` (PTX ISA, "Matrix
Fragments for mma.m16n8k16 with floating point type"): lane l has group g = l / 4 and
t = l % 4 (its index in the group). With those bases, each fragment element's position:

    A (16 x 16, row major), 8 elements:  (row, col) = (g, 2t) + A_OFFSETS[i]
    B (16 x 8, column major), 4 elements: (k, n)    = (2t, g) + B_OFFSETS[i]
    C, D (16 x 8), 4 float32 elements:   (row, col) = (g, 2t) + C_OFFSETS[i]

The emulator (`runtime.gpu_emulator`) gathers and scatters fragments with these tables,
and the GEMM template (`codegen.cuda.gemm`) loads them from shared memory with them, so
the two cannot disagree; the GPU itself checks the tables against PTX (test_cuda_gpu).
"""
from __future__ import annotations

A_OFFSETS = ((0, 0), (0, 1), (8, 0), (8, 1), (0, 8), (0, 9), (8, 8), (8, 9))
B_OFFSETS = ((0, 0), (1, 0), (8, 0), (9, 0))
C_OFFSETS = ((0, 0), (0, 1), (8, 0), (8, 1))
TILE = {"m16n8k16": (16, 8, 16)}  # (m, n, k)

_PTX_TYPE = {"float16": "f16", "bfloat16": "bf16"}


def helper_name(shape: str, input_dtype: str) -> str:
    return f"cm_mma_{shape}_{_PTX_TYPE[input_dtype]}_f32"


def helper_source(shape: str, input_dtype: str) -> str:
    """The device function running one `shape` instruction on fragments in local arrays
    (16-bit inputs as their bits, packed two to a 32-bit register as PTX wants)."""
    assert shape == "m16n8k16"
    ty = _PTX_TYPE[input_dtype]
    return (
        f"__device__ __forceinline__ void {helper_name(shape, input_dtype)}(float* d, const unsigned short* a, "
        f"const unsigned short* b, const float* c) {{\n"
        f"    unsigned A0 = a[0] | ((unsigned)a[1] << 16), A1 = a[2] | ((unsigned)a[3] << 16);\n"
        f"    unsigned A2 = a[4] | ((unsigned)a[5] << 16), A3 = a[6] | ((unsigned)a[7] << 16);\n"
        f"    unsigned B0 = b[0] | ((unsigned)b[1] << 16), B1 = b[2] | ((unsigned)b[3] << 16);\n"
        f"    float c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3];\n"
        f'    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.{ty}.{ty}.f32 {{%0,%1,%2,%3}}, {{%4,%5,%6,%7}}, '
        f'{{%8,%9}}, {{%10,%11,%12,%13}};"\n'
        f'        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])\n'
        f'        : "r"(A0), "r"(A1), "r"(A2), "r"(A3), "r"(B0), "r"(B1), "f"(c0), "f"(c1), "f"(c2), "f"(c3));\n'
        f"}}\n")
