"""Model FLOPs per token, counted from the architecture, for MFU (model FLOPs utilisation).

MFU divides the FLOPs the model *needs* (not what the kernels happen to execute: no recomputation,
no padding) by what the device could do. The count follows PaLM (Chowdhery et al. 2022, appendix B):
every matmul costs 2 FLOPs per multiply-add in the forward pass and twice that in the backward pass,
and attention counts the whole T x T score matrix. A causal kernel skips about half of that matrix;
`causal=True` counts only what it keeps, for a figure closer to the work done. Norms, RoPE,
activations, softmax and the optimizer are left out: they are O(d) per token against O(d^2).
Pure arithmetic on a ModelConfig: no torch.
"""

from __future__ import annotations

from asymptote.config import ModelConfig


def matmul_params(cfg: ModelConfig) -> int:
    """Weights that take part in a matmul for every token: attention and SwiGLU projections of each
    layer, plus the (tied) output head. The embedding lookup is a gather, so the input side of the
    tied matrix costs nothing; its output side (d_model x vocab) is a full matmul."""
    attn = cfg.d_model * cfg.head_dim * (2 * cfg.n_head + 2 * cfg.n_kv_head)  # wq, wo; wk, wv (GQA)
    mlp = 3 * cfg.d_model * cfg.d_ff  # w1 (gate), w3 (up), w2 (down)
    return cfg.n_layer * (attn + mlp) + cfg.d_model * cfg.vocab_size


def param_count(cfg: ModelConfig) -> int:
    """Every parameter of `asymptote.model.Decoder` (the tied embedding once, RMSNorm gains included),
    by arithmetic: building the model on torch's meta device costs seconds the first time."""
    norms = (2 * cfg.n_layer + 1) * cfg.d_model
    return matmul_params(cfg) + norms


def attention_flops_per_token(cfg: ModelConfig, causal: bool = False) -> int:
    """Forward FLOPs of the scores (q.k) and the weighted sum (p.v) for one token at full context:
    2 matmuls x 2 FLOPs x block_size x (n_head x head_dim) per layer; halved for a causal kernel."""
    full = 4 * cfg.n_layer * cfg.block_size * cfg.n_head * cfg.head_dim
    return full // 2 if causal else full


def train_flops_per_token(cfg: ModelConfig, causal: bool = False) -> int:
    """Forward + backward FLOPs per trained token: 3 x (2 x matmul params + attention).

    With the default causal=False this is PaLM's 6N + 12 L H Q T (N = matmul_params), the figure
    MFU is usually reported against."""
    return 3 * (2 * matmul_params(cfg) + attention_flops_per_token(cfg, causal))


def inference_flops_per_token(cfg: ModelConfig, causal: bool = False) -> int:
    """Forward FLOPs per generated or scored token: 2 x matmul params + attention (a third of training's)."""
    return 2 * matmul_params(cfg) + attention_flops_per_token(cfg, causal)
