"""compiler.frontend: models from other tools into the IR.

ONNX: `onnx_import.import_onnx` (reading: `onnx_loader`; types and attributes: `onnx_types`;
what is supported: `onnx_support`; per-op rewrites: `onnx_converters` and the opset
upgrades in `onnx_legacy`/`onnx_scan8`; function ops: `onnx_functions`).
torch: `fx_import` (ATen converters in `fx_aten`, the torch.compile side in `torch_dynamo`).
"""
