"""The shipped bundled model really shows what later notebooks study (measured here, not read from its card)."""

import json

import pytest

from interp_utils import bundled, corpus
from interp_utils.circuits.heads import induction_scores
from interp_utils.core.loading import BUNDLED_DIR
from interp_utils.data.ioi import make_ioi_prompts, prompt_logit_diffs


@pytest.fixture
def model(bundled_model):
    return bundled_model


def test_has_induction_heads(model):
    scores, chance = induction_scores(model, seq_len=40, batch=16, seed=7)
    assert scores.max() > 0.5, f"best induction score {scores.max():.3f}"
    assert scores.max() > 10 * chance
    assert (scores > 0.2).sum() >= 1


def test_does_ioi_on_held_out_names_and_templates(model):
    """Names and templates that never occur in the corpus's IOI stories: IO still clearly beats S."""
    diffs = prompt_logit_diffs(model, make_ioi_prompts(200, corpus.HELD_OUT_NAMES, corpus.HELD_OUT_TEMPLATES, seed=11))
    standard_error = diffs.std() / len(diffs) ** 0.5
    assert diffs.mean() > 3 * standard_error, f"mean {diffs.mean():.3f}, standard error {standard_error:.3f}"
    assert (diffs > 0).float().mean() > 0.6


def test_does_ioi_on_held_out_names_in_training_templates(model):
    diffs = prompt_logit_diffs(model, make_ioi_prompts(200, corpus.HELD_OUT_NAMES, corpus.TRAIN_TEMPLATES, seed=11))
    assert diffs.mean() > 3.0 and (diffs > 0).float().mean() > 0.9


def test_abc_prompts_carry_no_ioi_signal(model):
    """With no repeated name (the ABC corruption) the preference for the 'IO' name should vanish."""
    names, templates = corpus.HELD_OUT_NAMES, corpus.TRAIN_TEMPLATES
    abc = prompt_logit_diffs(model, make_ioi_prompts(200, names, templates, orders=("ABC",), seed=12))
    clean = prompt_logit_diffs(model, make_ioi_prompts(200, names, templates, seed=12))
    assert abc.mean().abs() < 0.2 * clean.mean()


def test_the_model_card_says_who_carries_the_ioi_answer(model):
    """The card's circuit figures (metrics.json, written by ``python -m interp_utils.models.bundled evaluate``) are
    what the shipped weights give."""
    stated = json.loads((BUNDLED_DIR / "metrics.json").read_text())["ioi_circuit"]
    measured = bundled.ioi_circuit(model)
    assert abs(measured["attention_share"] - stated["attention_share"]) < 0.01
    assert abs(measured["mlp_share"] - stated["mlp_share"]) < 0.01
    assert list(measured["carriers"]) == list(stated["carriers"]) and measured["name_movers"] == stated["name_movers"]
    assert measured["classes"] == stated["classes"], "notebook 03's head classes, as the card states them"
    assert stated["mlp_share"] > stated["attention_share"], "README and notebook 03 say the MLPs write the answer"


def test_the_training_levers_tie_the_unembedding_and_resize(tmp_path, monkeypatch):
    """Issue 35's levers: --tied keeps W_U = W_E^T through training (one matrix); --n-layers/--n-heads resize;
    --own-templates trains on no paper template, and evaluate then measures on all 15 of them."""
    import torch

    from interp_utils.core.loading import load_bundled

    def paper_template(*args, **kwargs):
        raise AssertionError("a paper template was used in training")

    with monkeypatch.context() as patched:
        patched.setattr(corpus, "make_ioi_prompts", paper_template)
        record = bundled.train(
            tmp_path, steps=2, batch_size=2, lr=1e-3, warmup=1, weight_decay=0.1, seed=0, tied=True, n_layers=2,
            n_heads=8, own_templates=True,
        )  # fmt: skip
    assert record["tied"] is True and record["own_templates"] is True
    bundled.main(["evaluate", "--out", str(tmp_path)])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert list(metrics["ioi_heldout_names_by_heldout_template"]) == [str(t) for t in range(15)]
    assert {"ioi_heldout_names_train_templates", "ioi_train_names_heldout_templates"} <= set(metrics)
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert "None of the paper's 15 IOI templates occurs" in card and "templates of this suite's own" in card
    assert "the paper's 15 templates, all held out" in card
    raw = load_bundled(tmp_path, process_weights=False)
    assert raw.cfg.n_layers == 2 and raw.cfg.n_heads == 8 and raw.cfg.d_head == raw.cfg.d_model // 8
    assert torch.equal(raw.W_U, raw.W_E.T)
    with pytest.raises(ValueError, match="must divide d_model"):
        bundled.architecture(n_heads=3)
    with pytest.raises(ValueError, match="positive"):
        bundled.architecture(n_layers=-1)


def test_extra_names_are_new_single_tokens_and_join_the_ioi_cast():
    names = corpus.extra_names(300)
    assert len(set(names)) == 300 and not set(names) & set(corpus.all_words())
    tokenizer = corpus.build_tokenizer(300)
    assert all(len(tokenizer(" " + n, add_special_tokens=False)["input_ids"]) == 1 for n in names[:50])
    text = tokenizer.decode(next(corpus.tokenizer_batches(tokenizer, 16, 128, seed=0, n_extra_names=300)).flatten())
    assert "[UNK]" not in text and any(n in text.split() for n in names)
    assert corpus.build_tokenizer().get_vocab() == {k: v for k, v in tokenizer.get_vocab().items() if k not in names}
    with pytest.raises(ValueError, match="0 or more"):
        corpus.extra_names(-1)


def test_the_attempts_table_reads_an_attempts_folder(tmp_path):
    """`bundled attempt FOLDER --lever ...` adds the folder's measured row; the card's sentence follows the rows."""
    import shutil

    from interp_utils.models import bundled_attempts

    for name in ("config.json", "metrics.json"):
        shutil.copy(BUNDLED_DIR / name, tmp_path / name)
    assert bundled_attempts.attempts_table(tmp_path) == "" and bundled_attempts.attention_writers(tmp_path) == []
    bundled.main(["attempt", str(tmp_path), "--lever", "the shipped model", "--out", str(tmp_path)])
    rows = json.loads((tmp_path / bundled_attempts.ATTEMPTS).read_text())
    stated = json.loads((BUNDLED_DIR / "metrics.json").read_text())["ioi_circuit"]
    assert rows[0]["lever"] == "the shipped model" and rows[0]["attention_share"] == stated["attention_share"]
    assert bundled_attempts.attention_writers(tmp_path, share=-1.0) == ["the shipped model"]
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert "| 0 | the shipped model |" in card and "is met by: none of them" in card
    with pytest.raises(SystemExit, match="train it first"):
        bundled.main(["attempt", str(tmp_path / "missing"), "--lever", "x", "--out", str(tmp_path)])


def test_an_attempt_measured_again_replaces_its_row(tmp_path):
    """Recording an attempt twice keeps one row per lever, in place; the classes table lists each class's heads."""
    from interp_utils.models import bundled_attempts

    rows = [{"lever": "a", "classes": {"name mover": ["3.1"]}}, {"lever": "b", "classes": {}}]
    again = bundled_attempts.record_attempt(rows, {"lever": "a", "classes": {"name mover": ["3.2"], "induction": []}})
    assert [r["lever"] for r in again] == ["a", "b"] and again[0]["classes"]["name mover"] == ["3.2"]
    assert [r["lever"] for r in bundled_attempts.record_attempt(rows, {"lever": "c"})] == ["a", "b", "c"]
    (tmp_path / bundled_attempts.ATTEMPTS).write_text(json.dumps(again))
    table = bundled_attempts.classes_table(tmp_path)
    assert "| 0 | a | 3.2 | none | none | none | none | none |" in table and "| b |" not in table
