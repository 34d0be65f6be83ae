"""Notebook 08's checks pass the reference answers (interp_utils.models.scaling) and reject plausible wrong ones with
the message meant for them; the reference answers give TransformerLens's numbers on the same weights."""

import sys

import pytest
import torch

from interp_utils import ioi, patching, probes, steering
from interp_utils.course.checks import scaling_up as checks
from interp_utils.models import scaling

nnsight = pytest.importorskip("nnsight")


@pytest.fixture(scope="module")
def twins():
    return scaling.twins("bundled", "cpu")


def test_final_logits(twins):
    tl, lm = twins.tl, twins.lm
    checks.check_final_logits(scaling.final_logits, tl, lm)

    def last_column(lm, tokens, end):
        with torch.no_grad(), lm.trace(tokens):
            out = nnsight.save(lm.output.logits[:, -1])
        return out

    with pytest.raises(AssertionError, match="last column"):
        checks.check_final_logits(last_column, tl, lm)
    with pytest.raises(AssertionError, match="raw logits"):
        checks.check_final_logits(lambda lm, t, e: scaling.final_logits(lm, t, e).softmax(-1), tl, lm)


def test_resid_pre(twins):
    tl, lm = twins.tl, twins.lm
    checks.check_resid_pre(scaling.resid_pre, tl, lm)

    def outputs(lm, tokens, at):
        rows, saved = torch.arange(len(tokens)), []
        with torch.no_grad(), lm.trace(tokens):
            for block in scaling.blocks(lm):
                saved.append(nnsight.save(block.output[0][rows, at]))
        return torch.stack(saved, 1)

    with pytest.raises(AssertionError, match="block's output"):
        checks.check_resid_pre(outputs, tl, lm)
    with pytest.raises(AssertionError, match="dimension 1"):
        checks.check_resid_pre(lambda lm, t, a: scaling.resid_pre(lm, t, a).transpose(0, 1), tl, lm)
    with pytest.raises(AssertionError, match="last column"):
        checks.check_resid_pre(lambda lm, t, a: scaling.resid_pre(lm, t, torch.full_like(a, t.shape[1] - 1)), tl, lm)


def test_patch_resid(twins):
    tl, lm = twins.tl, twins.lm
    checks.check_patch_resid(scaling.patch_resid, tl, lm)

    def unpatched(lm, tokens, clean, layer, at, end):
        rows = torch.arange(len(tokens))
        with torch.no_grad(), lm.trace(tokens):
            stream = scaling.blocks(lm)[layer].input.clone()  # a copy: the model never sees the change
            stream[rows, at] = clean
            out = nnsight.save(lm.output.logits[rows, end])
        return out

    def output_patched(lm, tokens, clean, layer, at, end):
        rows = torch.arange(len(tokens))
        with torch.no_grad(), lm.trace(tokens):
            scaling.blocks(lm)[layer].output[0][rows, at] = clean
            out = nnsight.save(lm.output.logits[rows, end])
        return out

    with pytest.raises(AssertionError, match="Nothing changed"):
        checks.check_patch_resid(unpatched, tl, lm)
    with pytest.raises(AssertionError, match="block 1's output"):
        checks.check_patch_resid(output_patched, tl, lm)


def test_steer(twins):
    tl, lm = twins.tl, twins.lm
    checks.check_steer(scaling.steer, tl, lm)

    def steer(lm, tokens, layer, vector, alpha, end, start=1, scale=True, only_end=False):
        rows = torch.arange(len(tokens))
        v = alpha * vector if scale else vector
        with torch.no_grad(), lm.trace(tokens):
            stream = scaling.blocks(lm)[layer].input
            if only_end:
                stream[rows, end] += v
            else:
                stream[:, start:] += v
            out = nnsight.save(lm.output.logits[rows, end])
        return out

    with pytest.raises(AssertionError, match="BOS too"):
        checks.check_steer(lambda *a: steer(*a, start=0), tl, lm)
    with pytest.raises(AssertionError, match="scale it by alpha"):
        checks.check_steer(lambda *a: steer(*a, scale=False), tl, lm)
    with pytest.raises(AssertionError, match="last token only"):
        checks.check_steer(lambda *a: steer(*a, only_end=True), tl, lm)


def test_the_nnsight_methods_give_transformerlens_numbers_on_the_bundled_model(twins):
    """Activation patching of the residual stream (every layer and position), the probe's activations and steering:
    the nnsight versions against the suite's TransformerLens implementations, to 1e-4."""
    tl, lm = twins.tl, twins.lm
    batch = ioi.ioi_batch(tl, ioi.default_prompts(tl, 16, seed=0), seed=1)
    end = batch.positions["end"]
    with torch.inference_mode():
        clean_logits, cache = tl.run_with_cache(batch.tokens)
        corrupt_logits = tl(batch.corrupted)
    clean = ioi.logit_diff(clean_logits, batch).mean().item()
    corrupt = ioi.logit_diff(corrupt_logits, batch).mean().item()
    sweep = patching.patch_sweep(
        tl, batch.corrupted, cache, patching.resid_patches(tl, ioi.POSITIONS),
        lambda lg: ioi.normalised_logit_diff(lg, batch, clean, corrupt), batch.positions,
    ).reshape(tl.cfg.n_layers, len(ioi.POSITIONS))  # fmt: skip
    ours = torch.zeros_like(sweep)
    rows = torch.arange(len(batch))
    for j, pos in enumerate(ioi.POSITIONS):
        at = batch.positions[pos]
        stream = scaling.resid_pre(lm, batch.tokens, at)
        for layer in range(tl.cfg.n_layers):
            final = scaling.patch_resid(lm, batch.corrupted, stream[:, layer], layer, at, end)
            diff = final[rows, batch.io] - final[rows, batch.s]
            ours[layer, j] = ((diff - corrupt) / (clean - corrupt)).mean()
    assert (ours - sweep).abs().max() < 1e-4
    assert (
        scaling.resid_pre(lm, batch.tokens, end) - probes.residuals_at(tl, batch.tokens, end, kind="resid_pre")
    ).abs().max() < 1e-4
    vector = torch.randn(tl.cfg.d_model, generator=torch.Generator().manual_seed(0)) * 3
    steered = scaling.steer(lm, batch.tokens, 2, vector, 1.5, end)
    want = scaling.tl_final_logits(tl, batch.tokens, end, steering.add_hooks(2, vector, 1.5))
    assert (steered - want).abs().max() < 1e-4


def test_a_remote_run_without_a_key_stops_naming_the_key(monkeypatch):
    monkeypatch.delenv(scaling.NDIF_KEY_ENV, raising=False)
    with pytest.raises(scaling.NDIFKeyMissing, match="NDIF_API_KEY"):
        scaling.twins("gpt2", remote=True, remote_model="meta-llama/Meta-Llama-3.1-70B")


class _NoInterpUtils:
    """An import hook that refuses ``interp_utils``: on NDIF it is not installed. (The editable install's own hook
    would find it however sys.path is trimmed, which is why nnsight's simulation alone does not catch it.)"""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "interp_utils":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


@pytest.fixture
def as_on_ndif(monkeypatch):
    """nnsight's offline imitation of a remote run (``remote="local"``: the request is pickled and unpickled as on the
    server, with user modules taken out of sys.modules), with interp_utils also unimportable while it is unpickled."""
    from nnsight.intervention.backends.local_simulation import LocalSimulationBackend

    block, restore, hook = LocalSimulationBackend._block_user_modules, LocalSimulationBackend._restore_modules, None

    def blocking(self):
        nonlocal hook
        blocked, hook = block(self), _NoInterpUtils()
        sys.meta_path.insert(0, hook)
        return blocked

    def restoring(self, blocked):
        sys.meta_path.remove(hook)
        restore(self, blocked)

    monkeypatch.setattr(LocalSimulationBackend, "_block_user_modules", blocking)
    monkeypatch.setattr(LocalSimulationBackend, "_restore_modules", restoring)


def _notebook_solutions() -> dict:
    """The notebook's nn_* functions, defined as in the notebook's kernel (module __main__, so cloudpickle sends them
    by value, as it does a notebook's code) with their source in linecache (nnsight reads a trace's source)."""
    import json
    import linecache

    from interp_utils.course.reproduce import NOTEBOOK_DIR

    cells = json.loads((NOTEBOOK_DIR / "08_scaling_up.ipynb").read_text())["cells"]
    code = "\n\n".join("".join(c["source"]).split("\n\nif tl is not None")[0] for c in cells
                       if "solution" in c.get("metadata", {}).get("tags", []))  # fmt: skip
    filename = "<notebook 08 solutions>"
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    namespace = {"__name__": "__main__", "torch": torch, "nnsight": nnsight, "scaling": scaling}
    exec(compile(code, filename, "exec"), namespace)  # noqa: S102 - the suite's own notebook
    return namespace


def test_the_exercises_run_as_a_remote_request_that_needs_no_interp_utils(twins, as_on_ndif):
    """On NDIF the trace's body is unpickled where interp_utils does not exist: the reference answers and the
    notebook's solutions take the blocks before the trace, so their requests unpickle and give the local numbers. A
    body that calls scaling.blocks inside the trace fails here, as it would on NDIF."""
    tl, lm = twins.tl, twins.lm
    batch = ioi.ioi_batch(tl, ioi.default_prompts(tl, 4, seed=0), seed=1)
    tokens, at, end, layer = batch.tokens, batch.positions["S2"], batch.positions["end"], 1
    clean = scaling.resid_pre(lm, tokens, at)
    vector = torch.randn(tl.cfg.d_model, generator=torch.Generator().manual_seed(0))
    nb = _notebook_solutions()
    for fns in [
        (scaling.final_logits, scaling.resid_pre, scaling.patch_resid, scaling.steer),
        (nb["nn_final_logits"], nb["nn_resid_pre"], nb["nn_patch_resid"], nb["nn_steer"]),
    ]:
        final_logits, resid_pre, patch_resid, steer = fns
        for run, args in [
            (final_logits, (lm, tokens, end)),
            (resid_pre, (lm, tokens, at)),
            (patch_resid, (lm, batch.corrupted, clean[:, layer], layer, at, end)),
            (steer, (lm, tokens, layer, vector, 2.0, end)),
        ]:
            assert torch.equal(run(*args, remote="local"), run(*args)), run.__name__

    def inside(lm, tokens, at):  # scaling.blocks called inside the trace: the server would need interp_utils
        saved = []
        with torch.no_grad(), lm.trace(tokens, remote="local"):
            for block in scaling.blocks(lm):
                saved.append(nnsight.save(block.input[:, 0]))
        return saved

    with pytest.raises(Exception, match="interp_utils"):
        inside(lm, tokens, at)


def test_the_probe_on_nnsight_activations_is_the_probe_on_transformerlens_activations(twins):
    """Lesson 08's probe (names against nouns, at the last token, entering the middle block): trained on the
    activations nnsight reads and on TransformerLens's resid_pre, the same direction (cosine > 0.9999), the same
    prediction on every held-out story, the same accuracy."""
    tl, lm = twins.tl, twins.lm
    names, nouns, templates = ioi.default_names(tl), ioi.default_nouns(tl), ioi.default_templates(tl)
    layer = tl.cfg.n_layers // 2

    def both(cast, n, seed):
        batch = ioi.ioi_batch(tl, ioi.make_ioi_prompts(n, cast, templates, seed=seed), seed=seed + 1)
        end = batch.positions["end"]
        return scaling.resid_pre(lm, batch.tokens, end)[:, layer], probes.residuals_at(
            tl, batch.tokens, end, kind="resid_pre"
        )[:, layer]

    (nn_train, tl_train), (nn_test, tl_test) = [
        [torch.cat(pair) for pair in zip(both(names, n, seed), both(nouns, n, seed), strict=True)]
        for n, seed in [(60, 40), (30, 50)]
    ]
    y_train, y_test = torch.arange(120) < 60, torch.arange(60) < 30
    ours, theirs = probes.logistic_probe(nn_train, y_train), probes.logistic_probe(tl_train, y_train)
    # L-BFGS magnifies the activations' float differences (≤ 1e-5) into the weights' (≈ 1e-3 of their size): compare
    # the probes by direction and by what they predict, story by story
    cosine = torch.nn.functional.cosine_similarity(ours.direction, theirs.direction, dim=0)
    assert cosine > 0.9999 and abs(ours.bias - theirs.bias) < 1e-2 * max(1.0, abs(theirs.bias))
    assert torch.equal(ours.scores(nn_test) > 0, theirs.scores(tl_test) > 0)
    assert ours.accuracy(nn_test, y_test) == theirs.accuracy(tl_test, y_test)
