"""JumpReLU, BatchTopK and Matryoshka SAEs (interp_utils.dictionaries.architectures, dispatched by sae.SAE): their
forward passes on cases worked by hand, their straight-through gradients and losses, training on a small synthetic
set, the errors of bad settings, and every architecture saved in SAELens's format and loaded by SAELens."""

import pytest
import torch

from interp_utils.dictionaries import architectures as arch
from interp_utils.dictionaries import sae, saelens_format

ALL = ["topk", "relu", "jumprelu", "batchtopk", "matryoshka"]


def _sae(architecture: str, d_in: int = 3, d_sae: int = 4, **kwargs) -> sae.SAE:
    """An SAE whose encoder is the identity on the first d_in latents and biases zero, so pre-activations are x."""
    model = sae.SAE(sae.SAEConfig(d_in=d_in, d_sae=d_sae, architecture=architecture, **kwargs))
    with torch.no_grad():
        model.W_enc.zero_()
        model.W_enc[:, :d_in] = torch.eye(d_in)
        model.b_enc.zero_()
        model.b_dec.zero_()
    return model


def test_jumprelu_keeps_each_pre_activation_above_its_own_threshold():
    model = _sae("jumprelu", d_in=4, init_threshold=0.5)
    with torch.no_grad():
        model.threshold.copy_(torch.tensor([0.5, 1.0, 0.0, 2.0]))
    x = torch.tensor([[0.6, 0.9, -0.3, 2.0], [0.5, 1.5, 0.2, 3.0]])
    expected = torch.tensor([[0.6, 0.0, 0.0, 0.0], [0.0, 1.5, 0.2, 3.0]])  # strictly above: 0.5 and 2.0 stay off
    assert torch.equal(model.encode(x), expected)
    assert torch.allclose(model.threshold, torch.tensor([0.5, 1.0, 0.0, 2.0]))


def test_the_l0_terms_threshold_gradient_is_the_kernel_estimate():
    """d/dtheta_i of lambda * mean_b sum_j H(z_bj - theta_j) := -lambda/(eps B) #{b : |z_bi - theta_i| < eps/2}."""
    eps, lam = 0.1, 0.7
    theta = torch.tensor([1.0, 0.5, 2.0], requires_grad=True)
    z = torch.tensor([[1.02, 0.5, 0.0], [0.96, 0.9, 2.04], [1.2, 0.44, 1.97]])
    l0 = arch.l0_ste(z, theta, eps)
    assert torch.equal(l0, torch.tensor([1.0, 2.0, 1.0]))  # strictly above the threshold
    (lam * l0.mean()).backward()
    inside = torch.tensor([[1, 1, 0], [1, 0, 1], [0, 0, 1]], dtype=torch.float)  # |z - theta| < eps / 2
    assert torch.allclose(theta.grad, -lam / eps * inside.mean(0))
    # through the model: the L0 part of the loss gives the thresholds exactly that gradient
    model = _sae("jumprelu", d_in=3, d_sae=3, l0_coeff=lam, bandwidth=eps)
    with torch.no_grad():
        model.threshold.copy_(theta.detach())
    out = model.losses(z)
    (out["loss"] - out["mse"]).backward()
    assert torch.allclose(model.threshold.grad, -lam / eps * inside.mean(0))
    assert out["l0"].item() == pytest.approx(4 / 3)


def test_the_jumprelus_threshold_gradient_is_minus_theta_over_eps_times_the_kernel():
    eps = 0.2
    theta = torch.tensor([1.0, 3.0], requires_grad=True)
    z = torch.tensor([[1.05, 1.0], [0.5, 3.09]], requires_grad=True)
    f = arch.jumprelu(z, theta, eps)
    assert torch.equal(f.detach(), torch.tensor([[1.05, 0.0], [0.0, 3.09]]))
    f.sum().backward()
    assert torch.allclose(theta.grad, torch.tensor([-1.0 / eps, -3.0 / eps]))  # one token in each window
    assert torch.equal(z.grad, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))  # the true gradient where it fired


def test_batchtopk_keeps_k_times_batch_across_the_batch():
    pre = torch.tensor([[5.0, 4.0, 3.0, -1.0], [0.5, 0.4, 0.2, 0.1], [6.0, -2.0, 0.3, 2.5]])
    f = arch.batch_topk(pre, k=2)  # the 6 largest of the batch: 6, 5, 4, 3, 2.5, 0.5
    assert int((f > 0).sum()) == 6
    assert (f > 0).sum(-1).tolist() == [3, 1, 2]  # per token: not 2 each, as TopK would give
    assert torch.equal(f[0], torch.tensor([5.0, 4.0, 3.0, 0.0])) and f[1, 0] == 0.5
    torch.manual_seed(0)
    big = torch.randn(64, 50)
    assert int((arch.batch_topk(big, k=7) > 0).sum()) == 7 * 64
    threshold = torch.tensor(0.0)
    arch.update_threshold_(threshold, f, rate=0.5)
    assert threshold.item() == pytest.approx(0.25)  # halfway from 0 to the smallest survivor, 0.5


def test_batchtopks_inference_threshold_reproduces_its_training_l0():
    torch.manual_seed(0)
    data = torch.randn(4096, 12) * torch.linspace(0.5, 2.0, 12)
    model = sae.SAE(sae.SAEConfig(d_in=12, d_sae=48, architecture="batchtopk", k=4, threshold_lr=0.05))
    log = sae.train_sae(model, data, 60_000, batch_size=256, lr=3e-3, progress=False)
    assert log.history["l0"][-1] == pytest.approx(4.0)  # training: exactly k per token on average
    assert model.threshold.item() > 0
    inference_l0 = (model.encode(data) > 0).float().sum(-1).mean().item()
    assert 3.0 < inference_l0 < 6.0, inference_l0


def test_matryoshkas_loss_is_the_sum_of_its_prefixes_reconstruction_losses():
    torch.manual_seed(0)
    model = sae.SAE(sae.SAEConfig(d_in=5, d_sae=12, architecture="matryoshka", k=3, prefixes=[2, 6]))
    assert model.cfg.prefixes == (2, 6, 12)
    x = torch.randn(16, 5)
    with torch.no_grad():
        model.b_dec.copy_(torch.randn(5))
        out = model.losses(x)
    f = out["acts"]
    expected = [((x - (f[:, :m] @ model.W_dec[:m] + model.b_dec)).pow(2).sum(-1).mean()) for m in (2, 6, 12)]
    assert torch.allclose(out["prefix_mse"], torch.stack(expected))
    assert torch.allclose(out["loss"], sum(expected))  # no dead latents: no AuxK term
    assert torch.allclose(out["prefix_mse"][-1], out["mse"])
    assert int((f > 0).sum()) == 3 * 16


def test_new_architectures_leave_topk_and_relu_untouched():
    """No new parameters or buffers for notebook 04's two, so their training is what it was."""
    for architecture in ("topk", "relu"):
        model = sae.SAE(sae.SAEConfig(d_in=4, d_sae=8, architecture=architecture, k=2))
        names, params = set(dict(model.named_buffers())), [name for name, _ in model.named_parameters()]
        assert names == {"in_scale", "out_scale"} and params == ["W_dec", "W_enc", "b_enc", "b_dec"]
    assert isinstance(_sae("jumprelu").threshold, torch.nn.Parameter)
    assert "threshold" in dict(_sae("batchtopk", k=2).named_buffers())


@pytest.mark.parametrize("architecture", ALL)
def test_each_architecture_trains_on_a_small_synthetic_set(architecture):
    """Sparse combinations of 24 directions in 8 dimensions: the loss falls and the SAE explains most variance."""
    torch.manual_seed(0)
    directions = torch.nn.functional.normalize(torch.randn(24, 8), dim=-1)
    codes = torch.rand(4096, 24) * (torch.rand(4096, 24) < 0.1)
    data = codes @ directions
    kwargs = {"relu": {"l1_coeff": 0.3}, "jumprelu": {"l0_coeff": 0.05}}.get(architecture, {"k": 3})
    model = sae.SAE(sae.SAEConfig(d_in=8, d_sae=32, architecture=architecture, **kwargs))
    log = sae.train_sae(model, data, 80_000, batch_size=256, lr=3e-3, progress=False, log_every=5)
    loss = log.history["loss"]
    assert sum(loss[-5:]) / 5 < 0.5 * loss[0], (loss[0], loss[-5:])
    assert log.history["explained_variance"][-1] > 0.6
    assert torch.allclose(model.W_dec.norm(dim=1), torch.ones(32), atol=1e-5)  # every one keeps unit rows
    if architecture == "jumprelu":
        assert (model.threshold >= 0).all() and model.threshold.mean() > model.cfg.init_threshold


def test_bad_settings_are_explained():
    with pytest.raises(ValueError, match="architecture must be .* or 'jumprelu', 'batchtopk' or 'matryoshka'"):
        sae.SAEConfig(d_in=4, d_sae=8, architecture="gated")
    for architecture in ("batchtopk", "matryoshka"):
        with pytest.raises(ValueError, match="k must be between 1 and d_sae=8, got 0"):
            sae.SAEConfig(d_in=4, d_sae=8, architecture=architecture, k=0)
        with pytest.raises(ValueError, match=r"threshold_lr .* must be in \(0, 1\], got 0"):
            sae.SAEConfig(d_in=4, d_sae=8, architecture=architecture, k=2, threshold_lr=0.0)
    with pytest.raises(ValueError, match="bandwidth .* must be > 0, got 0"):
        sae.SAEConfig(d_in=4, d_sae=8, architecture="jumprelu", bandwidth=0.0)
    with pytest.raises(ValueError, match="init_threshold must be >= 0, got -0.1"):
        sae.SAEConfig(d_in=4, d_sae=8, architecture="jumprelu", init_threshold=-0.1)
    with pytest.raises(ValueError, match="l0_coeff must be >= 0, got -1"):
        sae.SAEConfig(d_in=4, d_sae=8, architecture="jumprelu", l0_coeff=-1.0)
    for prefixes in ((4, 2), (0, 4), (4, 16), (4, 4)):
        with pytest.raises(ValueError, match="prefixes must be strictly increasing sizes between 1 and d_sae=8"):
            sae.SAEConfig(d_in=4, d_sae=8, architecture="matryoshka", k=2, prefixes=prefixes)
    assert sae.SAEConfig(d_in=4, d_sae=64, architecture="matryoshka", k=2).prefixes == (4, 16, 64)
    with pytest.raises(ValueError, match="not transcoders"):
        saelens_format.saelens_config(sae.SAE(sae.SAEConfig(d_in=4, d_sae=8, d_out=4, k=2)))


def _trained(architecture: str) -> sae.SAE:
    """Briefly trained on data far from unit scale, so the folded input scale, b_dec and thresholds all matter."""
    torch.manual_seed(0)
    data = (torch.randn(2048, 16) * torch.linspace(0.5, 3.0, 16) + 1.5) * 7.0
    kwargs = {"relu": {"l1_coeff": 0.3}, "jumprelu": {"l0_coeff": 0.05}}.get(architecture, {"k": 6})
    model = sae.SAE(sae.SAEConfig(d_in=16, d_sae=64, architecture=architecture, **kwargs))
    sae.train_sae(model, data, 20_000, batch_size=256, lr=3e-3, progress=False)
    return model


EXPECTED_CLASS = {
    "relu": "StandardSAE",
    "topk": "TopKSAE",
    "jumprelu": "JumpReLUSAE",
    "batchtopk": "JumpReLUSAE",
    "matryoshka": "JumpReLUSAE",
}


@pytest.mark.parametrize("architecture", ALL)
def test_saelens_loads_each_architecture_and_reconstructs_the_same(architecture, tmp_path):
    from sae_lens import SAE as LensSAE

    model = _trained(architecture)
    assert model.in_scale.item() > 2.0  # not the identity scale
    saelens_format.save_saelens(model, tmp_path, metadata={"hook_name": "blocks.0.hook_resid_pre"})
    assert {p.name for p in tmp_path.iterdir()} == {"cfg.json", "sae_weights.safetensors"}
    lens = LensSAE.load_from_disk(tmp_path)
    assert type(lens).__name__ == EXPECTED_CLASS[architecture]
    assert lens.cfg.metadata.training_architecture == architecture
    torch.manual_seed(1)
    x = (torch.randn(512, 16) * torch.linspace(0.5, 3.0, 16) + 1.5) * 7.0
    with torch.no_grad():
        ours_f, ours = model.encode(x), model(x)
        theirs_f, theirs = lens.encode(x), lens.decode(lens.encode(x))
    assert (ours_f > 0).float().sum(-1).mean() > 1  # something fires
    assert torch.equal(ours_f > 0, theirs_f > 0)
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-5)  # outputs up to ~100: float32 rounding only
    in_memory = saelens_format.to_saelens(model)
    with torch.no_grad():
        assert torch.allclose(in_memory.decode(in_memory.encode(x)), theirs)
