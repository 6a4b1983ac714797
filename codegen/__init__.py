"""compiler.codegen: from an optimized graph to kernels, target-neutral, and the targets'
code generators below it.

    loop_ir.py        the loop IR (loops of every kind incl. GPU block/thread, loads/stores,
                      buffer scopes global/shared/local, barriers, thread indices, warp shuffles)
    printer.py        its text form;  verify.py  its verifier (against a target's capabilities)
    renderer.py       the base class every backend's loop-IR renderer subclasses
    te.py             tensor expressions: what each output element is (Compute, Reduce)
    lowering/         one loop-IR rule per op, registered against the op (`OpDef.lowering`)
    schedule.py       Schedules: named knobs with declared ranges per kernel class, heuristic
                      defaults, where a build's schedules come from (`Schedules`)
    kernel_builder.py a group of nodes -> one loop-IR kernel
    permute_copy.py   a fused group of reshapes around one Transpose -> one permuted copy
    slice_copy.py     a fused group of views around one constant Slice -> one strided copy
    extern.py         ExternPlan: a node a target computes with a kernel of its own
    concat_in_place.py  channel Concats whose producers write into their slices
    concat_copy.py    a Concat alone in its group: one copy per input into its slice
    model_builder.py  the whole graph (FusedKernel nodes = kernels) -> NativeProgram: kernels,
                      calls, storage of every argument, the arena (passes.plan_memory)
    target.py         CodegenTarget and Capabilities: what the above asks of a target
    amx_permission.py the OS grant of AMX tile state (asked by the host target and the loader)
    llvm/             the LLVM CPU target: emitter, entry point, toolchain, microkernels

Shapes are static (symbolic input dims must be fixed with input_shapes; the error says so).
Nothing here imports the autotuner or the compiler package: a build passes its schedule
source and its target down.
"""
