"""The course's one reference implementation of every kernel in the exercise contract.

Hidden tests, checks and later lessons import these; nothing here calls the PyTorch kernel
it is tested against. Masks are boolean, True = may attend; shapes are batch first.
"""

from .attention import (
    MultiHeadAttention,
    SelfAttention,
    merge_heads,
    scaled_dot_product_attention,
    split_heads,
)
from .block import EncoderLayer, FeedForward, LayerNorm
from .decoder import DecoderLayer, GPTBlock, TinyGPT, generate
from .efficient import elu_plus_one, linear_attention, sliding_window_mask, tiled_attention
from .interpret import attention_to
from .masking import causal_mask, leaks_future, masked_attention, padding_mask
from .modern import (
    GroupedQueryAttention,
    LlamaBlock,
    RMSNorm,
    SwiGLU,
    TinyLlama,
    kv_cache_bytes,
    repeat_kv,
    top_k_top_p,
)
from .positional import LearnedPositionalEmbedding, alibi_bias, apply_rope, sinusoidal_encoding
from .retrieval import attend, softmax

__all__ = [
    "DecoderLayer",
    "EncoderLayer",
    "FeedForward",
    "GPTBlock",
    "GroupedQueryAttention",
    "LayerNorm",
    "LearnedPositionalEmbedding",
    "LlamaBlock",
    "MultiHeadAttention",
    "RMSNorm",
    "SelfAttention",
    "SwiGLU",
    "TinyGPT",
    "TinyLlama",
    "alibi_bias",
    "apply_rope",
    "attend",
    "attention_to",
    "causal_mask",
    "elu_plus_one",
    "generate",
    "kv_cache_bytes",
    "leaks_future",
    "linear_attention",
    "masked_attention",
    "merge_heads",
    "padding_mask",
    "repeat_kv",
    "scaled_dot_product_attention",
    "sinusoidal_encoding",
    "sliding_window_mask",
    "softmax",
    "split_heads",
    "tiled_attention",
    "top_k_top_p",
]
