import pytest
import torch

from interp_utils.data.ioi import BABA_TEMPLATES, abba_template, corrupt_abc, make_ioi_prompts


def test_templates_have_both_names_and_end_before_the_answer():
    for t in BABA_TEMPLATES:
        assert t.index("[B]") < t.index("[A]")
        assert t.count("[B]") == 2 and t.count("[A]") == 1
        assert t.endswith(" to")
        assert abba_template(t).index("[A]") < abba_template(t).index("[B]")


def test_prompts_name_roles():
    prompts = make_ioi_prompts(60, orders=("BABA", "ABBA", "ABC"), seed=1)
    for p in prompts:
        assert p.io != p.s
        if p.order == "ABC":
            assert p.text.count(p.s) == 1 and p.text.count(p.io) == 1
        else:
            # the subject appears twice, the indirect object once, and the last name is the subject
            assert p.text.count(" " + p.s) + p.text.startswith(p.s) == 2
            last_s, last_io = p.text.rfind(p.s), p.text.rfind(p.io)
            assert last_s > last_io
    assert {p.order for p in prompts} == {"BABA", "ABBA", "ABC"}


def test_abc_corruption_keeps_template_and_uses_three_names():
    prompts = make_ioi_prompts(20, seed=2)
    for p, c in zip(prompts, corrupt_abc(prompts), strict=True):
        assert c.template == p.template and c.place == p.place and c.obj == p.obj
        assert c.order == "ABC" and c.text.count(c.s) == 1


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="distinct names"):
        make_ioi_prompts(3, names=["Ann", "Bob"])
    with pytest.raises(ValueError, match="Template indices"):
        make_ioi_prompts(3, templates=[99])
    with pytest.raises(ValueError, match="Unknown orders"):
        make_ioi_prompts(3, orders=("XYZ",))


def test_ioi_batch_positions_and_tokens(bundled_model):
    from interp_utils.data.ioi import POSITIONS, ioi_batch, single_token_names

    names = single_token_names(bundled_model)
    assert "Zorgblat" not in single_token_names(bundled_model, names + ["Zorgblat"])
    prompts = make_ioi_prompts(12, names, seed=3)
    batch = ioi_batch(bundled_model, prompts)
    rows = torch.arange(len(batch))
    assert set(batch.positions) == set(POSITIONS) and batch.tokens.shape == batch.corrupted.shape
    assert torch.equal(batch.tokens[rows, batch.positions["IO"]], batch.io)
    assert torch.equal(batch.tokens[rows, batch.positions["S1"]], batch.s)
    assert torch.equal(batch.tokens[rows, batch.positions["S2"]], batch.s)
    assert (batch.positions["S1+1"] == batch.positions["S1"] + 1).all()
    for i, p in enumerate(prompts):
        assert batch.positions["end"][i] == len(bundled_model.to_tokens(p.text)[0]) - 1
        # the corrupted twin has no repeated name: S2's position holds a third name
        assert batch.corrupted[i, batch.positions["S2"][i]] != batch.corrupted[i, batch.positions["S1"][i]]
    with pytest.raises(ValueError, match="not single tokens"):
        ioi_batch(bundled_model, make_ioi_prompts(3, ["Zorgblat", "Ann", "Bob"]))


def test_mean_attention_reads_each_prompts_positions(bundled_model):
    from interp_utils.circuits.ioi_circuit import mean_attention
    from interp_utils.data.ioi import ioi_batch, single_token_names

    batch = ioi_batch(bundled_model, make_ioi_prompts(6, single_token_names(bundled_model), seed=4))
    _, cache = bundled_model.run_with_cache(batch.tokens)
    attention = mean_attention(cache, batch, "end", "IO")
    assert attention.shape == (bundled_model.cfg.n_layers, bundled_model.cfg.n_heads)
    i, layer, head = 2, 1, 3
    one = cache["pattern", layer][i, head, batch.positions["end"][i], batch.positions["IO"][i]]
    by_hand = torch.stack(
        [
            cache["pattern", layer][j, head, batch.positions["end"][j], batch.positions["IO"][j]]
            for j in range(len(batch))
        ]
    ).mean()
    assert attention[layer, head] == pytest.approx(by_hand.item(), abs=1e-6) and 0 <= one <= 1
    with pytest.raises(ValueError, match="Positions are named"):
        mean_attention(cache, batch, "END", "IO")


def test_default_prompts_follow_the_model(bundled_model):
    from interp_utils import corpus, ioi

    assert set(ioi.default_names(bundled_model)) <= set(corpus.HELD_OUT_NAMES)
    assert ioi.default_templates(bundled_model) == list(corpus.TRAIN_TEMPLATES)
    prompts = ioi.default_prompts(bundled_model, 8, seed=5)
    assert prompts == make_ioi_prompts(8, ioi.default_names(bundled_model), corpus.TRAIN_TEMPLATES, seed=5)


def test_normalised_logit_diff_and_name_movers(bundled_model):
    from interp_utils import ioi, ioi_circuit

    batch = ioi.ioi_batch(bundled_model, ioi.default_prompts(bundled_model, 6, seed=1))
    logits = bundled_model(batch.tokens)
    clean = ioi.logit_diff(logits, batch).mean().item()
    corrupt = ioi.logit_diff(bundled_model(batch.corrupted), batch).mean().item()
    assert ioi.normalised_logit_diff(logits, batch, clean, corrupt).mean().item() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="nothing to normalise"):
        ioi.normalised_logit_diff(logits, batch, 1.0, 1.0)
    to_logits = torch.tensor([[-0.5, 0.0], [-0.2, -0.01]])
    to_io, to_s2 = torch.tensor([[0.1, 0.0], [0.9, 0.0]]), torch.tensor([[0.8, 0.0], [0.1, 0.0]])
    assert ioi_circuit.name_movers(to_logits, to_io, to_s2) == ([(0, 0), (1, 0)], [(1, 0)])
    # none prefers IO: the strongest carriers stand in, as notebook 03 does
    assert ioi_circuit.name_movers(to_logits, to_s2 * 0, to_s2) == ([(0, 0), (1, 0)], [(0, 0), (1, 0)])
    with pytest.raises(ValueError, match="Shapes differ"):
        ioi_circuit.name_movers(to_logits, to_io[0], to_s2)


def test_the_head_class_rules_on_hand_made_scores():
    from interp_utils.circuits import ioi_circuit

    to_logits = torch.tensor([[-0.5, -0.2], [0.3, 0.0]])
    end_io, end_s2 = torch.tensor([[0.9, 0.1], [0.8, 0.5]]), torch.tensor([[0.1, 0.7], [0.1, 0.5]])
    assert ioi_circuit.direct_classes(to_logits, end_io, end_s2) == {
        "name mover": [(0, 0)],
        "S-suppression": [(0, 1)],
        "negative name mover": [(1, 0)],
    }
    assert ioi_circuit.s_inhibition_heads(torch.tensor([[-0.1, -0.3], [0.0, -0.01]])) == [(0, 1), (0, 0)]
    to_si = torch.tensor([[-0.2, -0.2], [0.0, -0.04]])
    later, earlier = torch.tensor([[0.6, 0.1], [0.9, 0.9]]), torch.tensor([[0.1, 0.6], [0.0, 0.0]])
    assert ioi_circuit.induction_and_duplicate(to_si, later, earlier) == ([(0, 0)], [(0, 1)])
    assert ioi_circuit.previous_token_heads(torch.tensor([[-0.06, 0.0], [-0.2, 0.1]])) == [(0, 0), (1, 0)]


def test_head_classes_and_path_sweeps_on_the_bundled_model(bundled_model):
    from interp_utils import ioi
    from interp_utils.circuits import ioi_circuit

    batch = ioi.ioi_batch(bundled_model, ioi.default_prompts(bundled_model, 8, seed=3), seed=4)
    runs = ioi_circuit.run_ioi(bundled_model, batch)
    assert runs.normalised(runs.clean_logits).mean().item() == pytest.approx(1.0, abs=1e-5)
    assert runs.change(runs.corrupt_logits).mean().item() == pytest.approx(-1.0, abs=1e-5)
    to_logits = ioi_circuit.path_sweep(bundled_model, batch.tokens, runs.clean_cache, runs.corrupt_cache, runs.change)
    assert to_logits.shape == (bundled_model.cfg.n_layers, bundled_model.cfg.n_heads)
    into = ioi_circuit.path_sweep(
        bundled_model, batch.tokens, runs.clean_cache, runs.corrupt_cache, runs.change, [(2, 0)], "k"
    )
    assert (into[2:] == 0).all() and into[:2].abs().sum() > 0  # only earlier heads send into layer 2's keys
    classes = ioi_circuit.head_classes(runs)
    assert set(classes) == {c for c in ioi_circuit.WANG_CLASSES if c != "backup name mover"}
