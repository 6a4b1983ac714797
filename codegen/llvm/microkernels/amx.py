"""Intel AMX (Advanced Matrix Extensions) tile operations for the GEMM microkernels.

AMX adds eight tile registers of up to 16 rows x 64 bytes and one instruction per tile
product: `tdpbf16ps` (C[16x16 float32] += A[16 x 32 bfloat16] . B[32 x 16 bfloat16],
with B in k pairs) and `tdpbusd` (int32 C += uint8 A[16 x 64] . int8 B[64 x 16], B in k
quads). Those B layouts are exactly the packed panels of the AVX512-BF16 and VNNI paths
(`gemm.pack_weights`: one 32-bit slot per column holding a k pair or quad), so a 16-column
slice of a panel is a B tile with a row stride of NR slots, and 16 rows of the packed A
block (row i at apack + i*ks slots) are an A tile with a row stride of ks slots.

The register plan is fixed, which keeps the tile configuration one constant: every tile
is 16 rows x 64 bytes; C tiles are 0-3 (up to 2 x 2 of them: a 32 x 32 register tile),
A tiles 4-5, B tiles 6-7. A worker loads the configuration once (`ldtilecfg`) and releases
the tiles when it returns (`tilerelease`), so threads that do not run AMX kernels never
carry its 8 KiB of state.

The llvm.x86 intrinsics used here take tile numbers as immediates (LLVM's "legacy" AMX
intrinsics); no x86_amx values are needed in the IR. Linux grants a process the tile data
state only on request (`codegen.amx_permission.request_amx`): without it the first tile
instruction raises SIGILL, so both the compiler (for the host) and the loader ask first.
"""
from __future__ import annotations

import llvmlite.ir as ir

from .irutil import I8, I8P, I64, VOID, declare

TILE_ROWS = 16  # rows of every tile (and of an A tile: 16 output rows)
TILE_SLOTS = 16  # 32-bit slots in a tile row (64 bytes): 16 k pairs (bf16) or quads (int8)
C_TILES, A_TILES, B_TILES = (0, 1, 2, 3), (4, 5), (6, 7)
_CONFIG_BYTES = 64


def _config_bytes() -> list[int]:
    """The 64-byte tile configuration (palette 1): bytes 16+2t hold tile t's row width in
    bytes (u16), byte 48+t its row count."""
    cfg = [0] * _CONFIG_BYTES
    cfg[0] = 1  # palette 1
    for t in range(8):
        cfg[16 + 2 * t] = TILE_SLOTS * 4  # 64 bytes, little-endian u16
        cfg[48 + t] = TILE_ROWS
    return cfg


def load_config(b: ir.IRBuilder) -> None:
    """ldtilecfg with the module's one configuration (a 64-byte-aligned constant)."""
    module = b.module
    cfg = module.globals.get("amx.tilecfg")
    if cfg is None:
        ty = ir.ArrayType(I8, _CONFIG_BYTES)
        cfg = ir.GlobalVariable(module, ty, "amx.tilecfg")
        cfg.linkage, cfg.global_constant, cfg.align = "internal", True, 64
        cfg.initializer = ir.Constant(ty, _config_bytes())
    b.call(declare(module, "llvm.x86.ldtilecfg", VOID, [I8P]), [b.bitcast(cfg, I8P)])


def release(b: ir.IRBuilder) -> None:
    b.call(declare(b.module, "llvm.x86.tilerelease", VOID, []), [])


def _tile(t: int) -> ir.Constant:
    return ir.Constant(I8, t)


def zero(b: ir.IRBuilder, tile: int) -> None:
    b.call(declare(b.module, "llvm.x86.tilezero", VOID, [I8]), [_tile(tile)])


def load(b: ir.IRBuilder, tile: int, ptr, stride_bytes: int) -> None:
    """Tile `tile` <- 16 rows of 64 bytes at ptr, rows `stride_bytes` apart."""
    fn = declare(b.module, "llvm.x86.tileloadd64", VOID, [I8, I8P, I64])
    b.call(fn, [_tile(tile), b.bitcast(ptr, I8P), ir.Constant(I64, stride_bytes)])


def store(b: ir.IRBuilder, tile: int, ptr, stride_bytes: int) -> None:
    fn = declare(b.module, "llvm.x86.tilestored64", VOID, [I8, I8P, I64])
    b.call(fn, [_tile(tile), b.bitcast(ptr, I8P), ir.Constant(I64, stride_bytes)])


def dot(b: ir.IRBuilder, c: int, a: int, bt: int, int8: bool) -> None:
    """C tile += A tile . B tile: bfloat16 pairs into float32, or uint8 x int8 quads into int32."""
    name = "llvm.x86.tdpbusd" if int8 else "llvm.x86.tdpbf16ps"
    b.call(declare(b.module, name, VOID, [I8, I8, I8]), [_tile(c), _tile(a), _tile(bt)])
