"""Lesson 07's cases and record halves (run in the learner's kernel: no answers here).

Every case is rebuilt from a fixed seed on both sides, and nothing depends on the model the
learner trains in the notebook. For the two classes, ``record`` builds the learner's module
(restoring the global random stream afterwards), overwrites its parameters through the
contract's names (``self_attn.q_proj.weight`` ... ``norm3.bias``; ``tok_emb.weight`` ...
``head.bias``) with fixed-seed values and records what ``forward`` returns. ``generate`` is
run on a small fixed-seed causal language model with TinyGPT's interface (``PrefixLM``; not
the course's TinyGPT, which is withheld here, nor the learner's: a mistake in their TinyGPT
never costs generate's points), wrapped in a spy that records how it was called (what was
fed, how long the cache was), so that a cache that is never used or never advanced is caught
even when the tokens happen to be right.

The exercises of this lesson never call each other: DecoderLayer and TinyGPT are built from
the provided MultiHeadAttention, FeedForward, LayerNorm and GPTBlock, and generate gets the
grader's model. So no stand-ins are needed (tests/test_wrong_answers_lesson07.py's
ISOLATION rows check that one wrong exercise costs only its own points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from autograder.reference import GPTBlock, causal_mask

from .._core import Guard, Outcome, call
from .._modules import (
    LayerArgs,
    ModuleCase,
    course_kernels,
    layer_params,
    record_cases,
    record_modules,
    record_parts,
    same_parts,
)

OURS = "the course's own {} (attnlab / autograder.reference)"  # as course_kernels labels


# ============================================================================= DecoderLayer


def dec_guard() -> Guard:
    # the course's residual counts as its DecoderLayer (the same label)
    label = OURS.format("DecoderLayer")
    return Guard((), [*((label, fn) for _, fn in course_kernels("DecoderLayer.forward",
                                                                 "residual")),
                      ("PyTorch's nn.TransformerDecoderLayer",
                       nn.TransformerDecoderLayer.forward)])


@dataclass(frozen=True)
class DecCase(LayerArgs):
    desc: str
    d_model: int
    n_heads: int
    d_ff: int
    B: int
    L: int  # decoder (target) positions
    S: int  # memory (source) positions
    seed: int
    norm_first: bool | None = None  # None: not passed, so the default post-norm applies
    activation: str | None = None
    eps: float | None = None
    self_mask: str = "causal"  # "", "causal", "causal+padding"
    memory_mask: str = ""  # "", "random", "padding"

    NAME = "DecoderLayer"


DEC_PARTS = ("self_attn", "cross_attn", "ff", "norm1", "norm2", "norm3")


def dec_params(case: DecCase) -> dict[str, Tensor]:
    return layer_params(case.seed, case.d_model, case.d_ff, ("self_attn", "cross_attn"),
                        ("norm1", "norm2", "norm3"))


def dec_inputs(case: DecCase) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """x (B, L, d), memory (B, S, d), self_mask, memory_mask (True = may attend)."""
    g = torch.Generator().manual_seed(case.seed + 1)
    B, L, S = case.B, case.L, case.S
    x = 2.0 * torch.randn(B, L, case.d_model, generator=g) + 0.5  # (B, L, d_model)
    memory = 1.5 * torch.randn(B, S, case.d_model, generator=g) - 0.3  # (B, S, d_model)
    self_mask = None
    if case.self_mask == "causal":
        self_mask = causal_mask(L)  # (L, L)
    elif case.self_mask == "causal+padding":
        lengths = torch.tensor([L, L - 2, L - 1, 2][:B])
        pad = (torch.arange(L) < lengths[:, None])[:, None, None, :]  # (B, 1, 1, L)
        self_mask = pad & causal_mask(L)  # (B, 1, L, L)
    memory_mask = None
    if case.memory_mask == "random":  # every query keeps one memory position, blocks another
        m = torch.rand(L, S, generator=g) < 0.5
        yes = torch.randint(0, S, (L,), generator=g)
        no = (yes + 1 + torch.randint(0, S - 1, (L,), generator=g)) % S
        memory_mask = (m | F.one_hot(yes, S).bool()) & ~F.one_hot(no, S).bool()  # (L, S)
    elif case.memory_mask == "padding":
        lengths = torch.tensor([S - 2, 2, S - 1, 3][:B])
        memory_mask = (torch.arange(S) < lengths[:, None])[:, None, None, :]  # (B, 1, 1, S)
    return x, memory, self_mask, memory_mask


SEPARATE_PARTS = (("self_attn", "cross_attn"), ("norm1", "norm2"), ("norm1", "norm3"),
                  ("norm2", "norm3"))  # each sublayer needs its own


def run_decoder(weights: bool):
    def run(module, case: DecCase) -> dict:
        x, memory, self_mask, memory_mask = dec_inputs(case)
        kw = {}
        if self_mask is not None:
            kw["self_mask"] = self_mask
        if memory_mask is not None:
            kw["memory_mask"] = memory_mask
        info = {"shared": same_parts(module, SEPARATE_PARTS),
                "forward": call(module, x, memory, guard=dec_guard(), **kw)}
        if weights:
            info["with_weights"] = call(module, x, memory, return_weights=True,
                                        guard=dec_guard(), **kw)
        return info
    return run


def record_decoder(cases: list[DecCase], weights: bool = False):
    return record_modules(cases, dec_params, run_decoder(weights))


LAYOUT_CASE = DecCase('DecoderLayer(16, 4, 40, dropout=0.1, activation="gelu", eps=0.5)',
                      16, 4, 40, 2, 5, 6, 731, activation="gelu", eps=0.5, self_mask="")


def layout_parts(module, case: DecCase) -> dict:
    x, _, _, _ = dec_inputs(case)
    return {"attrs": {name: type(getattr(module, name, None)).__name__ for name in DEC_PARTS},
            "shared": same_parts(module, SEPARATE_PARTS),
            "parts": record_parts(module, x, ("norm1", "norm2", "norm3", "ff"))}


def layout_args(case: DecCase) -> tuple[tuple, dict]:
    args, kwargs = case.args()
    return args, {"dropout": 0.1, **kwargs}


def record_layout(cls) -> dict:
    record = record_modules([LAYOUT_CASE], dec_params, layout_parts, build=layout_args)
    return record(cls)[LAYOUT_CASE.desc]


POST_CASES = [
    DecCase("post-norm (default), causal self_mask, B=2, L=5, S=7, d_model=8, 2 heads",
            8, 2, 16, 2, 5, 7, 741),
    DecCase("norm_first=False, causal self_mask, B=1, L=4, S=3, d_model=12, 3 heads",
            12, 3, 24, 1, 4, 3, 742, norm_first=False),
]
POST_HIDDEN_CASES = [
    DecCase("post-norm, gelu, eps=0.5, causal self_mask and a random (L, S) memory_mask, "
            "B=2, L=6, S=5, d_model=16, 4 heads", 16, 4, 32, 2, 6, 5, 7741, norm_first=False,
            activation="gelu", eps=0.5, memory_mask="random"),
    DecCase("post-norm, no masks, a single target token, B=3, L=1, S=4, d_model=8", 8, 2, 16,
            3, 1, 4, 7742, self_mask=""),
    DecCase("post-norm, causal + padding self_mask (B, 1, L, L), padding memory_mask "
            "(B, 1, 1, S), B=3, L=5, S=6", 8, 2, 16, 3, 5, 6, 7743, self_mask="causal+padding",
            memory_mask="padding"),
]
PRE_CASES = [
    DecCase("norm_first=True, causal self_mask, B=2, L=5, S=7, d_model=8, 2 heads",
            8, 2, 16, 2, 5, 7, 751, norm_first=True),
    DecCase("norm_first=True, causal self_mask, B=1, L=4, S=3, d_model=12, 3 heads",
            12, 3, 24, 1, 4, 3, 752, norm_first=True),
]
PRE_HIDDEN_CASES = [
    DecCase("pre-norm, gelu, eps=0.5, causal self_mask and a random (L, S) memory_mask, "
            "B=2, L=6, S=5, d_model=16, 4 heads", 16, 4, 32, 2, 6, 5, 7751, norm_first=True,
            activation="gelu", eps=0.5, memory_mask="random"),
    DecCase("pre-norm, no masks, a single target token, B=3, L=1, S=4, d_model=8", 8, 2, 16,
            3, 1, 4, 7752, norm_first=True, self_mask=""),
    DecCase("pre-norm, causal + padding self_mask (B, 1, L, L), padding memory_mask "
            "(B, 1, 1, S), B=3, L=5, S=6", 8, 2, 16, 3, 5, 6, 7753, norm_first=True,
            self_mask="causal+padding", memory_mask="padding"),
]
TORCH_POST_CASES = [
    DecCase("post-norm against torch, causal tgt mask and a random (L, S) memory mask, B=2, "
            "L=6, S=4, d_model=16, 4 heads", 16, 4, 32, 2, 6, 4, 7761, memory_mask="random"),
    DecCase("post-norm against torch, gelu, eps=0.5, B=2, L=4, S=5, d_model=8", 8, 2, 16, 2,
            4, 5, 7762, activation="gelu", eps=0.5),
]
TORCH_PRE_CASES = [
    DecCase("pre-norm against torch, causal tgt mask and a random (L, S) memory mask, B=2, "
            "L=6, S=4, d_model=16, 4 heads", 16, 4, 32, 2, 6, 4, 7763, norm_first=True,
            memory_mask="random"),
    DecCase("pre-norm against torch, gelu, eps=0.5, B=2, L=4, S=5, d_model=8", 8, 2, 16, 2,
            4, 5, 7764, norm_first=True, activation="gelu", eps=0.5),
]
MASK_CASES = [
    DecCase("post-norm, causal self_mask, a random (L, S) memory_mask, B=2, L=5, S=6, "
            "d_model=8, 2 heads", 8, 2, 16, 2, 5, 6, 771, memory_mask="random"),
    DecCase("pre-norm, causal self_mask, a padding memory_mask (B, 1, 1, S), B=3, L=4, S=6, "
            "d_model=12, 3 heads", 12, 3, 24, 3, 4, 6, 772, norm_first=True,
            memory_mask="padding"),
]
MASK_HIDDEN_CASES = [
    DecCase("pre-norm, causal + padding self_mask, a random memory_mask, gelu, B=2, L=6, S=5",
            8, 4, 16, 2, 6, 5, 7771, norm_first=True, activation="gelu",
            self_mask="causal+padding", memory_mask="random"),
    DecCase("post-norm, no self_mask, a padding memory_mask, B=2, L=3, S=7", 16, 4, 32, 2, 3,
            7, 7772, self_mask="", memory_mask="padding"),
]


# ============================================================================= TinyGPT


def gpt_guard() -> Guard:
    return Guard((), course_kernels("TinyGPT.forward"))


@dataclass(frozen=True)
class GptCase(ModuleCase):
    desc: str
    vocab: int
    d_model: int
    n_heads: int
    n_layers: int
    max_len: int
    B: int
    T: int  # tokens of the first call
    seed: int
    T2: int = 0  # tokens of a second call with the cache (0: no second call)

    NAME = "TinyGPT"

    @property
    def sizes(self) -> tuple[int, int, int, int, int]:
        return (self.vocab, self.d_model, self.n_heads, self.n_layers, self.max_len)

    def args(self) -> tuple[tuple, dict]:
        return self.sizes, {}


@lru_cache(maxsize=64)
def gpt_shapes(vocab: int, d_model: int, n_heads: int, n_layers: int,
               max_len: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The contract's parameter names and shapes, from the sizes alone (the course's TinyGPT
    is withheld here; GPTBlock is a provided building block)."""
    with torch.random.fork_rng():
        block = GPTBlock(d_model, n_heads, 4 * d_model).state_dict()
    shapes = {"tok_emb.weight": (vocab, d_model), "pos_emb.weight": (max_len, d_model),
              "ln_f.weight": (d_model,), "ln_f.bias": (d_model,),
              "head.weight": (vocab, d_model), "head.bias": (vocab,)}
    for i in range(n_layers):
        shapes.update({f"blocks.{i}.{k}": tuple(v.shape) for k, v in block.items()})
    return tuple(sorted(shapes.items()))


def gpt_params(case: GptCase) -> dict[str, Tensor]:
    """Fixed-seed weights for the case's TinyGPT, large enough for every part to matter."""
    g = torch.Generator().manual_seed(case.seed)
    p = {}
    for name, shape in gpt_shapes(*case.sizes):
        if name.endswith("emb.weight"):
            p[name] = torch.randn(shape, generator=g)
        elif len(shape) == 2:
            p[name] = 1.2 * torch.randn(shape, generator=g) / math.sqrt(shape[1])
        elif name.endswith("weight"):  # LayerNorm gains
            p[name] = 1.0 + 0.3 * torch.randn(shape, generator=g)
        else:
            p[name] = 0.2 * torch.randn(shape, generator=g)
    return p


def gpt_tokens(case: GptCase) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(case.seed + 1)
    first = torch.randint(0, case.vocab, (case.B, case.T), generator=g)
    second = torch.randint(0, case.vocab, (case.B, max(case.T2, 1)), generator=g)[:, :case.T2]
    return first, second


def shared_blocks(module) -> bool:
    blocks = getattr(module, "blocks", None)
    try:
        items = list(blocks)
    except Exception:
        return False
    return len(items) > 1 and len({id(b) for b in items}) < len(items)


def count_blocks(module) -> int | None:
    try:
        return len(module.blocks)
    except Exception:
        return None


def call_with_own_cache(module, first: Tensor, second: Tensor) -> Outcome:
    """module(first), then module(second, the cache that first call returned)."""
    def run():
        _, cache = module(first)
        return module(second, cache)
    return call(run, guard=gpt_guard())


def call_token_by_token(module, idx: Tensor) -> Outcome:
    """Feed idx one token at a time, each call with the cache the previous call returned."""
    def run():
        cache, steps = None, []
        for t in range(idx.size(1)):
            logits, cache = module(idx[:, t:t + 1], cache)
            steps.append(logits)
        return torch.cat(steps, dim=1)
    return call(run, guard=gpt_guard())


def run_gpt(cached: bool, causal: bool):
    def run(module, case: GptCase) -> dict:
        info = {"shared": shared_blocks(module), "n_blocks": count_blocks(module)}
        first, second = gpt_tokens(case)
        info["forward"] = call(module, first, guard=gpt_guard())
        if cached and case.T2:
            info["second"] = call_with_own_cache(module, first, second)
        if causal:
            changed = first.clone()
            changed[:, -1] = (changed[:, -1] + 1) % case.vocab
            info["changed_last"] = call(module, changed, guard=gpt_guard())
            mid = first.clone()
            mid[:, case.T // 2] = (mid[:, case.T // 2] + 3) % case.vocab
            info["changed_mid"] = call(module, mid, guard=gpt_guard())
        if cached:
            info["one_by_one"] = call_token_by_token(module, first)
        return info
    return run


def record_gpt(cases: list[GptCase], cached: bool = False, causal: bool = False):
    return record_modules(cases, gpt_params, run_gpt(cached, causal))


GPT_CASES = [
    GptCase("TinyGPT(11, 16, 4, 2, max_len=12), B=2, T=7", 11, 16, 4, 2, 12, 2, 7, 781),
    GptCase("TinyGPT(7, 8, 2, 1, max_len=6), B=3, T=6 (the whole context)", 7, 8, 2, 1, 6, 3,
            6, 782),
]
GPT_HIDDEN_CASES = [
    GptCase("TinyGPT(13, 24, 3, 3, max_len=20), B=2, T=9", 13, 24, 3, 3, 20, 2, 9, 7781),
    GptCase("TinyGPT(5, 8, 1, 2, max_len=4), B=1, T=1 (a single token)", 5, 8, 1, 2, 4, 1, 1,
            7782),
]
CACHE_CASES = [
    GptCase("TinyGPT(11, 16, 4, 2, max_len=16), B=2: 6 tokens, then 3 more", 11, 16, 4, 2, 16,
            2, 6, 791, T2=3),
]
CACHE_HIDDEN_CASES = [
    GptCase("TinyGPT(9, 12, 3, 3, max_len=14), B=3: 6 tokens, then 1 more", 9, 12, 3, 3, 14, 3,
            6, 7791, T2=1),
    GptCase("TinyGPT(7, 8, 2, 1, max_len=10), B=1: 2 tokens, then 7 more", 7, 8, 2, 1, 10, 1, 2,
            7792, T2=7),
]
CAUSAL_CASES = [
    GptCase("TinyGPT(11, 16, 4, 2, max_len=12), B=2, T=8", 11, 16, 4, 2, 12, 2, 8, 7793),
]


# ============================================================================= generate


def gen_guard() -> Guard:
    # generate is wrapped by @torch.no_grad(), whose wrapper code every decorated function
    # shares: the Guard unwraps it and watches the function inside; its sampling helper
    # counts as the course's generate (the same label)
    label = OURS.format("generate")
    return Guard((), [(label, fn) for _, fn in course_kernels("generate",
                                                             "decoder._next_token")])


class Spy(nn.Module):
    """A language model, noting each call: (tokens fed, cached positions or None)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.max_len = model.max_len
        self.calls: list[tuple[int, int | None]] = []

    def forward(self, idx: Tensor, cache=None):
        self.calls.append((int(idx.shape[-1]), None if cache is None else cache_len(cache)))
        return self.model(idx, cache)


def cache_len(cache) -> int:
    try:
        return int(cache[0][0].size(-2))
    except Exception:  # not a list of (keys, values): the reference will complain
        return -1


@dataclass(frozen=True)
class GenCase:
    desc: str
    sizes: tuple[int, int, int, int, int]  # TinyGPT(vocab, d_model, n_heads, n_layers, max_len)
    B: int
    T: int  # prompt length
    new: int  # max_new_tokens
    seed: int
    temperature: float = 0.0
    use_cache: bool = False
    same_prompt: bool = False  # every row of the batch is the same prompt (for frequencies)

    @property
    def vocab(self) -> int:
        return self.sizes[0]

    def kwargs(self, generator_seed: int | None = None) -> dict:
        kw = {"temperature": self.temperature, "use_cache": self.use_cache}
        if generator_seed is not None:
            kw["generator"] = torch.Generator().manual_seed(generator_seed)
        return kw

    def other_mode(self) -> GenCase:
        """The same case with use_cache flipped."""
        return GenCase(self.desc, self.sizes, self.B, self.T, self.new, self.seed,
                       self.temperature, not self.use_cache, self.same_prompt)


def gen_prompt(case: GenCase) -> Tensor:
    g = torch.Generator().manual_seed(case.seed + 1)
    if case.same_prompt:
        return torch.randint(0, case.vocab, (1, case.T), generator=g).expand(case.B, -1).clone()
    return torch.randint(0, case.vocab, (case.B, case.T), generator=g)  # (B, T)


class PrefixLM(nn.Module):
    """A small causal language model with TinyGPT's interface, to run ``generate`` on.

    ``forward(idx, cache=None)`` takes the new tokens (B, T) and returns logits (B, T, vocab)
    and a cache: a list of ``n_layers`` (keys, values) pairs of shape (B, 1, T_so_far, d).
    Position t's logits read its own token and the mean embedding of the tokens 0..t, so
    they depend on the whole prefix, and feeding the cache gives exactly the same numbers as
    feeding everything again. It is not a transformer on purpose: the record half runs in
    the learner's kernel when a class is graded, where the course's TinyGPT is withheld.
    """

    def __init__(self, vocab: int, d_model: int, n_layers: int, max_len: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.max_len, self.n_layers = max_len, n_layers
        self.emb = nn.Parameter(torch.randn(vocab, d_model, generator=g))
        self.pos = nn.Parameter(0.5 * torch.randn(max_len, d_model, generator=g))
        self.out = nn.Parameter(3 * torch.randn(2 * d_model, vocab, generator=g)
                                / math.sqrt(2 * d_model))

    def forward(self, idx: Tensor, cache=None):
        t_past = 0 if cache is None else cache[0][0].size(-2)
        T = idx.size(1)
        if t_past + T > self.max_len:
            raise ValueError(f"{t_past} cached + {T} new tokens exceed max_len={self.max_len}")
        x = self.emb[idx] + self.pos[t_past:t_past + T]  # (B, T, d)
        keys = x[:, None]  # (B, 1, T, d)
        if cache is not None:
            keys = torch.cat([cache[0][0], keys], dim=-2)  # (B, 1, t_past + T, d)
        counts = torch.arange(1, keys.size(-2) + 1, dtype=x.dtype)[:, None]  # (t, 1)
        prefix = (keys.cumsum(-2) / counts)[:, 0, t_past:]  # (B, T, d)
        logits = torch.tanh(torch.cat([x, prefix], dim=-1)) @ self.out  # (B, T, vocab)
        return logits, [(keys, keys) for _ in range(self.n_layers)]


@lru_cache(maxsize=64)
def prefix_lm(sizes: tuple[int, int, int, int, int], seed: int) -> PrefixLM:
    vocab, d_model, _, n_layers, max_len = sizes
    return PrefixLM(vocab, d_model, n_layers, max_len, seed).eval()


def gen_model(case: GenCase) -> PrefixLM:
    return prefix_lm(case.sizes, case.seed)


def sample_seed(case: GenCase) -> int | None:
    """The generator's seed for a sampling case (None: greedy, no generator)."""
    return None if case.temperature == 0 else case.seed + 2


def run_generate(fn, case: GenCase, generator_seed: int | None) -> dict:
    """One call on a spied model: the outcome, the calls, and whether the global stream moved."""
    spy = Spy(gen_model(case))
    with torch.random.fork_rng():
        before = torch.random.get_rng_state()
        out = call(fn, spy, gen_prompt(case), case.new, guard=gen_guard(),
                   **case.kwargs(generator_seed))
        moved = not torch.equal(before, torch.random.get_rng_state())
    return {"out": out, "calls": list(spy.calls), "global_moved": moved}


def generate_runs(twice: bool, both_modes: bool):
    def one(fn, case: GenCase) -> dict:
        seed = sample_seed(case)
        info = {"first": run_generate(fn, case, seed)}
        if twice:
            info["again"] = run_generate(fn, case, seed)
        if both_modes:
            info["other_mode"] = run_generate(fn, case.other_mode(), seed)
        return info
    return one


def record_generate(cases: list[GenCase], twice: bool = False, both_modes: bool = False):
    return record_cases(cases, generate_runs(twice, both_modes))


GEN_SIZES = (11, 16, 4, 2, 16)
GREEDY_CASES = [
    GenCase("temperature=0, a prompt of B=2 rows and 3 tokens, 6 new tokens", GEN_SIZES, 2, 3,
            6, 801),
]
GREEDY_HIDDEN_CASES = [
    GenCase("temperature=0, B=1, a 1-token prompt, 10 new tokens", (7, 8, 2, 1, 12), 1, 1, 10,
            7801),
    GenCase("temperature=0, B=3, a 5-token prompt, 1 new token", GEN_SIZES, 3, 5, 1, 7802),
    GenCase("temperature=0, B=2, a 4-token prompt, 0 new tokens (the prompt itself)",
            GEN_SIZES, 2, 4, 0, 7803),
]
CACHE_GEN_CASES = [
    GenCase("use_cache=True, temperature=0, B=2, a 3-token prompt, 6 new tokens", GEN_SIZES,
            2, 3, 6, 811, use_cache=True),
]
CACHE_GEN_HIDDEN_CASES = [
    GenCase("use_cache=True, temperature=0, three layers, B=3, a 4-token prompt, 8 new tokens",
            (13, 24, 3, 3, 14), 3, 4, 8, 7811, use_cache=True),
    GenCase("use_cache=True, temperature=1.0, B=2, a 2-token prompt, 9 new tokens",
            GEN_SIZES, 2, 2, 9, 7812, temperature=1.0, use_cache=True),
    GenCase("use_cache=True, temperature=0.7, B=4, a 1-token prompt, 5 new tokens",
            (7, 8, 2, 1, 8), 4, 1, 5, 7813, temperature=0.7, use_cache=True),
]
SAMPLING_CASES = [
    GenCase("temperature=0.5, 8000 copies of one 3-token prompt, 1 new token",
            (6, 16, 2, 1, 8), 8000, 3, 1, 821, temperature=0.5, same_prompt=True),
]
SAMPLING_HIDDEN_CASES = [
    GenCase("temperature=2.0, 8000 copies of one 2-token prompt, 1 new token",
            (6, 16, 2, 1, 8), 8000, 2, 1, 7821, temperature=2.0, same_prompt=True),
    GenCase("temperature=1.0, 8000 copies of one 4-token prompt, 1 new token",
            (6, 16, 2, 1, 8), 8000, 4, 1, 7822, temperature=1.0, same_prompt=True),
]


RECORDS = {
    "decoder.layout": record_layout,
    "decoder.post_norm": record_decoder(POST_CASES),
    "decoder.post_norm_hidden": record_decoder(POST_HIDDEN_CASES),
    "decoder.torch_post": record_decoder(TORCH_POST_CASES),
    "decoder.pre_norm": record_decoder(PRE_CASES),
    "decoder.pre_norm_hidden": record_decoder(PRE_HIDDEN_CASES),
    "decoder.torch_pre": record_decoder(TORCH_PRE_CASES),
    "decoder.masks": record_decoder(MASK_CASES, weights=True),
    "decoder.masks_hidden": record_decoder(MASK_HIDDEN_CASES, weights=True),
    "gpt.logits": record_gpt(GPT_CASES),
    "gpt.logits_hidden": record_gpt(GPT_HIDDEN_CASES),
    "gpt.causal": record_gpt(CAUSAL_CASES, causal=True),
    "gpt.cache": record_gpt(CACHE_CASES, cached=True),
    "gpt.cache_hidden": record_gpt(CACHE_HIDDEN_CASES, cached=True),
    "generate.greedy": record_generate(GREEDY_CASES),
    "generate.greedy_hidden": record_generate(GREEDY_HIDDEN_CASES),
    "generate.cache": record_generate(CACHE_GEN_CASES, both_modes=True),
    "generate.cache_hidden": record_generate(CACHE_GEN_HIDDEN_CASES, both_modes=True),
    "generate.sampling": record_generate(SAMPLING_CASES, twice=True),
    "generate.sampling_hidden": record_generate(SAMPLING_HIDDEN_CASES, twice=True),
}
