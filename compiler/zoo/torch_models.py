"""Models the project defines in torch: a BERT-style encoder and an MLP, with seeded weights.

The encoder is written the way Hugging Face's `BertModel` is (embeddings with position and
token-type tables and LayerNorm, an additive extended attention mask, per-head reshapes
from the run-time shape, exact erf GELU, post-LayerNorm residual blocks), so its exported
graph has the ops a real exported BERT has, without depending on `transformers`.

Weights are not the training-time init (N(0, 0.02) with unit LayerNorms and zero biases):
that makes attention nearly uniform and every LayerNorm scale identical, which would hide
a swapped scale/bias or a wrong softmax axis. Here linear layers keep unit variance
(std 1/sqrt(fan_in)) and LayerNorm scales and all biases are random.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class BertConfig:
    """MiniLM-L6-H384-sized: 6 layers, hidden 384, 12 heads, FFN 1536."""
    vocab_size: int = 30522
    hidden_size: int = 384
    num_layers: int = 6
    num_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    seq_len: int = 128  # what the export and the tests use


class BertEmbeddings(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        # Buffers sliced to the run-time length, as in HF (so the export has the Slice/Expand).
        self.register_buffer("position_ids", torch.arange(cfg.max_position_embeddings).unsqueeze(0),
                             persistent=False)
        self.register_buffer("token_type_ids", torch.zeros(1, cfg.max_position_embeddings, dtype=torch.long),
                             persistent=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        batch, seq_len = input_ids.size()
        position_ids = self.position_ids[:, :seq_len]
        token_type_ids = self.token_type_ids[:, :seq_len].expand(batch, seq_len)
        x = (self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
             + self.position_embeddings(position_ids))
        return self.LayerNorm(x)


class BertSelfAttention(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.head_size = cfg.hidden_size // cfg.num_heads
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        # [batch, seq, hidden] -> [batch, heads, seq, head_size], shape taken at run time.
        x = x.view(x.size()[:-1] + (self.num_heads, self.head_size))
        return x.permute(0, 2, 1, 3)

    def forward(self, hidden: torch.Tensor, extended_mask: torch.Tensor) -> torch.Tensor:
        q = self.split_heads(self.query(hidden))
        k = self.split_heads(self.key(hidden))
        v = self.split_heads(self.value(hidden))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_size)
        probs = torch.softmax(scores + extended_mask, dim=-1)
        context = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        return context.view(context.size()[:-2] + (self.num_heads * self.head_size,))


class BertLayer(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attention = BertSelfAttention(cfg)
        self.attention_output = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.attention_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.intermediate = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.gelu = nn.GELU()  # exact (erf) form, as BERT's "gelu"
        self.output = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.output_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, hidden: torch.Tensor, extended_mask: torch.Tensor) -> torch.Tensor:
        attn = self.attention_norm(self.attention_output(self.attention(hidden, extended_mask)) + hidden)
        return self.output_norm(self.output(self.gelu(self.intermediate(attn))) + attn)


def extended_attention_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[batch, seq] of 1 (attend) / 0 (padding) -> additive [batch, 1, 1, seq]: 0 or dtype's min.

    As HF's `_prepare_4d_attention_mask`: the inverted mask is filled with the most negative
    value rather than multiplied by it, so a fully padded row gives min, not -inf or NaN.
    """
    inverted = 1.0 - attention_mask[:, None, None, :].to(dtype)
    return inverted.masked_fill(inverted.to(torch.bool), torch.finfo(dtype).min)


class BertEncoder(nn.Module):
    """input_ids, attention_mask (int64 [batch, seq]) -> last hidden state [batch, seq, hidden]."""

    def __init__(self, cfg: BertConfig = BertConfig()):
        super().__init__()
        self.config = cfg
        self.embeddings = BertEmbeddings(cfg)
        self.layers = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.num_layers))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.embeddings(input_ids)
        mask = extended_attention_mask(attention_mask, hidden.dtype)
        for layer in self.layers:
            hidden = layer(hidden, mask)
        return hidden


class MLP(nn.Module):
    """784-512-512-10 with ReLUs: an MNIST-sized classifier's logits."""

    def __init__(self, sizes: tuple[int, ...] = (784, 512, 512, 10)):
        super().__init__()
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(n_in, n_out))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


MLP_BATCH = 64


def _init_weights(module: nn.Module, generator: torch.Generator) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            # Unit-variance outputs for unit-variance inputs (LeCun); keeps attention scores O(1).
            m.weight.data.normal_(0.0, 1.0 / math.sqrt(m.in_features), generator=generator)
            m.bias.data.uniform_(-0.1, 0.1, generator=generator)
        elif isinstance(m, nn.Embedding):
            m.weight.data.normal_(0.0, 1.0, generator=generator)
        elif isinstance(m, nn.LayerNorm):
            m.weight.data.uniform_(0.8, 1.2, generator=generator)
            m.bias.data.uniform_(-0.1, 0.1, generator=generator)


def _seeded(model: nn.Module, seed: int) -> nn.Module:
    _init_weights(model, torch.Generator().manual_seed(seed))
    return model.eval()


def make_bert(seed: int = 0, cfg: BertConfig = BertConfig()) -> BertEncoder:
    """The BERT-style encoder in eval mode with seeded weights."""
    return _seeded(BertEncoder(cfg), seed)


def make_mlp(seed: int = 0) -> MLP:
    """The 784-512-512-10 MLP in eval mode with seeded weights."""
    return _seeded(MLP(), seed)


def bert_inputs(batch: int = 2, seed: int = 0, cfg: BertConfig = BertConfig()) -> dict[str, torch.Tensor]:
    """Random token ids and an attention mask whose rows end in different amounts of padding
    (the first row has none), so the mask's effect shows in the output."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, cfg.vocab_size, (batch, cfg.seq_len), generator=g)
    lengths = [cfg.seq_len - (i * cfg.seq_len) // (2 * batch) for i in range(batch)]
    attention_mask = (torch.arange(cfg.seq_len)[None, :] < torch.tensor(lengths)[:, None]).long()
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def mlp_inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(MLP_BATCH, 784, generator=g)}
