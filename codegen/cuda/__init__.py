"""compiler.codegen.cuda: the CUDA target's code generator.

    target.py     CUDATarget (-arch list), capabilities (GPU loop kinds, shared memory, mma)
    renderer.py   loop IR -> CUDA C (a `codegen.renderer.Renderer`), one __global__ per launch
    mma.py        tensor-core fragment layouts (PTX's mma and ldmatrix) and their named helpers
    igemm.py      the matrix-product template: shared-memory tiles, cp.async double buffering,
                  mma.sync (16-bit) or FMA register tiles (float32), operands through index
                  functions (implicit GEMM)
    products.py   MatMul, Linear, Gemm and Conv onto the template (the extern lowerings)
    attention.py  fused attention (online softmax, K/V tiles in shared memory, warp shuffles)
    nvrtc.py      CUDA C -> cubin per architecture and PTX, in-process (cuda-bindings)
    build.py      NativeProgram -> CudaBuild (source, cubins, PTX, launch table, kernels' IR)

Importing this package registers its extern lowerings ("extern:cuda") against their ops.
"""
from . import attention, products  # noqa: F401 - register "extern:cuda" on Attention, MatMul, Linear, Gemm, Conv
