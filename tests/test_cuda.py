"""The GPU paths: the same computations on CUDA and on the CPU agree, and a seeded run on CUDA repeats.

Skipped where CUDA is missing (CI has no GPU). On a GPU machine, ``INTERP_DEVICE=cuda pytest`` runs these with the
rest of the suite, whose shared model fixtures then live on the GPU too (conftest.py). Tolerances: float32 on a GPU
sums in another order than on a CPU (and uses TF32 nowhere here: the suite never enables it), so results agree to
about 1e-5 relative; the bounds below are 1e-4 relative, or absolute where the quantity is a difference.
"""

import pytest
import torch
from test_attribution import PROMPT, make_transcoders

from interp_utils import activations, attribution, heads, hooks, ioi, load_bundled, patching, sae, training, transcoders
from interp_utils.core.runtime import get_device

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the GPU check, issue 22)")


def close(cpu: torch.Tensor, gpu: torch.Tensor, rel: float = 1e-4) -> float:
    """The largest difference relative to the CPU result's largest magnitude; asserts it is under ``rel``."""
    cpu, gpu = cpu.detach().float().cpu(), gpu.detach().float().cpu()
    assert cpu.shape == gpu.shape
    diff = ((cpu - gpu).abs().max() / cpu.abs().max().clamp_min(1e-12)).item()
    assert diff < rel, f"CUDA and CPU differ by {diff:.2e} of the largest value (bound {rel:.0e})"
    return diff


@pytest.fixture(scope="module")
def both():
    return load_bundled(device="cpu"), load_bundled(device="cuda")


def test_get_device_prefers_cuda(monkeypatch):
    monkeypatch.delenv("INTERP_DEVICE", raising=False)
    assert get_device().type == "cuda"


def test_the_bundled_model_computes_the_same_on_cuda(both):
    cpu, gpu = both
    assert gpu.W_E.device.type == "cuda" and gpu.cfg.device.startswith("cuda")
    tokens = next(activations.token_batches(cpu, 8, n_ctx=64, seed=0))
    close(cpu(tokens), gpu(tokens))  # CPU tokens: TransformerLens moves them to the model's device
    assert abs(cpu(tokens, return_type="loss").item() - gpu(tokens, return_type="loss").item()) < 1e-4


def test_patching_sweeps_agree(both):
    results = []
    for model in both:
        batch = ioi.ioi_batch(model, ioi.make_ioi_prompts(8, ioi.single_token_names(model), templates=[0], seed=0))
        rows, end = torch.arange(len(batch)), batch.positions["end"]

        def metric(logits, batch=batch, rows=rows, end=end):
            final = logits[rows.to(logits.device), end.to(logits.device)]
            return (
                final.gather(1, batch.io[:, None].to(final.device))[:, 0]
                - final.gather(1, batch.s[:, None].to(final.device))[:, 0]
            )

        _, clean_cache = model.run_with_cache(batch.tokens)
        out = patching.patch_sweep(model, batch.corrupted, clean_cache, patching.head_patches(model), metric)
        assert out.device.type == "cpu"  # results come back on the CPU whatever the model's device
        results.append(out)
    close(*results, rel=1e-3)


def test_head_scores_agree(both):
    cpu, gpu = both
    tokens = heads.repeated_random_tokens(cpu, seq_len=20, batch=4)
    for name, score in heads.head_scores(cpu, tokens).items():
        close(score, heads.head_scores(gpu, tokens.cuda())[name])


def test_the_activation_buffer_fills_from_a_cuda_model(both):
    """The pool stays in host memory (GPU memory is left to the model and the SAE); train_sae moves each batch."""
    batches = []
    for model in both:
        torch.manual_seed(0)
        stream = activations.token_batches(model, 8, n_ctx=64, seed=0)
        buffer = activations.ActivationBuffer(
            model, hooks.name("resid_pre", 1), stream, batch_size=256, pool_tokens=1024
        )
        batches.append(next(buffer))
    assert batches[1].device.type == "cpu"
    close(*batches)


def train(device: str, seed: int = 0) -> tuple[sae.SAE, training.TrainLog]:
    torch.manual_seed(seed)
    data = torch.randn(4096, 32) @ torch.randn(32, 32)
    model = sae.SAE(sae.SAEConfig(d_in=32, d_sae=64, architecture="relu", l1_coeff=1.0)).to(device)
    batches = sae.tensor_batches(data.to(device), 256, torch.Generator().manual_seed(seed))
    return model, sae.train_sae(model, batches, 40 * 256, batch_size=256, lr=1e-3, progress=False)


def test_sae_training_on_cuda_matches_the_cpu_and_repeats():
    (cpu, _), (gpu, _), (again, _) = train("cpu"), train("cuda"), train("cuda")
    assert gpu.W_dec.device.type == "cuda"
    for name, value in cpu.state_dict().items():
        close(value, gpu.state_dict()[name], rel=1e-3)  # 40 Adam steps let the rounding differences grow a little
        close(gpu.state_dict()[name], again.state_dict()[name], rel=1e-5)  # seeded CUDA runs repeat


def test_transcoders_train_on_cuda():
    model = load_bundled(device="cuda")
    cfg = sae.SAEConfig(d_in=model.cfg.d_model, d_sae=64, architecture="topk", k=8, d_out=model.cfg.d_model)
    tcs, logs = transcoders.train_transcoders(model, [0], cfg, 4096, batch_size=512, progress=False)
    assert tcs[0].W_enc.device.type == "cuda" and logs[0].tokens >= 4096


def test_attribution_graphs_agree(both):
    graphs = []
    for model in both:
        tcs = {layer: tc.to(model.cfg.device) for layer, tc in make_transcoders(model).items()}
        graphs.append(attribution.attribute(model, tcs, PROMPT, batch_size=64, progress=False))
    cpu, gpu = graphs
    assert cpu.n_features == gpu.n_features and cpu.adjacency.device.type == gpu.adjacency.device.type == "cpu"
    close(cpu.adjacency, gpu.adjacency, rel=1e-3)


def test_circuit_tracer_on_cuda_matches_ours(both):
    from interp_utils.tracing import circuit_tracer_interop as interop

    model = both[1]
    tcs = {layer: tc.to("cuda") for layer, tc in make_transcoders(model).items()}
    ours = attribution.attribute(model, tcs, PROMPT, batch_size=64, progress=False)
    theirs = interop.attribute(interop.to_circuit_tracer(model, tcs), model.to_tokens(PROMPT)[0], batch_size=64)
    close(ours.adjacency, theirs.adjacency_matrix, rel=1e-3)


def test_cross_layer_transcoders_train_and_attribute_on_cuda(both):
    from test_clt import make_clt

    from interp_utils.dictionaries.clt import CLTConfig, train_clt

    cpu_model, gpu_model = both
    cfg = CLTConfig(n_layers=gpu_model.cfg.n_layers, d_model=gpu_model.cfg.d_model, d_sae=64, k=8)
    trained, log = train_clt(gpu_model, cfg, 4096, batch_size=512, pool_tokens=2048, progress=False)
    assert trained.W_enc.device.type == "cuda" and log.tokens >= 4096
    clt = make_clt(cpu_model)
    cpu = attribution.attribute(cpu_model, clt, PROMPT, batch_size=64, progress=False)
    gpu = attribution.attribute(gpu_model, clt.to("cuda"), PROMPT, batch_size=64, progress=False)
    assert cpu.n_features == gpu.n_features
    close(cpu.adjacency, gpu.adjacency, rel=1e-3)
