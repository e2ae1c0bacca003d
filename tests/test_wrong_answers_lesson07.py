"""Lesson 07's checks against realistic wrong answers: each gets the message meant for it.

Every wrong answer below is something a learner plausibly writes for `DecoderLayer`, `TinyGPT`
or `generate`. Each must FAIL the check it breaks, with the message written for that mistake;
an independent correct implementation must pass every check id of the lesson.
"""

from __future__ import annotations

import torch
import torch.nn as nn

import attnlab
from attnlab import FeedForward, GPTBlock, LayerNorm, MultiHeadAttention
from autograder.checks import REGISTRY

from .wrong_answers import fails, passes, row_test

DECODER_IDS = ("decoder.layout", "decoder.post_norm", "decoder.post_norm_hidden",
               "decoder.torch_post", "decoder.pre_norm", "decoder.pre_norm_hidden",
               "decoder.torch_pre", "decoder.masks", "decoder.masks_hidden")
GPT_IDS = ("gpt.logits", "gpt.logits_hidden", "gpt.causal", "gpt.cache", "gpt.cache_hidden")
GENERATE_IDS = ("generate.greedy", "generate.greedy_hidden", "generate.cache",
                "generate.cache_hidden", "generate.sampling", "generate.sampling_hidden")
LESSON07_IDS = DECODER_IDS + GPT_IDS + GENERATE_IDS


def not_written(*args, **kwargs):
    raise NotImplementedError()


# --------------------------------------------------------------------------- DecoderLayer


class GoodDecoderLayer(nn.Module):
    """A correct DecoderLayer, written independently of the reference and the notebook."""

    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, norm_first=False, activation="relu",
                 eps=1e-5):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads)
        self.cross_attn = MultiHeadAttention(d_model, n_heads)
        self.ff = FeedForward(d_model, d_ff, activation)
        self.norm1, self.norm2, self.norm3 = (LayerNorm(d_model, eps) for _ in range(3))
        self.drop = nn.ModuleList(nn.Dropout(dropout) for _ in range(3))

    def sublayers(self, memory, self_mask, memory_mask):
        """(norm, function of the normalised or raw stream) for the three sublayers, in order."""
        return [
            (self.norm1, lambda h: self.self_attn(h, h, h, self_mask)),
            (self.norm2, lambda h: self.cross_attn(h, memory, memory, memory_mask)),
            (self.norm3, lambda h: (self.ff(h), None)),
        ]

    def forward(self, x, memory, self_mask=None, memory_mask=None, return_weights=False):
        weights = []
        for (norm, sub), drop in zip(self.sublayers(memory, self_mask, memory_mask), self.drop,
                                     strict=True):
            if self.norm_first:
                out, w = sub(norm(x))
                x = x + drop(out)
            else:
                out, w = sub(x)
                x = norm(x + drop(out))
            weights.append(w)
        if return_weights:
            return x, {"self": weights[0], "cross": weights[1]}
        return x


class CrossFromDecoder(GoodDecoderLayer):
    def sublayers(self, memory, self_mask, memory_mask):
        subs = super().sublayers(memory, self_mask, memory_mask)
        subs[1] = (self.norm2, lambda h: self.cross_attn(h, h, h, memory_mask))
        return subs


class QueriesFromMemory(GoodDecoderLayer):
    def sublayers(self, memory, self_mask, memory_mask):
        subs = super().sublayers(memory, self_mask, memory_mask)
        subs[1] = (self.norm2, lambda h: self.cross_attn(memory, h, h, memory_mask))
        return subs


class NoSelfMask(GoodDecoderLayer):
    def sublayers(self, memory, self_mask, memory_mask):
        return super().sublayers(memory, None, memory_mask)


class NoMemoryMask(GoodDecoderLayer):
    def sublayers(self, memory, self_mask, memory_mask):
        return super().sublayers(memory, self_mask, None)


class InvertedMasks(GoodDecoderLayer):
    def sublayers(self, memory, self_mask, memory_mask):
        flip = lambda m: None if m is None else ~m
        return super().sublayers(memory, flip(self_mask), flip(memory_mask))


class EncoderNumbering(GoodDecoderLayer):
    """norm2 around the feed-forward (as in the encoder), norm3 around cross-attention."""

    def sublayers(self, memory, self_mask, memory_mask):
        subs = super().sublayers(memory, self_mask, memory_mask)
        return [subs[0], (self.norm3, subs[1][1]), (self.norm2, subs[2][1])]


class CrossBeforeSelf(GoodDecoderLayer):
    def sublayers(self, memory, self_mask, memory_mask):
        subs = super().sublayers(memory, self_mask, memory_mask)
        return [subs[1], subs[0], subs[2]]


class NormalisesMemory(GoodDecoderLayer):
    def sublayers(self, memory, self_mask, memory_mask):
        subs = super().sublayers(memory, self_mask, memory_mask)
        m = self.norm2(memory)
        subs[1] = (self.norm2, lambda h: self.cross_attn(h, m, m, memory_mask))
        return subs


class NoCrossAttention(GoodDecoderLayer):
    """Lesson 06's encoder layer, post-norm, with the causal mask: memory is never used."""

    def forward(self, x, memory, self_mask=None, memory_mask=None, return_weights=False):
        x = self.norm1(x + self.self_attn(x, x, x, self_mask)[0])
        return self.norm2(x + self.ff(x))


class AlwaysPostNorm(GoodDecoderLayer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm_first = False


class SharedNorms(GoodDecoderLayer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm2 = self.norm1


class OneAttention(GoodDecoderLayer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cross_attn = self.self_attn


class IgnoresDff(GoodDecoderLayer):
    def __init__(self, d_model, n_heads, d_ff, *args, **kwargs):
        super().__init__(d_model, n_heads, d_ff, *args, **kwargs)
        self.ff = FeedForward(d_model, 4 * d_model)


class WeightsAsTuple(GoodDecoderLayer):
    def forward(self, x, memory, self_mask=None, memory_mask=None, return_weights=False):
        out = super().forward(x, memory, self_mask, memory_mask, return_weights)
        return (out[0], (out[1]["self"], out[1]["cross"])) if return_weights else out


class NoNorm3(GoodDecoderLayer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        del self.norm3
        self.norm3 = nn.Identity()


class WrapsTorchDecoder(nn.Module):
    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, norm_first=False, activation="relu",
                 eps=1e-5):
        super().__init__()
        self.inner = nn.TransformerDecoderLayer(d_model, n_heads, d_ff, dropout, activation,
                                                eps, batch_first=True, norm_first=norm_first)
        good = GoodDecoderLayer(d_model, n_heads, d_ff, dropout, norm_first, activation, eps)
        for name in ("self_attn", "cross_attn", "ff", "norm1", "norm2", "norm3"):
            setattr(self, name, getattr(good, name))

    def forward(self, x, memory, self_mask=None, memory_mask=None, return_weights=False):
        return self.inner(x, memory, tgt_mask=None if self_mask is None else ~self_mask)


class CallsCourseDecoder(GoodDecoderLayer):
    def forward(self, x, memory, self_mask=None, memory_mask=None, return_weights=False):
        with torch.random.fork_rng():  # its init would move the global stream
            ref = attnlab.DecoderLayer(self.ff.linear1.in_features, self.self_attn.n_heads,
                                       self.ff.linear1.out_features, norm_first=self.norm_first)
        ref.load_state_dict(self.state_dict(), strict=False)
        return ref(x, memory, self_mask, memory_mask, return_weights)


WRONG_DECODERS = [
    (CrossFromDecoder, "decoder.post_norm", r"keys and values taken from x"),
    (CrossFromDecoder, "decoder.torch_pre", r"shapes clash"),
    (QueriesFromMemory, "decoder.post_norm", r"shapes clash|queries of cross-attention"),
    (NoSelfMask, "decoder.post_norm", r"self_mask never reaches self_attn"),
    (NoSelfMask, "decoder.masks", r"self_mask never reaches|self_mask blocks"),
    (NoMemoryMask, "decoder.masks", r"without memory_mask"),
    (NoMemoryMask, "decoder.torch_post", r"without memory_mask"),
    (InvertedMasks, "decoder.pre_norm", r"masks inverted"),
    (EncoderNumbering, "decoder.post_norm", r"norm2 around the feed-forward"),
    (EncoderNumbering, "decoder.pre_norm", r"norm1 self-attention, norm2 cross-attention"),
    (CrossBeforeSelf, "decoder.pre_norm", r"cross-attention before self-attention"),
    (NormalisesMemory, "decoder.pre_norm", r"norm2\(memory\)"),
    (NoCrossAttention, "decoder.post_norm", r"cross-attention sublayer is\s+missing"),
    (AlwaysPostNorm, "decoder.pre_norm", r"post-norm wiring.*norm_first=True"),
    (SharedNorms, "decoder.layout", r"norm1 and norm2 of your DecoderLayer are the same"),
    (OneAttention, "decoder.layout", r"self_attn and cross_attn .* same module"),
    (WeightsAsTuple, "decoder.masks", r"weights as a tuple"),
    (NoNorm3, "decoder.layout", r"no `norm3.weight`"),
    (IgnoresDff, "decoder.post_norm",
     r"`ff.linear1.weight` of your DecoderLayer has shape \(32, 8\).*should have shape "
     r"\(16, 8\)\. Did you pass d_ff = 16 on to FeedForward\?"),
    (WrapsTorchDecoder, "decoder.post_norm", r"calls PyTorch's nn.TransformerDecoderLayer"),
    (CallsCourseDecoder, "decoder.pre_norm", r"calls the course's own DecoderLayer"),
    (not_written, "decoder.layout", r"not written yet"),
    (not_written, "decoder.masks", r"not written yet"),
]


# --------------------------------------------------------------------------- TinyGPT


class GoodGPT(nn.Module):
    """A correct TinyGPT, assembled from attnlab's GPTBlock as the exercise asks."""

    def __init__(self, vocab_size, d_model, n_heads, n_layers, max_len):
        super().__init__()
        self.max_len = max_len
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(max_len, d_model)
        self.blocks = self.make_blocks(d_model, n_heads, n_layers)
        self.ln_f = LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def make_blocks(self, d_model, n_heads, n_layers):
        return nn.ModuleList(GPTBlock(d_model, n_heads, 4 * d_model) for _ in range(n_layers))

    def t_past(self, cache):
        return 0 if cache is None else cache[0][-1].shape[2]

    def positions(self, idx, cache):
        start = self.t_past(cache)
        return torch.arange(start, start + idx.shape[1])

    def embed(self, idx, cache):
        return self.tok_emb(idx) + self.pos_emb(self.positions(idx, cache))

    def past(self, cache, i):
        return None if cache is None else cache[i]

    def forward(self, idx, cache=None):
        x = self.embed(idx, cache)
        new = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, self.past(cache, i))
            new.append(kv)
        return self.head(self.ln_f(x)), new


class NoPositions(GoodGPT):
    def embed(self, idx, cache):
        return self.tok_emb(idx)


class PositionsRestart(GoodGPT):
    def positions(self, idx, cache):
        return torch.arange(idx.shape[1])


class PastFromWrongAxis(GoodGPT):
    def t_past(self, cache):
        return 0 if cache is None else cache[0][0].size(1)


class PastFromLen(GoodGPT):
    def t_past(self, cache):
        return 0 if cache is None else len(cache)


class CacheNotPassed(GoodGPT):
    def past(self, cache, i):
        return None


class ReturnsOldCache(GoodGPT):
    def forward(self, idx, cache=None):
        logits, new = super().forward(idx, cache)
        return logits, new if cache is None else cache


class NoFinalNorm(GoodGPT):
    def forward(self, idx, cache=None):
        x = self.embed(idx, cache)
        new = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, self.past(cache, i))
            new.append(kv)
        return self.head(x), new


class SharedBlocks(GoodGPT):
    def make_blocks(self, d_model, n_heads, n_layers):
        return nn.ModuleList([GPTBlock(d_model, n_heads, 4 * d_model)] * n_layers)


class LogitsOnly(GoodGPT):
    def forward(self, idx, cache=None):
        return super().forward(idx, cache)[0]


class LeakyBlock(GPTBlock):
    """A block that forgot the causal mask."""

    def forward(self, x, past=None):
        h = self.ln1(x)
        out, _ = self.attn(h, h, h)
        x = x + out
        return x + self.ff(self.ln2(x)), self.attn.project(h, h, h)[1:]


class SeesTheFuture(GoodGPT):
    def make_blocks(self, d_model, n_heads, n_layers):
        return nn.ModuleList(LeakyBlock(d_model, n_heads, 4 * d_model) for _ in range(n_layers))


class SubclassesCourseGPT(attnlab.TinyGPT):
    pass


WRONG_GPTS = [
    (NoPositions, "gpt.logits", r"without position embeddings"),
    (PositionsRestart, "gpt.cache", r"positions that restart at 0"),
    (PositionsRestart, "gpt.cache_hidden", r"restart at 0"),
    (PastFromWrongAxis, "gpt.cache", r"wrong axis"),
    (PastFromLen, "gpt.cache", r"len\(cache\) counts the blocks"),
    (CacheNotPassed, "gpt.cache", r"cache never\s+reaches the blocks"),
    (ReturnsOldCache, "gpt.cache", r"still hold 6 positions"),
    (NoFinalNorm, "gpt.logits", r"without the final LayerNorm"),
    (SharedBlocks, "gpt.logits", r"all the same module"),
    (LogitsOnly, "gpt.logits", r"pair \(logits, cache\)"),
    (SeesTheFuture, "gpt.causal", r"sees the future"),
    (SubclassesCourseGPT, "gpt.logits", r"calls the course's own TinyGPT"),
    (not_written, "gpt.logits", r"not written yet"),
    (not_written, "gpt.cache", r"not written yet"),
]


# --------------------------------------------------------------------------- generate


def make_generate(*, pick_last=True, keep_prompt=True, greedy_at_zero=True, sample="divide",
                  use_generator=True, cache_mode="right"):
    """A generate with the given choices; the defaults are the correct ones."""

    @torch.no_grad()
    def generate(model, prompt, max_new_tokens, temperature=1.0, use_cache=False,
                 generator=None):
        idx, feed, cache, first_cache = prompt, prompt, None, None
        for _ in range(max_new_tokens):
            logits, new_cache = model(feed, cache)
            last = logits[:, -1] if pick_last else logits[:, 0]
            if temperature == 0 and greedy_at_zero or sample == "argmax":
                token = last.argmax(-1, keepdim=True)
            else:
                if sample == "divide":
                    probs = torch.softmax(last / temperature, -1)
                elif sample == "after_softmax":
                    probs = torch.softmax(last, -1) / temperature
                else:  # "multiply"
                    probs = torch.softmax(last * temperature, -1)
                token = torch.multinomial(probs, 1,
                                          generator=generator if use_generator else None)
            idx = torch.cat([idx, token], 1)
            first_cache = first_cache or new_cache
            if not use_cache or cache_mode == "unused":
                feed, cache = idx, None
            elif cache_mode == "stuck":
                feed, cache = token, first_cache
            elif cache_mode == "full_feed":
                feed, cache = idx, new_cache
            else:
                feed, cache = token, new_cache
        return idx if keep_prompt else idx[:, prompt.shape[1]:]

    return generate


good_generate = make_generate()


def calls_course_generate(model, prompt, max_new_tokens, temperature=1.0, use_cache=False,
                          generator=None):
    return attnlab.generate(model, prompt, max_new_tokens, temperature, use_cache, generator)


WRONG_GENERATES = [
    (make_generate(keep_prompt=False), "keep_prompt=False", "generate.greedy",
     r"only the new tokens"),
    (make_generate(pick_last=False), "pick_last=False", "generate.greedy", r"logits\[:, 0\]"),
    (make_generate(greedy_at_zero=False), "greedy_at_zero=False", "generate.greedy",
     r"temperature=0.*greedy"),
    (make_generate(cache_mode="unused"), "cache_unused", "generate.cache",
     r"never passed a cache"),
    (make_generate(cache_mode="stuck"), "cache_stuck", "generate.cache",
     r"same length \(3\s+positions\)"),
    (make_generate(cache_mode="full_feed"), "cache_full_feed", "generate.cache",
     r"fed \d+ tokens together"),
    (make_generate(use_generator=False), "global_stream", "generate.sampling",
     r"global random stream"),
    (make_generate(sample="after_softmax"), "after_softmax", "generate.sampling",
     r"as if the temperature were 1"),
    (make_generate(sample="after_softmax"), "after_softmax", "generate.sampling_hidden",
     r"as if the temperature were 1"),
    (make_generate(sample="multiply"), "multiply", "generate.sampling",
     r"softmax\(logits \* temperature\)"),
    (make_generate(sample="argmax"), "argmax", "generate.sampling",
     r"always picks the most likely"),
    (calls_course_generate, "", "generate.greedy", r"calls the course's own generate"),
    (not_written, "", "generate.greedy", r"not written yet"),
    (not_written, "", "generate.sampling", r"not written yet"),
]


# ------------------------------------------------------------------------ one mistake, once

# The three exercises never call each other: DecoderLayer and TinyGPT are built from the
# provided MultiHeadAttention, FeedForward, LayerNorm and GPTBlock, and the generate checks run
# the learner's generate on the grader's own model (cases.PrefixLM), never on their TinyGPT.
# A learner's notebook where TinyGPT and DecoderLayer are wrong and generate is right: each
# wrong class costs its own points only.
NOTEBOOK: dict = {"torch": torch, "nn": nn, "GPTBlock": GPTBlock, "LayerNorm": LayerNorm,
                  "MultiHeadAttention": MultiHeadAttention, "FeedForward": FeedForward}
exec("class TinyGPT(nn.Module):\n"
     "    def __init__(self, vocab_size, d_model, n_heads, n_layers, max_len):\n"
     "        super().__init__()\n"
     "        self.max_len = max_len\n"
     "        self.tok_emb = nn.Embedding(vocab_size, d_model)\n"
     "        self.pos_emb = nn.Embedding(max_len, d_model)\n"
     "        self.blocks = nn.ModuleList(GPTBlock(d_model, n_heads, 4 * d_model)\n"
     "                                    for _ in range(n_layers))\n"
     "        self.ln_f = LayerNorm(d_model)\n"
     "        self.head = nn.Linear(d_model, vocab_size)\n"
     "    def forward(self, idx, cache=None):\n"
     "        x = self.tok_emb(idx)  # the positions are forgotten\n"
     "        new_cache = []\n"
     "        for i, block in enumerate(self.blocks):\n"
     "            x, kv = block(x, None if cache is None else cache[i])\n"
     "            new_cache.append(kv)\n"
     "        return self.head(self.ln_f(x)), new_cache\n"
     "class DecoderLayer(nn.Module):\n"
     "    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, norm_first=False,\n"
     "                 activation='relu', eps=1e-5):\n"
     "        super().__init__()\n"
     "        self.norm_first = norm_first\n"
     "        self.self_attn = MultiHeadAttention(d_model, n_heads)\n"
     "        self.cross_attn = MultiHeadAttention(d_model, n_heads)\n"
     "        self.ff = FeedForward(d_model, d_ff, activation)\n"
     "        self.norm1 = LayerNorm(d_model, eps)\n"
     "        self.norm2 = LayerNorm(d_model, eps)\n"
     "        self.norm3 = LayerNorm(d_model, eps)\n"
     "    def forward(self, x, memory, self_mask=None, memory_mask=None,\n"
     "                return_weights=False):\n"
     "        x = self.norm1(x + self.self_attn(x, x, x, self_mask)[0])\n"
     "        x = self.norm2(x + self.cross_attn(x, x, x, memory_mask)[0])  # not memory\n"
     "        return self.norm3(x + self.ff(x))\n"
     "@torch.no_grad()\n"
     "def generate(model, prompt, max_new_tokens, temperature=1.0, use_cache=False,\n"
     "             generator=None):\n"
     "    idx, feed, cache = prompt, prompt, None\n"
     "    for _ in range(max_new_tokens):\n"
     "        logits, new_cache = model(feed, cache)\n"
     "        last = logits[:, -1]\n"
     "        if temperature == 0:\n"
     "            token = last.argmax(dim=-1, keepdim=True)\n"
     "        else:\n"
     "            probs = torch.softmax(last / temperature, dim=-1)\n"
     "            token = torch.multinomial(probs, 1, generator=generator)\n"
     "        idx = torch.cat([idx, token], dim=1)\n"
     "        feed, cache = (token, new_cache) if use_cache else (idx, None)\n"
     "    return idx\n", NOTEBOOK)

ISOLATION = [
    fails(NOTEBOOK["TinyGPT"], "gpt.logits", "without position embeddings",
          name="own-gpt-without-positions"),
    fails(NOTEBOOK["DecoderLayer"], "decoder.post_norm", "keys and values taken from x",
          name="own-decoder-cross-from-x"),
    *passes(NOTEBOOK["DecoderLayer"], "decoder.layout", name="own-decoder-layout"),
    *passes(NOTEBOOK["generate"], *GENERATE_IDS, name="generate-beside-wrong-gpt"),
]


# ------------------------------------------------------------------------ the rows

ROWS = [
    *passes(GoodDecoderLayer, *DECODER_IDS),
    *passes(GoodGPT, *GPT_IDS),
    *passes(good_generate, *GENERATE_IDS, name="good_generate"),
    # partial credit: each mistake costs only the points it breaks
    *passes(NoSelfMask, "decoder.layout"),
    *passes(PositionsRestart, "gpt.logits", "gpt.logits_hidden", "gpt.causal"),
    *passes(make_generate(cache_mode="unused"), "generate.greedy", "generate.greedy_hidden",
            "generate.sampling", "generate.sampling_hidden", name="cache_unused"),
    *passes(make_generate(sample="after_softmax"), "generate.greedy", "generate.cache",
            name="after_softmax"),
    *[fails(cls, cid, message) for cls, cid, message in WRONG_DECODERS],
    fails(NoMemoryMask, "decoder.post_norm_hidden", r"cross-attention without memory_mask"),
    fails(NormalisesMemory, "decoder.pre_norm_hidden", r"cross-attention on norm2\(memory\)"),
    fails(NoSelfMask, "decoder.masks_hidden", r"self_mask never reaches self_attn"),
    *[fails(cls, cid, message) for cls, cid, message in WRONG_GPTS],
    fails(NoFinalNorm, "gpt.logits_hidden", r"without the final LayerNorm"),
    *[fails(fn, cid, message, name=name) for fn, name, cid, message in WRONG_GENERATES],
    fails(make_generate(keep_prompt=False), "generate.greedy_hidden",
          r"returned shape \(1, 10\), only the new tokens", name="keep_prompt=False"),
    fails(make_generate(cache_mode="stuck"), "generate.cache_hidden",
          r"same length \(4\s+positions\)", name="cache_stuck"),
    *ISOLATION,
]

test_row = row_test(ROWS)


def test_lesson07_registers_its_check_ids():
    """Are all twenty of lesson 07's check ids registered, and no others of its exercises?"""
    assert {i for i in REGISTRY if i.split(".")[0] in ("decoder", "gpt", "generate")} == \
        set(LESSON07_IDS)
