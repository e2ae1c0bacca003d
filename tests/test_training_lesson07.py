"""Lesson 07's training: the sorting task, the training helper, the pass criterion."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn

from attnlab.tasks import (
    FULL_STEPS,
    GPT_SIZE,
    PASS_ACCURACY,
    SEP,
    SortTask,
    exact_accuracy,
    grading_run,
    init_weights,
    train,
)
from autograder.reference import TinyGPT, generate


def make_gpt(task: SortTask, seed: int = 0) -> nn.Module:
    """The notebook's make_gpt, with the course's TinyGPT standing in for the learner's."""
    with torch.random.fork_rng():
        model = TinyGPT(task.vocab_size, max_len=task.seq_len, **GPT_SIZE)
    return init_weights(model, torch.Generator().manual_seed(seed))


@pytest.mark.notebook
def test_full_run_reaches_the_pass_criterion():
    """Does the notebook's full run (same size, seeds and steps) sort 99% of held-out strings?"""
    task = SortTask()
    held_out = task.held_out()
    model = make_gpt(task)
    before = torch.random.get_rng_state()
    history = train(model, task, FULL_STEPS, generator=torch.Generator().manual_seed(1),
                    held_out=held_out, progress=False)
    assert torch.equal(before, torch.random.get_rng_state()), "training used the global stream"
    assert history.final_accuracy >= PASS_ACCURACY, history.accuracies
    written = generate(model, held_out[:, :task.prompt_len], task.n_digits, temperature=0,
                       use_cache=True)
    by_generation = (written == held_out).all(dim=1).float().mean().item()
    assert by_generation == pytest.approx(history.final_accuracy)


@pytest.mark.parametrize("env, expected", [
    ({"JPY_SESSION_NAME": "/home/me/07.ipynb"}, False),
    ({}, False),  # VS Code, nbconvert, nbclient, a plain Jupyter server: train fully
    ({"ATTNLAB_GRADING": ""}, False),
    ({"ATTNLAB_GRADING": "1"}, True),
    ({"JPY_SESSION_NAME": "/home/me/07.ipynb", "ATTNLAB_GRADING": "1"}, True),
])
def test_grading_run_is_set_explicitly(monkeypatch, env, expected):
    """Is the short budget used exactly when a grader sets ATTNLAB_GRADING, wherever it runs?"""
    for name in ("JPY_SESSION_NAME", "ATTNLAB_GRADING"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert grading_run() is expected


def _grading_run_in_kernel(monkeypatch, cwd, config_path=None, nbgrader=True) -> str:
    """What grading_run() says in a kernel started by plain nbclient, or by nbgrader's Execute
    with the config the Validate button loads: nbgrader_config from ``cwd`` (the server's
    directory) and from JUPYTER_CONFIG_PATH."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.delenv("ATTNLAB_GRADING", raising=False)
    monkeypatch.chdir(cwd)
    if config_path is None:
        monkeypatch.delenv("JUPYTER_CONFIG_PATH", raising=False)
    else:
        monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(config_path))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from attnlab.tasks import grading_run\nprint(grading_run())")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    if not nbgrader:
        NotebookClient(nb, timeout=120).execute()
    else:
        from nbgrader.apps import NbGrader
        from nbgrader.preprocessors import Execute

        app = NbGrader()
        app.load_config_file()
        Execute(config=app.config).preprocess(nb, {})
    return "".join(out.get("text", "") for out in nb.cells[0].outputs).strip()


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.notebook
@pytest.mark.parametrize("where, config_path, nbgrader, expected", [
    ("elsewhere", None, False, "False"),                      # nbclient / nbconvert: full run
    ("root", None, True, "True"),                             # autograde, instructor's Validate
    ("elsewhere", ROOT / "etc" / "jupyter" / "learner", True, "True"),  # make lab's Validate
    ("elsewhere", None, True, "False"),                       # nbgrader without the course config
])
def test_only_the_graders_kernels_get_the_short_budget(monkeypatch, tmp_path, where,
                                                      config_path, nbgrader, expected):
    """Do kernels nbgrader starts with the course's configs grade, and a plain nbclient not?"""
    cwd = ROOT if where == "root" else tmp_path
    assert _grading_run_in_kernel(monkeypatch, cwd, config_path, nbgrader) == expected


def test_sequences_are_digits_separator_sorted_digits():
    """Is a task sequence the digits, the separator, then the same digits sorted?"""
    task = SortTask(n_digits=5)
    seq = task.sequences(task.encode("31415")[None])[0]
    assert task.decode(seq) == "31415|11345"
    x, y = task.inputs_targets(seq[None])
    assert x.shape == y.shape == (1, 10)
    assert (y[0, :5] == -100).all() and y[0, 5:].tolist() == [1, 1, 3, 4, 5]
    assert x[0, 5].item() == SEP


def test_training_batches_never_contain_held_out_strings():
    """Are the held-out strings excluded from every training batch, even when they are common?"""
    task = SortTask(n_digits=2)  # only 100 strings: a clash in every batch without the filter
    held_out = task.held_out(size=50, seed=0)
    excluded = set(task.codes(held_out[:, :2]).tolist())
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        x, _ = task.batch(256, g, exclude=task.codes(held_out[:, :2]))
        assert not excluded & set(task.codes(x[:, :2]).tolist())


def test_init_weights_depends_on_names_not_creation_order():
    """Do two models with the same parameter names get the same weights, whatever their order?"""
    class Reordered(TinyGPT):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            head, tok = self.head, self.tok_emb
            del self.head, self.tok_emb
            self.head, self.tok_emb = head, tok  # registered in another order

    with torch.random.fork_rng():
        a, b = TinyGPT(11, 16, 2, 2, 9), Reordered(11, 16, 2, 2, 9)
    assert [n for n, _ in a.named_parameters()] != [n for n, _ in b.named_parameters()]
    init_weights(a, torch.Generator().manual_seed(3))
    init_weights(b, torch.Generator().manual_seed(3))
    sb = b.state_dict()
    for name, value in a.state_dict().items():
        assert torch.equal(value, sb[name]), name
    assert (a.ln_f.weight == 1).all() and (a.head.bias == 0).all()


def test_init_weights_is_gpt2s():
    """Are the residual projections drawn with 0.02/sqrt(2 n_layers), like Hugging Face's GPT-2,
    and every other matrix with 0.02?"""
    from transformers import GPT2Config, GPT2Model

    n_layers, width = 3, 256
    with torch.random.fork_rng():
        ours = TinyGPT(11, width, 4, n_layers, 64)
        torch.manual_seed(0)
        theirs = GPT2Model(GPT2Config(n_embd=width, n_layer=n_layers, n_head=4, n_positions=64,
                                      vocab_size=11))
    init_weights(ours, torch.Generator().manual_seed(0))
    mine = {n: p.std().item() for n, p in ours.named_parameters() if p.dim() == 2}
    hf = {n: p.std().item() for n, p in theirs.named_parameters() if p.dim() == 2}
    for ours_name, hf_name in (("attn.out_proj", "attn.c_proj"), ("ff.linear2", "mlp.c_proj"),
                               ("attn.q_proj", "attn.c_attn"), ("ff.linear1", "mlp.c_fc")):
        for layer in range(n_layers):
            a = mine[f"blocks.{layer}.{ours_name}.weight"]
            b = hf[f"h.{layer}.{hf_name}.weight"]
            assert a == pytest.approx(b, rel=0.05), (ours_name, a, b)
    assert mine["blocks.0.attn.out_proj.weight"] == pytest.approx(0.02 / (2 * n_layers) ** 0.5,
                                                                  rel=0.05)


def test_short_run_keeps_threads_and_global_stream():
    """Does a short training run restore the thread count and leave the global stream alone?"""
    task = SortTask()
    model = make_gpt(task)
    threads, state = torch.get_num_threads(), torch.random.get_rng_state()
    history = train(model, task, 3, generator=torch.Generator().manual_seed(1), progress=False,
                    eval_every=2)
    assert torch.get_num_threads() == threads
    assert torch.equal(state, torch.random.get_rng_state())
    assert history.steps == [1, 2, 3] and history.eval_steps == [2, 3]
    assert not model.training


def test_exact_accuracy_is_greedy_generation():
    """Does the one-pass accuracy equal the fraction greedy generation gets exactly right?"""
    task = SortTask(n_digits=4)
    with torch.random.fork_rng():
        model = TinyGPT(task.vocab_size, 16, 2, 1, task.seq_len)
    init_weights(model, torch.Generator().manual_seed(0), std=0.5)
    seqs = task.held_out(size=300, seed=1)
    # make some answers right by construction: the model's own greedy continuations
    written = generate(model, seqs[:, :task.prompt_len], task.n_digits, temperature=0)
    mixed = torch.cat([seqs[:150], written[150:]])
    want = (generate(model, mixed[:, :task.prompt_len], task.n_digits, temperature=0)
            == mixed).all(dim=1).float().mean().item()
    assert want >= 0.5
    assert exact_accuracy(model, task, mixed) == pytest.approx(want)
