import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens import patching as tl_patching

from interp_utils import patching
from interp_utils.circuits.patching import Patch


def model_and_data(n_layers=2, attn_only=False, normalization="LN", batch=3, seq=7):
    cfg = HookedTransformerConfig(
        n_layers=n_layers,
        d_model=32,
        n_heads=3,
        d_head=8,
        d_mlp=64,
        n_ctx=16,
        d_vocab=20,
        attn_only=attn_only,
        normalization_type=normalization,
        act_fn="gelu",
        seed=0,
    )
    model = HookedTransformer(cfg)
    g = torch.Generator().manual_seed(0)
    clean, corrupt = torch.randint(0, 20, (2, batch, seq), generator=g)
    return model, clean, corrupt


def metric(logits):
    return logits[:, -1, 3] - logits[:, -1, 5]


def one_at_a_time(model, tokens, source, patch, positions):
    def hook(act, hook):
        patching._write(act, source[patch.hook], patch, positions)
        return act

    return metric(model.run_with_hooks(tokens, fwd_hooks=[(patch.hook, hook)])).mean().cpu()


def test_batched_sweep_equals_one_patch_per_pass():
    model, clean, corrupt = model_and_data()
    _, cache = model.run_with_cache(corrupt)
    positions = {"a": torch.tensor([1, 2, 3]), "end": torch.tensor([6, 6, 6])}
    patches = (
        patching.resid_patches(model, ["a", "end"]) + patching.head_patches(model) + patching.head_patches(model, "a")
    )
    patches.append(Patch("blocks.1.hook_mlp_out", "end"))
    # a small max_elements forces several passes with several copies each
    batched = patching.patch_sweep(model, clean, cache, patches, metric, positions, max_elements=3 * 21 * 20 * 4)
    single = torch.stack([one_at_a_time(model, clean, cache, p, positions) for p in patches])
    assert torch.allclose(batched, single, atol=1e-5)


def test_patching_the_whole_residual_gives_the_source_run():
    model, clean, corrupt = model_and_data()
    _, cache = model.run_with_cache(corrupt)
    out = patching.patch_sweep(model, clean, cache, [Patch("blocks.0.hook_resid_pre")], metric)
    assert torch.isclose(out[0], metric(model(corrupt)).mean(), atol=1e-5)


def test_agrees_with_transformer_lens_patching_module():
    model, clean, corrupt = model_and_data()
    _, clean_cache = model.run_with_cache(clean)
    expected = tl_patching.get_act_patch_resid_pre(model, corrupt, clean_cache, lambda logits: metric(logits).mean())
    seq = clean.shape[1]
    positions = {str(p): torch.full((clean.shape[0],), p) for p in range(seq)}
    ours = patching.patch_sweep(
        model, corrupt, clean_cache, patching.resid_patches(model, list(positions)), metric, positions
    )
    assert torch.allclose(ours.reshape(model.cfg.n_layers, seq), expected.cpu(), atol=1e-5)


def test_missing_source_and_position_are_explained():
    model, clean, corrupt = model_and_data()
    with pytest.raises(KeyError, match="run_with_cache"):
        patching.patch_sweep(model, clean, {}, [Patch("blocks.0.hook_resid_pre")], metric)
    _, cache = model.run_with_cache(corrupt)
    with pytest.raises(KeyError, match="positions has"):
        patching.patch_sweep(model, clean, cache, [Patch("blocks.0.hook_resid_pre", "S2")], metric, {"IO": clean[:, 0]})


def test_path_patching_to_logits_is_activation_patching_in_one_layer():
    model, clean, corrupt = model_and_data(n_layers=1, attn_only=True)
    _, clean_cache = model.run_with_cache(clean)
    _, corrupt_cache = model.run_with_cache(corrupt)
    senders = [(0, h) for h in range(3)]
    path = patching.path_patch_heads(model, clean, clean_cache, corrupt_cache, senders, metric)
    act = patching.patch_sweep(model, clean, corrupt_cache, patching.head_patches(model), metric)
    assert torch.allclose(path, act, atol=1e-5)


def test_path_patching_into_receivers_matches_a_hand_written_two_step_run():
    model, clean, corrupt = model_and_data(n_layers=3)
    _, clean_cache = model.run_with_cache(clean)
    _, corrupt_cache = model.run_with_cache(corrupt)
    senders, receivers = [(0, 0), (0, 2), (1, 1)], [(2, 0), (2, 2)]
    for mode in ("q", "v"):
        batched = patching.path_patch_heads(
            model, clean, clean_cache, corrupt_cache, senders, metric, receivers, mode, max_elements=2 * 3 * 7 * 20
        )
        for i, (s_layer, s_head) in enumerate(senders):

            def freeze(z, hook, s_layer=s_layer, s_head=s_head):
                z[:] = clean_cache[hook.name]
                if hook.layer() == s_layer:
                    z[:, :, s_head] = corrupt_cache[hook.name][:, :, s_head]
                return z

            store = {}

            def save(act, hook, store=store):
                store["x"] = act.clone()

            def replace(act, hook, store=store):
                act[:, :, [0, 2]] = store["x"][:, :, [0, 2]]
                return act

            with model.hooks(fwd_hooks=[(f"blocks.{layer}.attn.hook_z", freeze) for layer in range(3)]):
                model.run_with_hooks(clean, fwd_hooks=[("blocks.2.attn.hook_" + mode, save)])

            expected = metric(model.run_with_hooks(clean, fwd_hooks=[("blocks.2.attn.hook_" + mode, replace)])).mean()
            assert torch.isclose(batched[i], expected, atol=1e-5), (mode, i)


def test_attribution_patching_is_exact_for_a_linear_path():
    model, clean, corrupt = model_and_data(n_layers=1, attn_only=True, normalization=None)
    _, corrupt_cache = model.run_with_cache(corrupt)
    estimate = patching.attribution_patch_heads(model, clean, corrupt_cache, metric)
    exact = patching.patch_sweep(model, clean, corrupt_cache, patching.head_patches(model), metric)
    baseline = metric(model(clean)).mean().cpu()
    assert estimate.shape == (1, 3)
    assert torch.allclose(estimate.flatten().cpu(), exact - baseline, atol=1e-4)


def test_mean_ablation_keeps_the_circuit_and_averages_the_rest():
    model, clean, corrupt = model_and_data(batch=4)
    _, ref = model.run_with_cache(corrupt)
    everything = [(layer, head) for layer in range(2) for head in range(3)]
    same = model.run_with_hooks(clean, fwd_hooks=patching.mean_ablation_hooks(model, ref, torch.arange(4), everything))
    assert torch.allclose(same, model(clean), atol=1e-5)
    # every prompt its own group and nothing kept: each run becomes the reference run's heads
    alone = model.run_with_hooks(clean, fwd_hooks=patching.mean_ablation_hooks(model, ref, torch.arange(4), []))
    swapped = model.run_with_hooks(
        clean, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", lambda z, hook: ref[hook.name].clone()) for layer in range(2)]
    )
    assert torch.allclose(alone, swapped, atol=1e-5)
    # one group: every prompt gets the same (mean) head outputs
    pooled = patching.mean_ablation_hooks(model, ref, torch.zeros(4, dtype=torch.long), [])
    seen = {}
    model.run_with_hooks(
        clean, fwd_hooks=pooled + [("blocks.1.attn.hook_z", lambda z, hook: seen.setdefault("z", z.clone()))]
    )
    assert torch.allclose(seen["z"], ref["blocks.1.attn.hook_z"].mean(0, keepdim=True).expand_as(seen["z"]), atol=1e-6)


def test_mean_ablation_keeps_a_head_only_at_each_prompts_own_position():
    model, clean, corrupt = model_and_data(batch=4)
    _, ref = model.run_with_cache(corrupt)
    _, own = model.run_with_cache(clean)
    at = {"S2": torch.tensor([1, 3, 2, 0])}
    layer0 = [(0, head) for head in range(3)]  # layer 1's inputs stay clean
    fwd = patching.mean_ablation_hooks(model, ref, torch.arange(4), [*layer0, (1, 2, "S2"), (1, 0)], at)
    seen = {}
    model.run_with_hooks(
        clean, fwd_hooks=fwd + [("blocks.1.attn.hook_z", lambda z, hook: seen.setdefault("z", z.clone()))]
    )
    z, clean_z, ref_z = seen["z"], own["blocks.1.attn.hook_z"], ref["blocks.1.attn.hook_z"]
    rows = torch.arange(4)
    assert torch.allclose(z[:, :, 0], clean_z[:, :, 0])  # kept everywhere
    assert torch.allclose(z[rows, at["S2"], 2], clean_z[rows, at["S2"], 2])  # kept at each prompt's S2 only
    elsewhere = torch.ones(4, z.shape[1], dtype=torch.bool)
    elsewhere[rows, at["S2"]] = False
    assert torch.allclose(z[:, :, 2][elsewhere], ref_z[:, :, 2][elsewhere])  # every prompt its own group: its ABC run
    assert torch.allclose(z[:, :, 1], ref_z[:, :, 1])
    with pytest.raises(KeyError, match="pass positions"):
        patching.mean_ablation_hooks(model, ref, torch.arange(4), [(1, 2, "IO")], at)


def test_receiver_inputs_are_what_path_patching_replaces():
    """The second step with the saved inputs of every head at the receivers' layer equals path patching into all."""
    model, clean, corrupt = model_and_data(batch=2)
    _, clean_cache = model.run_with_cache(clean)
    _, corrupt_cache = model.run_with_cache(corrupt)
    saved = patching.receiver_inputs(model, clean, clean_cache, corrupt_cache, [(0, 1)], [1], "v")[
        "blocks.1.attn.hook_v"
    ]
    assert not torch.allclose(saved, clean_cache["blocks.1.attn.hook_v"])
    replaced = model.run_with_hooks(clean, fwd_hooks=[("blocks.1.attn.hook_v", lambda v, hook: saved)])
    path = patching.path_patch_heads(
        model, clean, clean_cache, corrupt_cache, [(0, 1)], metric, [(1, 0), (1, 1), (1, 2)], "v"
    )
    assert torch.allclose(path, metric(replaced).mean().cpu(), atol=1e-5)


def test_gpt2_small_shaped_model_runs_every_sweep():
    """GPT-2 small's shapes (12 x 12 heads, d_model 768, vocabulary 50257), random weights: hooks, batching, shapes."""
    cfg = dict(n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, n_ctx=1024, d_vocab=50257)
    model = HookedTransformer(HookedTransformerConfig(**cfg, act_fn="gelu_new", seed=0))
    g = torch.Generator().manual_seed(0)
    clean, corrupt = torch.randint(0, 50257, (2, 2, 8), generator=g)
    positions = {"S2": torch.tensor([3, 4]), "end": torch.full((2,), 7)}
    _, clean_cache = model.run_with_cache(clean)
    _, corrupt_cache = model.run_with_cache(corrupt)
    patches = patching.resid_patches(model, ["S2", "end"])[5:8] + patching.head_patches(model, "end")[100:103]
    # 2 x 8 x 50257 logits per copy: a budget of 2 copies per pass forces several passes
    out = patching.patch_sweep(model, corrupt, clean_cache, patches, metric, positions, max_elements=2 * 2 * 8 * 50257)
    single = torch.stack([one_at_a_time(model, corrupt, clean_cache, p, positions) for p in patches])
    assert torch.allclose(out, single, atol=1e-4)
    path = patching.path_patch_heads(
        model, clean, clean_cache, corrupt_cache, [(0, 1), (7, 3)], metric, [(9, 9), (10, 0)]
    )
    assert path.shape == (2,) and torch.isfinite(path).all()
    assert patching.attribution_patch_heads(model, corrupt, clean_cache, metric).shape == (12, 12)
    hooks = patching.mean_ablation_hooks(model, corrupt_cache, torch.zeros(2, dtype=torch.long), [(9, 9), (9, 6)])
    assert model.run_with_hooks(clean, fwd_hooks=hooks).shape == (2, 8, 50257)
