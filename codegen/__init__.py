"""compiler.codegen: CPU code generation through LLVM.

    loop_ir.py        the target-neutral loop IR (loops of every kind, loads/stores, locals, intrinsics)
    printer.py        its text form;  verify.py  its verifier
    te.py             tensor expressions: what each output element is (Compute, Reduce)
    lowering/         the table op -> lowering rule (one small rule per op), NOT_LOWERABLE with reasons
    schedule.py       Schedules: named knobs with declared ranges per kernel class, heuristic defaults,
                      and the lowering of one tensor-expression stage into loops under a schedule
    kernel_builder.py a group of nodes (one today, a fused group later) -> one kernel
    model_builder.py  the whole graph -> kernels + memory plan (arena) + call list
    llvm_backend.py   loop IR -> LLVM IR with llvmlite.ir (vectors, parallel loops on our thread pool)
    llvm_target.py    host CPU / -mcpu targets and the CPU features an artifact needs
    llvm_compile.py   O3 (new pass manager), object code, link to a shared library
    native.py         compile_graph: Graph -> NativeBuild (library, weights, arena size)
    onnx_backend_llvm.py  ONNX conformance backend on native code

Decisions: shapes are static (symbolic input dims must be fixed with input_shapes; the
error says so); the in-process model uses the same linked .so as the artifact (no MCJIT
path to keep in sync); parallel loops go through cm_parallel (csrc/thread_pool.c).
"""
