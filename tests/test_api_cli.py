"""The user-facing surface: compiler.compile / save / load / run, the artifact's checks, and the CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import compiler
from compiler.artifact import MAGIC
from compiler.cli import main as cli_main
from compiler.ir.errors import ArtifactError, InputError, TargetError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from make_example import build_tiny_cnn  # noqa: E402


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    import onnx

    path = tmp_path_factory.mktemp("models") / "tiny_cnn.onnx"
    onnx.save(build_tiny_cnn(), path)
    return path


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(3).standard_normal((2, 3, 32, 32)).astype(np.float32)


def test_compile_run_matches_onnxruntime(model_path, image):
    cm = compiler.compile(str(model_path), target="reference")
    out = cm.run({"image": image})["probs"]
    expected = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"]).run(None, {"image": image})[0]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cm(image), out)  # positional call, single output comes back bare


def test_compile_accepts_bytes_and_modelproto(model_path, image):
    import onnx

    a = compiler.compile(model_path.read_bytes(), target="reference").run({"image": image})["probs"]
    b = compiler.compile(onnx.load(str(model_path)), target="reference").run({"image": image})["probs"]
    np.testing.assert_array_equal(a, b)


def test_save_and_load_round_trip(model_path, image, tmp_path):
    cm = compiler.compile(str(model_path), target="reference")
    art = tmp_path / "m.cmod"
    cm.save(art)
    loaded = compiler.load(art)
    assert [s.name for s in loaded.inputs] == ["image"]
    assert loaded.inputs[0].shape == ("batch", 3, 32, 32)
    np.testing.assert_array_equal(loaded.run({"image": image})["probs"], cm.run({"image": image})["probs"])
    raw = art.read_bytes()
    assert raw.startswith(MAGIC) and b"pickle" not in raw


def test_wrong_inputs_are_named(model_path, image):
    cm = compiler.compile(str(model_path), target="reference")
    with pytest.raises(InputError, match=r"unknown input\(s\) \['img'\]"):
        cm.run({"img": image})
    with pytest.raises(InputError, match=r"input 'image': expected shape \[batch, 3, 32, 32\], got \[2, 3, 16, 16\]"):
        cm.run({"image": image[:, :, :16, :16]})
    with pytest.raises(InputError, match="input 'image': expected element type float32, got int64"):
        cm.run({"image": image.astype(np.int64)})


def test_unknown_target_lists_known_ones(model_path):
    with pytest.raises(TargetError, match="unknown target 'tpu'; known targets: reference .*llvm .*cuda"):
        compiler.compile(str(model_path), target="tpu")


def _corrupt(tmp_path, model_path, how) -> Path:
    cm = compiler.compile(str(model_path), target="reference")
    art = tmp_path / f"{how}.cmod"
    cm.save(art)
    raw = bytearray(art.read_bytes())
    if how == "flip":
        raw[-10] ^= 0xFF
    elif how == "truncate":
        raw = raw[: len(raw) // 2]
    elif how == "version":
        head_len = int.from_bytes(raw[8:12], "little")
        head = json.loads(raw[12:12 + head_len])
        head["format_version"] = 999
        new = json.dumps(head).encode()
        raw = raw[:8] + len(new).to_bytes(4, "little") + new + raw[12 + head_len:]
    elif how == "foreign":
        raw = bytearray(b"PK\x03\x04 this is a zip file, not an artifact")
    art.write_bytes(bytes(raw))
    return art


@pytest.mark.parametrize("how, message", [
    ("flip", "corrupt artifact \\(section 'weights.bin' does not match its sha256\\)"),
    ("truncate", "truncated artifact"),
    ("version", "artifact format version 999, this compiler reads version 1"),
    ("foreign", "not a compiled model"),
])
def test_bad_artifacts_are_refused_clearly(tmp_path, model_path, how, message):
    art = _corrupt(tmp_path, model_path, how)
    with pytest.raises(ArtifactError, match=message):
        compiler.load(art)


def test_cli_inspect_compile_run(model_path, image, tmp_path, capsys):
    assert cli_main(["inspect", str(model_path), "--input-shape", "image=1,3,32,32"]) == 0
    text = capsys.readouterr().out
    assert "image: f32[1,3,32,32]" in text and "Conv" in text and "IR:" in text and "probs: f32[1,10]" in text

    art = tmp_path / "cli.cmod"
    assert cli_main([str(model_path), "--target", "reference", "-o", str(art)]) == 0
    assert art.exists()

    inputs = tmp_path / "in.npz"
    np.savez(inputs, image=image)
    outputs = tmp_path / "out.npz"
    assert cli_main(["run", str(art), "--inputs", str(inputs), "-o", str(outputs)]) == 0
    with np.load(outputs) as data:
        np.testing.assert_allclose(data["probs"], compiler.load(art).run({"image": image})["probs"])

    assert cli_main(["run", str(art)]) == 0
    assert "random inputs" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["{model}", "--target", "tpu"], "error: unknown target 'tpu'; known targets:"),
    (["missing.onnx"], "error: missing.onnx: no such file"),
    (["run", "missing.cmod"], "error: missing.cmod: no such file"),
    (["inspect", "{model}", "--input-shape", "nosuch=1,2"], "error: input_shapes names unknown input(s) ['nosuch']"),
])
def test_cli_errors_are_one_line(argv, message, model_path, capsys):
    argv = [a.replace("{model}", str(model_path)) for a in argv]
    assert cli_main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err


def test_console_script_is_installed(model_path):
    exe = Path(sys.executable).parent / "compile"
    result = subprocess.run([str(exe), "inspect", str(model_path), "--no-ir"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "op counts:" in result.stdout


def test_llvm_default_needs_static_shapes_and_says_how(model_path, capsys):
    assert cli_main([str(model_path), "-o", "unused.cmod"]) == 1  # llvm is the default target
    err = capsys.readouterr().err
    assert "input 'image': type f32[batch,3,32,32] is not a static-shaped tensor" in err
    assert "--input-shape image=1,3,32,32" in err and err.count("\n") == 1


@pytest.mark.parametrize("kind", ["empty", "truncated", "npy"])
def test_cli_inputs_that_are_not_an_npz_are_named(model_path, image, tmp_path, capsys, kind):
    """`compile run --inputs` and `compile inspect --inputs` with an empty file, a truncated
    archive or a single .npy array: an error naming the file, never a traceback."""
    art = tmp_path / "m.cmod"
    assert cli_main([str(model_path), "--target", "reference", "-o", str(art)]) == 0
    good = tmp_path / "good.npz"
    np.savez(good, image=image)
    bad = tmp_path / f"{kind}.npz"
    if kind == "empty":
        bad.write_bytes(b"")
    elif kind == "truncated":
        bad.write_bytes(good.read_bytes()[:100])
    else:
        bad = tmp_path / "one.npy"
        np.save(bad, image)
    capsys.readouterr()
    assert cli_main(["run", str(art), "--inputs", str(bad)]) == 1
    assert cli_main(["inspect", str(model_path), "--precision", "bf16", "--inputs", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.count(f"error: {bad}:") == 2 and "Traceback" not in err, err
