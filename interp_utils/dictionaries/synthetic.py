"""Ground truth at scale: SAEs trained on SAELens's synthetic activations, whose true features are known.

``sae_lens.synthetic`` generates activations as sparse, non-negative combinations of known feature directions (a
SynthSAEBench-style model: Zipfian firing probabilities, a hierarchy of parent and child features, low-rank
correlations, noisy magnitudes, a bias). This module builds a CPU-sized one, trains any of the five architectures
on it with this suite's trainer (:func:`train_suite`) or with SAELens's (:func:`train_saelens`, its own
``train_toy_sae``), and scores either with SAELens's ``eval_sae_on_synthetic_data`` (:func:`evaluate`). Notebook 04
and ``benchmarks/sae_synthetic.py`` both use it.
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
    HierarchyConfig,
    SyntheticModel,
    SyntheticModelConfig,
    ZipfianFiringProbabilityConfig,
    eval_sae_on_synthetic_data,
    train_toy_sae,
)
from sae_lens.synthetic.synthetic_model import LowRankCorrelationConfig, OrthogonalizationConfig
from sae_lens.training.sae_trainer import SAETrainer
from torch import Tensor

from interp_utils.dictionaries.sae import SAE, SAEConfig, train_sae
from interp_utils.dictionaries.saelens_format import to_saelens

Architecture = Literal["relu", "topk", "jumprelu", "batchtopk", "matryoshka"]
ARCHITECTURES: tuple[Architecture, ...] = get_args(Architecture)
# trained at L0 = k (BatchTopK and Matryoshka on average over a batch, and at inference through their threshold)
TOPK_FAMILY: tuple[Architecture, ...] = ("topk", "batchtopk", "matryoshka")
EVAL_BATCH = 5000  # evaluate draws its samples in batches of this size
METRICS = ("l0", "dead", "explained_variance", "f1", "mcc", "uniqueness", "shrinkage")


def synthetic_model(features: int = 512, dim: int = 64, seed: int = 0, ortho_steps: int = 100) -> SyntheticModel:
    """A SynthSAEBench-style generator: ``features`` true directions in ``dim`` dimensions.

    Zipfian firing probabilities (exponent 1, from 0.4 down to 0.01), a hierarchy (``max(2, features // 64)``
    trees, branching 4, depth 2, half of the parents with mutually exclusive children; SAELens raises some children's
    probabilities to make up for their parents' and clamps those that pass 1, with a warning), rank-16 correlations,
    magnitudes 1 ± 0.15, a bias, and (``ortho_steps`` > 0) the directions pushed apart before use, as SynthSAEBench
    does. SynthSAEBench-16k itself differs beyond its size: Zipf exponent 0.5, depth 3, all siblings exclusive, rank
    25, true L0 about 34. At least 64 features, so that the hierarchy has trees of its full size.
    """
    if features < 64 or dim < 2:
        raise ValueError(f"features must be at least 64 and dim at least 2 (got {features} and {dim})")
    if features <= dim:
        raise ValueError(f"features ({features}) must exceed dim ({dim}): otherwise there is no superposition")
    return SyntheticModel(
        SyntheticModelConfig(
            num_features=features,
            hidden_dim=dim,
            firing_probability=ZipfianFiringProbabilityConfig(exponent=1.0, max_prob=0.4, min_prob=0.01),
            hierarchy=HierarchyConfig(
                total_root_nodes=max(2, features // 64),
                branching_factor=4,
                max_depth=2,
                mutually_exclusive_portion=0.5,
                compensate_probabilities=True,
            ),
            correlation=LowRankCorrelationConfig(rank=16, correlation_scale=0.1, seed=seed),
            orthogonalization=OrthogonalizationConfig(num_steps=ortho_steps) if ortho_steps else None,
            std_firing_magnitudes=0.15,
            mean_firing_magnitudes=1.0,
            bias=1.0,
            seed=seed,
        )
    )


def matryoshka_prefixes(d_sae: int) -> list[int]:
    """The nested dictionary sizes both trainers use: a sixteenth, a quarter, all."""
    return [d_sae // 16, d_sae // 4, d_sae]


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
) -> Any:
    """Train this suite's ``sae`` in place on ``samples`` activations (fresh from ``synth`` unless ``data`` gives
    them); returns it as a SAELens inference SAE, ready for :func:`evaluate`."""
    _check_budget(samples, batch)
    train_sae(sae, data or sampled_batches(synth, batch), samples, batch_size=batch, lr=lr, progress=progress)
    return to_saelens(sae)


def saelens_trainer_config(samples: int, batch: int, lr: float) -> SAETrainerConfig:
    """What ``train_toy_sae`` configures: a constant learning rate, no warm-up, no evaluations or checkpoints."""
    return SAETrainerConfig(
        n_checkpoints=0,
        checkpoint_path=None,
        save_final_checkpoint=False,
        total_training_samples=samples // batch * batch,
        device="cpu",
        autocast=False,
        lr=lr,
        lr_end=lr,
        lr_scheduler_name="constant",
        lr_warm_up_steps=0,
        adam_beta1=0.9,
        adam_beta2=0.999,
        lr_decay_steps=0,
        n_restart_cycles=1,
        train_batch_size_samples=batch,
        dead_feature_window=1000,
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
) -> Any:
    """Train SAELens's ``sae`` in place with its own trainer (``train_toy_sae`` on fresh samples; with ``data``, the
    same trainer settings on those batches); returns the SAELens inference SAE it saves."""
    _check_budget(samples, batch)
    if data is None:
        train_toy_sae(sae, synth.feature_dict, synth.activation_generator, samples, batch, lr)
    else:
        SAETrainer(cfg=saelens_trainer_config(samples, batch, lr), sae=sae, data_provider=data).fit()
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
