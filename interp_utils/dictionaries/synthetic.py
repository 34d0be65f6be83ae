"""Ground truth at scale: SAEs trained on SAELens's synthetic activations, whose true features are known.

``sae_lens.synthetic`` generates activations as sparse, non-negative combinations of known feature directions.
This module builds SynthSAEBench-16k's generator at a CPU's size (:func:`synthetic_model`: Zipfian firing, a deep
hierarchy of mutually exclusive children, low-rank correlations, noisy magnitudes, a bias), draws a pool of samples
once (:func:`sample_pool`), trains any of the five architectures on it with this suite's trainer
(:func:`train_suite`; ReLU and JumpReLU steered to a target L0 by ``l0_target.L0Target``, as SynthSAEBench does)
or with SAELens's (:func:`train_saelens`, with :func:`saelens_like` giving it the same settings in its own units),
and scores either with SAELens's ``eval_sae_on_synthetic_data`` (:func:`evaluate`). Notebook 04 and
``benchmarks/sae_synthetic.py`` both use it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import Any, Literal, get_args

import torch
from sae_lens import (
    SAE as LensSAE,
)
from sae_lens import (
    BatchTopKTrainingSAE,
    BatchTopKTrainingSAEConfig,
    JumpReLUTrainingSAE,
    JumpReLUTrainingSAEConfig,
    MatryoshkaBatchTopKTrainingSAE,
    MatryoshkaBatchTopKTrainingSAEConfig,
    StandardTrainingSAE,
    StandardTrainingSAEConfig,
    TopKTrainingSAE,
    TopKTrainingSAEConfig,
)
from sae_lens.config import LoggingConfig, SAETrainerConfig
from sae_lens.synthetic import (
    FoldedNormalMagnitudeConfig,
    HierarchyConfig,
    LinearMagnitudeConfig,
    SyntheticModel,
    SyntheticModelConfig,
    ZipfianFiringProbabilityConfig,
    eval_sae_on_synthetic_data,
    train_toy_sae,
)
from sae_lens.synthetic.synthetic_model import LowRankCorrelationConfig, OrthogonalizationConfig
from sae_lens.training.sae_trainer import SAETrainer
from torch import Tensor
from tqdm.auto import tqdm

from interp_utils.dictionaries.l0_target import L0Target
from interp_utils.dictionaries.sae import SAE, SAEConfig, train_sae
from interp_utils.dictionaries.saelens_format import to_saelens

Architecture = Literal["relu", "topk", "jumprelu", "batchtopk", "matryoshka"]
ARCHITECTURES: tuple[Architecture, ...] = get_args(Architecture)
# trained at L0 = k (BatchTopK and Matryoshka on average over a batch, and at inference through their threshold)
TOPK_FAMILY: tuple[Architecture, ...] = ("topk", "batchtopk", "matryoshka")
EVAL_BATCH = 5000  # evaluate draws its samples in batches of this size
METRICS = ("l0", "dead", "explained_variance", "f1", "mcc", "uniqueness", "shrinkage")


SYNTHSAEBENCH_FEATURES = 16_384  # SynthSAEBench-16k's true features (its trees scale with them)
SAELENS_DEAD_WINDOW = 1000  # steps: SAELens's dead_feature_window, as train_toy_sae sets it
SAELENS_MAX_GRAD_NORM = 1.0  # SAELens's SAETrainer clips the gradient's norm at this (fixed in its code)


def synthetic_model(
    features: int = 2048, dim: int = 96, seed: int = 0, ortho_steps: int = 100, hierarchy: bool = True
) -> SyntheticModel:
    """SynthSAEBench-16k's generator, scaled down: ``features`` true directions in ``dim`` dimensions.

    Every setting is SynthSAEBench-16k's (``decoderesearch/synth-sae-bench-experiments``, ``common.py``) but the
    sizes: Zipfian firing probabilities (exponent 0.5, from 0.4 down to 5e-4), a hierarchy of ``features * 128 //
    16384`` trees (at least one), branching 4, depth 3, every parent's children mutually exclusive, probabilities
    compensated for the gating and children scaled by their parent's activation, rank-25 correlations (scale 0.1),
    mean magnitudes from 5 (frequent) to 4 (rare) with folded-normal spread, a bias of 0.5, and (``ortho_steps`` > 0)
    the directions pushed apart before use. The defaults keep its ratio of features to dimensions (2,048 / 96 = 21.3;
    16,384 / 768 = 21.3). With fewer features the Zipfian tail is shorter, so the true L0 is smaller than its 34.
    ``hierarchy=False`` leaves the trees out (every feature fires on its own; a control for what the hierarchy does).
    """
    if features < 128 or dim < 2:
        raise ValueError(f"features must be at least 128 (one tree) and dim at least 2 (got {features} and {dim})")
    if features <= dim:
        raise ValueError(f"features ({features}) must exceed dim ({dim}): otherwise there is no superposition")
    return SyntheticModel(
        SyntheticModelConfig(
            num_features=features,
            hidden_dim=dim,
            firing_probability=ZipfianFiringProbabilityConfig(exponent=0.5, max_prob=0.4, min_prob=5e-4),
            hierarchy=None
            if not hierarchy
            else HierarchyConfig(
                total_root_nodes=max(1, features * 128 // SYNTHSAEBENCH_FEATURES),
                branching_factor=4,
                max_depth=3,
                mutually_exclusive_portion=1.0,
                mutually_exclusive_min_depth=0,
                compensate_probabilities=True,
                scale_children_by_parent=True,
            ),
            correlation=LowRankCorrelationConfig(rank=25, correlation_scale=0.1, seed=seed),
            orthogonalization=OrthogonalizationConfig(num_steps=ortho_steps, lr=3e-4) if ortho_steps else None,
            mean_firing_magnitudes=LinearMagnitudeConfig(start=5.0, end=4.0),
            std_firing_magnitudes=FoldedNormalMagnitudeConfig(mean=0.5, std=0.5),
            bias=0.5,
            seed=seed,
        )
    )


def matryoshka_prefixes(d_sae: int) -> list[int]:
    """The nested dictionary sizes both trainers use: SynthSAEBench's 128, 512, 2,048 and 4,096 of its 4,096
    latents, as fractions (1/32, 1/8, 1/2, all)."""
    return [max(1, d_sae // 32), max(1, d_sae // 8), max(1, d_sae // 2), d_sae]


@torch.no_grad()
def width_l0(synth: SyntheticModel, width: int, samples: int = 20_000, seed: int = 1) -> float:
    """The true L0 of the generator's ``width`` most frequently firing features: what an SAE of that width can
    hope to represent, and SynthSAEBench's k (25 for the 4,096 most frequent of SynthSAEBench-16k's features)."""
    if not 1 <= width <= synth.feature_dict.feature_vectors.shape[0]:
        raise ValueError(f"width must be between 1 and the number of features (got {width})")
    feats, _ = _evaluation_samples(synth, samples, seed)
    rates = (feats > 0).float().mean(0)
    return rates.sort(descending=True).values[:width].sum().item()


def sample_pool(synth: SyntheticModel, samples: int, seed: int = 0, progress: bool = False) -> Tensor:
    """``samples`` activations drawn once (generating is the slow part on a CPU: every SAE then trains on the same
    ones; SynthSAEBench draws fresh samples for every step)."""
    if samples < 1:
        raise ValueError(f"samples must be positive (got {samples})")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        chunks = range(0, samples, EVAL_BATCH)
        return torch.cat([synth.sample(min(EVAL_BATCH, samples - i)) for i in tqdm(chunks, disable=not progress)])


def pool_batches(pool: Tensor, batch: int, seed: int = 0) -> Iterator[Tensor]:
    """Batches from the pool, reshuffled each pass, without end (the same order for every SAE given ``seed``)."""
    _check_budget(len(pool), batch)
    g = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(pool), generator=g)
        for i in range(0, len(pool) - batch + 1, batch):
            yield pool[order[i : i + batch]]


def _architecture(architecture: str) -> Architecture:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}: use one of {', '.join(ARCHITECTURES)}")
    return architecture


def suite_sae(
    architecture: Architecture,
    d_in: int,
    d_sae: int,
    k: int = 25,
    l1: float = 5.25,
    l0_coeff: float = 3.0,
    init_threshold: float = 0.5,
) -> SAE:
    """This suite's SAE. ``l1`` (relu, SAELens's norm-weighted penalty: the April 2024 recipe) and ``l0_coeff`` and
    ``init_threshold`` (jumprelu) are in this suite's units, where inputs are scaled to E||x|| = sqrt(d_in)."""
    arch = _architecture(architecture)
    by_architecture: dict[str, dict[str, Any]] = {
        "relu": {"l1_coeff": l1, "recipe": "april2024"},
        "jumprelu": {"l0_coeff": l0_coeff, "init_threshold": init_threshold},
        "matryoshka": {"k": k, "prefixes": tuple(matryoshka_prefixes(d_sae))},
    }
    settings = by_architecture.get(arch, {"k": k})
    return SAE(SAEConfig(d_in=d_in, d_sae=d_sae, architecture=arch, **settings))


def saelens_sae(
    architecture: Architecture,
    d_in: int,
    d_sae: int,
    k: int = 25,
    l1: float = 1.08,
    l0_coeff: float = 0.5,
    init_threshold: float = 0.2,
    device: str = "cpu",
) -> Any:
    """SAELens's training SAE of the same architecture; ``l1``, ``l0_coeff``, ``init_threshold`` in its units (raw
    inputs). Also what ``benchmarks/sae_training.py`` times against this suite's trainer."""
    arch = _architecture(architecture)
    size = {"d_in": d_in, "d_sae": d_sae, "device": device}
    if arch == "relu":
        return StandardTrainingSAE(StandardTrainingSAEConfig(**size, l1_coefficient=l1))
    if arch == "topk":
        return TopKTrainingSAE(TopKTrainingSAEConfig(**size, k=k))
    if arch == "jumprelu":
        cfg = JumpReLUTrainingSAEConfig(**size, l0_coefficient=l0_coeff, jumprelu_init_threshold=init_threshold)
        return JumpReLUTrainingSAE(cfg)
    if arch == "batchtopk":
        return BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(**size, k=k))
    cfg_m = MatryoshkaBatchTopKTrainingSAEConfig(**size, k=k, matryoshka_widths=matryoshka_prefixes(d_sae))
    return MatryoshkaBatchTopKTrainingSAE(cfg_m)


def _check_budget(samples: int, batch: int) -> None:
    if batch < 1 or samples < batch:
        raise ValueError(f"need samples >= batch >= 1 (got samples={samples}, batch={batch}): train on more samples")


def sampled_batches(synth: SyntheticModel, batch: int) -> Iterator[Tensor]:
    """Fresh samples from the generator, batch after batch, without end."""
    while True:
        yield synth.sample(batch)


def train_suite(
    sae: SAE,
    synth: SyntheticModel,
    samples: int,
    batch: int = 1024,
    lr: float = 3e-3,
    data: Iterator[Tensor] | None = None,
    progress: bool = False,
    control: L0Target | None = None,
    max_grad_norm: float | None = None,
) -> Any:
    """Train this suite's ``sae`` in place on ``samples`` activations (fresh from ``synth`` unless ``data`` gives
    them; ``control`` steers a ReLU or JumpReLU SAE's coefficient to its target L0); returns it as a SAELens
    inference SAE, ready for :func:`evaluate`. ``max_grad_norm`` clips the gradient's norm as SAELens's trainer
    does (at 1, ``SAELENS_MAX_GRAD_NORM``), measured in its units (raw inputs: ``train_sae`` converts)."""
    _check_budget(samples, batch)
    data = data or sampled_batches(synth, batch)
    train_sae(sae, data, samples, batch, lr, progress=progress, step_fn=control, max_grad_norm=max_grad_norm)
    return to_saelens(sae)


def dead_window(sae: SAE, samples: int, batch: int) -> int:
    """SAELens's ``dead_feature_window`` for the rule this suite's trainer uses: ``train_sae`` calls a latent dead once
    it has not fired for ``min(cfg.dead_tokens, samples // 4)`` samples, i.e. after ``ceil(that / batch)`` steps;
    SAELens once it has not fired for more than ``dead_feature_window`` steps (its default is 1,000)."""
    window = min(sae.cfg.dead_tokens, samples // 4)
    return max(1, -(-window // batch) - 1)


def saelens_like(suite: SAE, steps: int, control: L0Target | None = None, warmup: float = 0.05) -> Any:
    """SAELens's training SAE with the settings of a trained ``suite`` SAE, converted to raw inputs (this suite divides
    inputs by ``in_scale``, SAELens does not): the same width, k and prefixes; for relu the L1 coefficient (x
    ``control.scale`` if it was steered) times ``in_scale``; for jumprelu the L0 coefficient times ``in_scale**2`` and
    the initial threshold and bandwidth times ``in_scale`` (pre-activations with unit-norm decoder rows in raw units are
    ``in_scale`` times this suite's); the coefficient warmed up over the same share of the ``steps``. Trained on the
    same data with :func:`train_saelens` (same schedule, same dead window), the two optimise the same loss up to the
    factor ``in_scale**2`` while no latent is dead (and clip the gradient at the same norm in raw units if
    :func:`train_suite` is given ``SAELENS_MAX_GRAD_NORM``); what still differs is each trainer's own: SAELens starts
    ``b_dec`` at zero (this suite at the data's geometric median), leaves its decoder rows free (this suite holds them
    at unit norm but for relu, and measures the clipped norm once the gradient along them is removed), weights the AuxK
    loss by 1 times the dead latents' share of ``d_in / 2`` (up to 1; this suite by ``aux_coeff``, Gao et al.'s 1/32),
    and takes Adam's steps in its own units. A steered coefficient is fixed at its final value here."""
    cfg, s = suite.cfg, suite.in_scale.item()
    scale = control.scale if control is not None else 1.0
    device = str(suite.W_dec.device)
    size: dict[str, Any] = {"d_in": cfg.d_in, "d_sae": cfg.d_sae, "device": device}
    if cfg.architecture == "relu":
        c = cfg.l1_coeff * scale * s
        return StandardTrainingSAE(
            StandardTrainingSAEConfig(**size, l1_coefficient=c, l1_warm_up_steps=int(warmup * steps))
        )
    if cfg.architecture == "jumprelu":
        return JumpReLUTrainingSAE(
            JumpReLUTrainingSAEConfig(
                **size,
                l0_coefficient=cfg.l0_coeff * scale * s**2,
                jumprelu_init_threshold=cfg.init_threshold * s,
                jumprelu_bandwidth=cfg.bandwidth * s,
                l0_warm_up_steps=int(warmup * steps),
            )
        )
    return saelens_sae(cfg.architecture, cfg.d_in, cfg.d_sae, k=cfg.k, device=device)


def saelens_trainer_config(
    samples: int, batch: int, lr: float, lr_decay: float = 0.0, dead_window: int = SAELENS_DEAD_WINDOW
) -> SAETrainerConfig:
    """What ``train_toy_sae`` configures (a constant learning rate, no warm-up, no evaluations or checkpoints,
    latents dead after 1,000 steps); ``lr_decay`` > 0 adds this suite's schedule (linear to 0 over that last share
    of training) and ``dead_window`` sets the steps after which a latent counts as dead."""
    steps = samples // batch
    return SAETrainerConfig(
        n_checkpoints=0,
        checkpoint_path=None,
        save_final_checkpoint=False,
        total_training_samples=steps * batch,
        device="cpu",
        autocast=False,
        lr=lr,
        lr_end=lr,
        lr_scheduler_name="constant",
        lr_warm_up_steps=0,
        adam_beta1=0.9,
        adam_beta2=0.999,
        lr_decay_steps=int(lr_decay * steps),
        n_restart_cycles=1,
        train_batch_size_samples=batch,
        dead_feature_window=dead_window,
        feature_sampling_window=2000,
        logger=LoggingConfig(log_to_wandb=False, eval_every_n_wandb_logs=2**31 - 1),
        n_batches_for_norm_estimate=1000,
    )


def train_saelens(
    sae: Any,
    synth: SyntheticModel,
    samples: int,
    batch: int = 1024,
    lr: float = 3e-3,
    data: Iterator[Tensor] | None = None,
    lr_decay: float = 0.0,
    dead_window: int = SAELENS_DEAD_WINDOW,
) -> Any:
    """Train SAELens's ``sae`` in place with its own trainer: ``train_toy_sae`` on fresh samples with its own
    settings, else :func:`saelens_trainer_config`'s on ``data`` (or fresh samples); returns the SAELens inference
    SAE it saves."""
    _check_budget(samples, batch)
    if data is None and lr_decay == 0.0 and dead_window == SAELENS_DEAD_WINDOW:
        train_toy_sae(sae, synth.feature_dict, synth.activation_generator, samples, batch, lr)
    else:
        cfg = saelens_trainer_config(samples, batch, lr, lr_decay, dead_window)
        SAETrainer(cfg=cfg, sae=sae, data_provider=data or sampled_batches(synth, batch)).fit()
    with tempfile.TemporaryDirectory() as folder:
        sae.save_inference_model(folder)
        return LensSAE.load_from_disk(folder)


def evaluate(sae: Any, synth: SyntheticModel, samples: int = 100_000, seed: int = 1) -> dict[str, float]:
    """SAELens's ``eval_sae_on_synthetic_data`` on ``samples`` fresh activations (the same ones for every SAE given
    the same ``seed``): L0, dead latents, explained variance, F1 of each latent as a detector of its best-matching
    true feature (averaged over latents), MCC (mean |cosine| of a one-to-one matching of decoder rows to true
    features), uniqueness, shrinkage; and the generator's true L0."""
    if samples < 1:
        raise ValueError(f"samples must be positive (got {samples})")
    with torch.random.fork_rng():  # the caller's random state is left as it was
        torch.manual_seed(seed)
        r = eval_sae_on_synthetic_data(
            sae, synth.feature_dict, synth.activation_generator, samples, batch_size=EVAL_BATCH
        )
    return {
        "l0": r.sae_l0,
        "dead": float(r.dead_latents),
        "explained_variance": r.explained_variance,
        "f1": r.classification.f1_score,
        "mcc": r.mcc,
        "uniqueness": r.uniqueness,
        "shrinkage": r.shrinkage,
        "true_l0": r.true_l0,
    }


def _evaluation_samples(synth: SyntheticModel, samples: int, seed: int) -> tuple[Tensor, Tensor]:
    """The true feature activations and hidden activations :func:`evaluate` draws with this ``seed``."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        feats = [synth.activation_generator.sample(min(EVAL_BATCH, samples - i)) for i in range(0, samples, EVAL_BATCH)]
    f = torch.cat(feats)
    return f, synth.feature_dict(f)


@torch.no_grad()
def true_l0(synth: SyntheticModel, samples: int = 20_000, seed: int = 1) -> float:
    """The generator's mean number of true features active per sample."""
    if samples < 1:
        raise ValueError(f"samples must be positive (got {samples})")
    feats, _ = _evaluation_samples(synth, samples, seed)
    return (feats > 0).sum(-1).float().mean().item()


@torch.no_grad()
def silent_latents(sae: SAE, synth: SyntheticModel, samples: int = 100_000, seed: int = 1) -> tuple[int, int]:
    """For a BatchTopK or Matryoshka SAE of this suite: how many latents never fire at inference (through the single
    threshold) and how many never win a place in the batch-level selection used in training, on the samples
    :func:`evaluate` draws with the same ``seed`` (the first count is its "dead")."""
    if not sae.cfg.batch_topk:
        raise ValueError(f"silent_latents compares BatchTopK's two selections; this SAE is {sae.cfg.architecture}")
    _, x = _evaluation_samples(synth, samples, seed)
    pre = torch.cat([sae.pre_acts(b) for b in x.split(EVAL_BATCH)])
    at_inference = (sae.activate(pre) > 0).any(0)
    in_training = torch.cat([sae.train_acts(p) for p in pre.split(EVAL_BATCH)]).gt(0).any(0)
    return int((~at_inference).sum()), int((~in_training).sum())
