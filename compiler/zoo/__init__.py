"""The model zoo: real CNN architectures with seeded random weights, and models defined in torch.

- `light`: the nine CNNs shipped in the onnx package (ResNet-50, DenseNet-121, Inception v1/v2,
  ShuffleNet, SqueezeNet, VGG-19, AlexNet, ZFNet-512) with their placeholder weights replaced.
- `torch_models`: a BERT-style encoder and an MLP in torch (imports torch).
- `export`: ONNX export of the torch models; `python -m compiler.zoo.export OUTDIR`.
- `tolerances`: per-dtype comparison tolerances and `assert_close`.

Importing this package pulls in neither torch nor the models' weights.
"""
