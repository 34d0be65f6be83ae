"""Benchmark: five SAE architectures against ground truth, trained by this suite and by SAELens, on synthetic data.

SAELens's synthetic generator (``sae_lens.synthetic``) makes activations whose true features are known: here 2,048
features in 128 dimensions (a CPU-sized SynthSAEBench, which has 16,384 in 768), with Zipfian firing probabilities,
a hierarchy (32 trees of depth 2, half of the parents with mutually exclusive children), low-rank correlations, an
orthogonalised dictionary (not with --fast), noisy magnitudes and a bias. Each architecture (relu, topk, jumprelu,
batchtopk, matryoshka) is trained by ``interp_utils.dictionaries.sae.train_sae`` and by SAELens's ``SAETrainer``
with the settings of ``sae_lens.synthetic.train_toy_sae``, on the same stream of samples (drawn once beforehand, so
that only training is timed; ``--fresh`` draws them during training instead, SAELens through ``train_toy_sae``
itself), with the same width, batch, learning rate and k (the target L0) for the TopK family; the L1 and L0
coefficients of relu and jumprelu, in each trainer's own units, are flags: the defaults gave L0 30 to 105 at
``--fast`` on this machine, not yet 25 (a short run's L0 moves steeply and unevenly with them). Every SAE is then
measured as a SAELens inference SAE (ours through ``interp_utils.dictionaries.saelens_format.to_saelens``, SAELens's
through ``save_inference_model`` and ``SAE.load_from_disk``) by ``sae_lens.synthetic.eval_sae_on_synthetic_data``:
L0, dead latents, explained variance, F1 of latents as feature detectors, MCC and uniqueness of the decoder against
the true features, and shrinkage.

    python benchmarks/sae_synthetic.py --fast            # 150k samples per SAE: ~15 minutes on two busy CPU cores
    python benchmarks/sae_synthetic.py                   # 2M samples per SAE
    python benchmarks/sae_synthetic.py --fast --only relu jumprelu --l1 3 --l1-lens 0.8
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import torch
from sae_lens import (
    SAE,
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

from interp_utils.dictionaries import sae
from interp_utils.dictionaries.saelens_format import to_saelens

ARCHITECTURES = ("relu", "topk", "jumprelu", "batchtopk", "matryoshka")


def synthetic_model(args: argparse.Namespace) -> SyntheticModel:
    n = args.features
    return SyntheticModel(
        SyntheticModelConfig(
            num_features=n,
            hidden_dim=args.dim,
            firing_probability=ZipfianFiringProbabilityConfig(exponent=1.0, max_prob=0.4, min_prob=0.01),
            hierarchy=HierarchyConfig(
                total_root_nodes=max(2, n // 64),
                branching_factor=4,
                max_depth=2,
                mutually_exclusive_portion=0.5,
                compensate_probabilities=True,
            ),
            correlation=LowRankCorrelationConfig(rank=16, correlation_scale=0.1, seed=args.seed),
            orthogonalization=OrthogonalizationConfig(num_steps=args.ortho_steps) if args.ortho_steps else None,
            std_firing_magnitudes=0.15,
            mean_firing_magnitudes=1.0,
            bias=1.0,
            seed=args.seed,
        )
    )


def prefixes(d_sae: int) -> list[int]:
    return [d_sae // 16, d_sae // 4, d_sae]


def ours(architecture: str, args: argparse.Namespace) -> sae.SAE:
    settings: dict[str, Any] = {
        "relu": {"l1_coeff": args.l1, "recipe": "april2024"},  # SAELens's standard SAE weights L1 by decoder norms
        "jumprelu": {"l0_coeff": args.l0_coeff, "init_threshold": args.init_threshold},
        "matryoshka": {"k": args.k, "prefixes": tuple(prefixes(args.d_sae))},
    }.get(architecture, {"k": args.k})
    return sae.SAE(sae.SAEConfig(d_in=args.dim, d_sae=args.d_sae, architecture=architecture, **settings))


def theirs(architecture: str, args: argparse.Namespace) -> Any:
    size = {"d_in": args.dim, "d_sae": args.d_sae}
    if architecture == "relu":
        return StandardTrainingSAE(StandardTrainingSAEConfig(**size, l1_coefficient=args.l1_lens))
    if architecture == "topk":
        return TopKTrainingSAE(TopKTrainingSAEConfig(**size, k=args.k))
    if architecture == "jumprelu":
        return JumpReLUTrainingSAE(
            JumpReLUTrainingSAEConfig(
                **size, l0_coefficient=args.l0_coeff_lens, jumprelu_init_threshold=args.init_threshold_lens
            )
        )
    if architecture == "batchtopk":
        return BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(**size, k=args.k))
    return MatryoshkaBatchTopKTrainingSAE(
        MatryoshkaBatchTopKTrainingSAEConfig(**size, k=args.k, matryoshka_widths=prefixes(args.d_sae))
    )


def pool_batches(pool: torch.Tensor, batch: int) -> Iterator[torch.Tensor]:
    """The drawn samples in order, batch after batch (both trainers see the same stream)."""
    for i in range(0, len(pool) - batch + 1, batch):
        yield pool[i : i + batch]


def lens_trainer_config(args: argparse.Namespace) -> SAETrainerConfig:
    """What ``train_toy_sae`` configures: constant learning rate, no warm-up, no evals or checkpoints."""
    return SAETrainerConfig(
        n_checkpoints=0,
        checkpoint_path=None,
        save_final_checkpoint=False,
        total_training_samples=args.samples // args.batch * args.batch,
        device="cpu",
        autocast=False,
        lr=args.lr,
        lr_end=args.lr,
        lr_scheduler_name="constant",
        lr_warm_up_steps=0,
        adam_beta1=0.9,
        adam_beta2=0.999,
        lr_decay_steps=0,
        n_restart_cycles=1,
        train_batch_size_samples=args.batch,
        dead_feature_window=1000,
        feature_sampling_window=2000,
        logger=LoggingConfig(log_to_wandb=False, eval_every_n_wandb_logs=2**31 - 1),
        n_batches_for_norm_estimate=1000,
    )


def train(trainer: str, model: Any, synth: SyntheticModel, pool: torch.Tensor | None, args: argparse.Namespace) -> Any:
    """Train in place; returns the SAELens inference SAE to evaluate."""
    if trainer == "ours":
        data = pool_batches(pool, args.batch) if pool is not None else iter(lambda: synth.sample(args.batch), None)
        sae.train_sae(model, data, args.samples, batch_size=args.batch, lr=args.lr, progress=False)
        return to_saelens(model)
    if pool is None:
        train_toy_sae(model, synth.feature_dict, synth.activation_generator, args.samples, args.batch, args.lr)
    else:
        SAETrainer(cfg=lens_trainer_config(args), sae=model, data_provider=pool_batches(pool, args.batch)).fit()
    with tempfile.TemporaryDirectory() as folder:
        model.save_inference_model(folder)
        return SAE.load_from_disk(folder)


def row(name: str, result: Any, seconds: float) -> str:
    c = result.classification
    return (
        f"{name:<22}{result.sae_l0:>7.1f}{result.dead_latents:>6d}{result.explained_variance:>8.3f}{c.f1_score:>7.3f}"
        f"{result.mcc:>7.3f}{result.uniqueness:>7.3f}{result.shrinkage:>8.3f}{seconds:>9.1f}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="150k samples per SAE, 10k to evaluate, no orthogonalising")
    parser.add_argument("--samples", type=int, default=None, help="training samples per SAE (default 2M; fast 150k)")
    parser.add_argument("--eval-samples", type=int, default=None, help="default 100k; fast 10k")
    parser.add_argument("--features", type=int, default=2048, help="true features of the synthetic model")
    parser.add_argument("--dim", type=int, default=128, help="its hidden dimension")
    parser.add_argument("--d-sae", type=int, default=None, help="SAE width (default: the number of features)")
    parser.add_argument("--k", type=int, default=25, help="the target L0: k of topk, batchtopk and matryoshka")
    parser.add_argument("--l1", type=float, default=5.25, help="our relu's L1 coefficient (inputs scaled inside)")
    parser.add_argument("--l1-lens", type=float, default=1.08, help="SAELens's relu's L1 coefficient (raw inputs)")
    parser.add_argument("--l0-coeff", type=float, default=3.0, help="our jumprelu's L0 coefficient")
    parser.add_argument("--l0-coeff-lens", type=float, default=0.5, help="SAELens's jumprelu's L0 coefficient")
    # a threshold moves about lr per Adam step, so in a short run the L0 depends on where it starts as much as on
    # the L0 coefficient; ours are in units where E||x|| = sqrt(d), about 2.5 times the raw ones here
    parser.add_argument("--init-threshold", type=float, default=0.5, help="our jumprelu's initial thresholds")
    parser.add_argument("--init-threshold-lens", type=float, default=0.2, help="SAELens's jumprelu's (raw units)")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=3e-3, help="both trainers (short budgets favour a high one)")
    parser.add_argument("--ortho-steps", type=int, default=None, help="orthogonalising the true features (default 100)")
    parser.add_argument("--only", nargs="+", choices=ARCHITECTURES, default=list(ARCHITECTURES))
    parser.add_argument("--trainers", nargs="+", choices=("ours", "saelens"), default=["ours", "saelens"])
    parser.add_argument("--fresh", action="store_true", help="draw samples during training (SAELens: train_toy_sae)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.samples = args.samples or (150_000 if args.fast else 2_000_000)
    args.eval_samples = args.eval_samples or (10_000 if args.fast else 100_000)
    args.ortho_steps = (0 if args.fast else 100) if args.ortho_steps is None else args.ortho_steps
    args.d_sae = args.d_sae or args.features

    start = time.perf_counter()
    synth = synthetic_model(args)
    torch.manual_seed(args.seed)
    pool = None if args.fresh else torch.cat([synth.sample(args.batch) for _ in range(args.samples // args.batch)])
    print(
        f"synthetic model: {args.features} features in {args.dim} dimensions, built and {args.samples:,} samples "
        f"drawn in {time.perf_counter() - start:.1f}s; SAEs of {args.d_sae} latents, batch {args.batch}, "
        f"lr {args.lr}, {torch.get_num_threads()} CPU threads"
    )
    header = f"{'architecture / trainer':<22}{'L0':>7}{'dead':>6}{'EV':>8}{'F1':>7}{'MCC':>7}{'uniq':>7}{'shrink':>8}"
    print(f"{header}{'train s':>9}   (EV: explained variance)")
    for architecture in args.only:
        for trainer in args.trainers:
            # not the synthetic model's seed: FeatureDictionary draws the true features with torch.randn under it,
            # as our SAE draws its decoder, which would then start at the answer
            torch.manual_seed(args.seed + 12345)
            model = ours(architecture, args) if trainer == "ours" else theirs(architecture, args)
            begin = time.perf_counter()
            lens = train(trainer, model, synth, pool, args)
            seconds = time.perf_counter() - begin
            torch.manual_seed(args.seed + 1)  # every SAE measured on the same samples
            result = eval_sae_on_synthetic_data(
                lens, synth.feature_dict, synth.activation_generator, args.eval_samples, batch_size=5000
            )
            print(row(f"{architecture} / {trainer}", result, seconds), flush=True)
    print(f"true L0 {result.true_l0:.1f}; total {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
