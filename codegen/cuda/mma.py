"""Tensor-core instructions: where each lane of a warp holds its fragments, and the named
CUDA helper per instruction shape and input type that the renderer calls.

`mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32` (PTX ISA, "Matrix
Fragments for mma.m16n8k16 with floating point type"): lane l has group g = l / 4 and
t = l % 4 (its index in the group). With those bases, each fragment element's position:

    A (16 x 16, row major), 8 elements:  (row, col) = (g, 2t) + A_OFFSETS[i]
    B (16 x 8, column major), 4 elements: (k, n)    = (2t, g) + B_OFFSETS[i]
    C, D (16 x 8), 4 float32 elements:   (row, col) = (g, 2t) + C_OFFSETS[i]

`ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16` fills fragments straight from
shared memory: lane l gives the address of row l % 8 of matrix l // 8 and receives
(g, 2t), (g, 2t + 1) of each matrix (transposed: (2t, g), (2t + 1, g)), register i from
matrix i, the lower half the first element. So A's four 8x8 quarters in A_OFFSETS'
order (rows 0-7 / 8-15, columns 0-7, then 8-15) are one x4 load, and B's two k-halves,
stored [k][n], one x2.trans load.

The emulator (`runtime.gpu_emulator`) gathers and scatters fragments with these tables,
and the matrix-product template (`codegen.cuda.igemm`) loads them with ldmatrix, so
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


def ldmatrix_name(count: int, trans: bool) -> str:
    return f"cm_ldmatrix_x{count}{'_trans' if trans else ''}"


def ldmatrix_source(count: int, trans: bool) -> str:
    """The device function loading `count` 8x8 b16 matrices into a local array of 16-bit
    elements, two per 32-bit register (the lower half first)."""
    regs = ", ".join(f"%{i}" for i in range(count))
    outs = ", ".join(f'"=r"(r[{i}])' for i in range(count))
    return (
        f"__device__ __forceinline__ void {ldmatrix_name(count, trans)}(unsigned short* d, const unsigned short* p) {{\n"
        f"    unsigned r[{count}];\n"
        f"    unsigned s = (unsigned)__cvta_generic_to_shared(p);\n"
        f'    asm volatile("ldmatrix.sync.aligned.m8n8.x{count}{".trans" if trans else ""}.shared.b16 {{{regs}}}, '
        f'[%{count}];" : {outs} : "r"(s) : "memory");\n'
        f"    for (int i = 0; i < {count}; ++i) {{ d[2 * i] = (unsigned short)(r[i] & 0xffffu); "
        f"d[2 * i + 1] = (unsigned short)(r[i] >> 16); }}\n"
        f"}}\n")
