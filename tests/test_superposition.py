import pytest
import torch

from interp_utils import superposition as sp


def test_shapes_and_bad_input():
    model = sp.ToyModel(sp.ToyConfig(n_features=6, n_hidden=2, n_instances=3), feature_probability=0.5)
    x = model.generate_batch(16)
    assert x.shape == (16, 3, 6) and model(x).shape == (16, 3, 6)
    with pytest.raises(ValueError, match="features must be"):
        model(torch.rand(16, 3, 5))


def test_sparsity_of_generated_features():
    model = sp.ToyModel(sp.ToyConfig(n_features=50, n_instances=2), feature_probability=torch.tensor([[1.0], [0.1]]))
    x = model.generate_batch(2000)
    present = (x > 0).float().mean(dim=(0, 2))
    assert present[0] > 0.99 and abs(present[1] - 0.1) < 0.01


def test_training_finds_two_orthogonal_features_when_dense():
    torch.manual_seed(0)
    model = sp.ToyModel(sp.ToyConfig(n_features=5, n_hidden=2, n_instances=1), 1.0, 0.9 ** torch.arange(5.0))
    losses = sp.train_toy_model(model, steps=3000, lr=1e-2, batch_size=512, progress=False)
    assert losses[-1] < losses[0]
    norms = sp.feature_norms(model.W.detach())[0]
    assert (norms > 0.5).sum() == 2 and norms[:2].min() > 0.5  # the two most important features
    assert sp.dimensions_per_feature(model.W.detach())[0] == pytest.approx(1.0, abs=0.1)


def test_the_linear_model_keeps_m_features_at_any_sparsity_and_the_relu_model_does_not():
    """Notebook 01's sanity row (a linear model keeps the m most important features, PCA) and the control it gives the
    ReLU rows: on the same sparse data, the ReLU model represents more features than it has dimensions."""
    density = torch.tensor([[1.0], [0.02]])
    represented = {}
    for relu in (False, True):
        torch.manual_seed(0)
        cfg = sp.ToyConfig(n_features=8, n_hidden=3, n_instances=2, relu=relu)
        model = sp.ToyModel(cfg, density, 0.8 ** torch.arange(8.0))
        sp.train_toy_model(model, steps=1500, lr=1e-2, batch_size=512, progress=False)
        represented[relu] = sp.feature_norms(model.W.detach()) > 0.5
    assert represented[False].sum(-1).tolist() == [3, 3] and represented[False][:, :3].all()
    assert represented[True][0].sum() == 3 and represented[True][1].sum() > 3
