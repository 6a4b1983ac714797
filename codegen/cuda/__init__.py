"""compiler.codegen.cuda: the CUDA target's code generator.

    target.py     CUDATarget (-arch list), capabilities (GPU loop kinds, shared memory, mma)
    renderer.py   loop IR -> CUDA C (a `codegen.renderer.Renderer`), one __global__ per launch
    mma.py        tensor-core fragment layouts (PTX's tables) and the named helper per shape
    gemm.py       float16 / bfloat16 MatMul on mma.sync: a loop-IR template, the extern lowering
    nvrtc.py      CUDA C -> cubin per architecture and PTX, in-process (cuda-bindings)
    build.py      NativeProgram -> CudaBuild (source, cubins, PTX, launch table, kernels' IR)

Importing this package registers its extern lowerings ("extern:cuda") against their ops.
"""
from . import gemm  # noqa: F401 - registers "extern:cuda" on MatMul
