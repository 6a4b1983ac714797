"""Memory planning: the one arena planner. Every intermediate buffer of a compiled model
gets an offset in one arena, and buffers whose lifetimes do not overlap share bytes.

The build (`codegen.model_builder`) describes what its kernel calls need, after lowering,
when each kernel's scratch is known:
  - a value computed by one call and read by later ones lives from the first call that
    touches it to the last (views and channel slices a Concat's producers write in place
    share their container's buffer: the build resolves them before it asks);
  - a kernel's scratch lives for its own call.
Placement: buffers, largest first, go at the lowest 64-byte aligned offset that does not
collide with an already placed buffer alive at any of the same calls (greedy by size, as
in TFLite's arena planner). Graph inputs, outputs and constants live outside the arena.
"""
from __future__ import annotations

from dataclasses import dataclass, field

ALIGNMENT = 64


def align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


@dataclass
class ArenaBuffer:
    """One buffer the arena must hold from call `start` to call `end` (inclusive)."""

    name: str  # what it holds: a value's name, or "<kernel>:scratch<k>"
    size: int  # bytes
    start: int
    end: int
    offset: int = -1

    def overlaps(self, other: "ArenaBuffer") -> bool:
        """Alive at a common call (then their bytes must not overlap)."""
        return self.start <= other.end and other.start <= self.end


@dataclass
class MemoryPlan:
    offsets: dict[str, int] = field(default_factory=dict)  # buffer name -> arena offset
    arena_bytes: int = 0
    naive_bytes: int = 0  # every buffer in its own allocation

    @property
    def buffers(self) -> int:
        return len(self.offsets)

    def summary(self) -> dict:
        return {"arena_bytes": self.arena_bytes, "naive_bytes": self.naive_bytes, "buffers": self.buffers}


def plan_arena(buffers: list[ArenaBuffer]) -> MemoryPlan:
    """Set every buffer's offset (greedy by size) and return the plan."""
    placed: list[ArenaBuffer] = []
    arena = 0
    for buf in sorted(buffers, key=lambda b: (-align(b.size), b.start)):
        size = align(buf.size)
        busy = sorted((p.offset, p.offset + align(p.size)) for p in placed if p.overlaps(buf))
        offset = 0
        for lo, hi in busy:
            if offset + size <= lo:
                break
            offset = max(offset, hi)
        buf.offset = offset
        placed.append(buf)
        arena = max(arena, offset + size)
    return MemoryPlan({b.name: b.offset for b in buffers}, arena, sum(align(b.size) for b in buffers))
