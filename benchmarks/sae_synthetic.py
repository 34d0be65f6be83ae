"""Benchmark: five SAE architectures against ground truth, trained by this suite and by SAELens, on synthetic data.

SAELens's synthetic generator (``sae_lens.synthetic``) makes activations whose true features are known: by default
SynthSAEBench-16k's generator scaled down eight times, as notebook 04 uses it (2,048 features in 96 dimensions, SAEs of
a quarter as many latents, k = the true L0 of their most frequent features), built by
``interp_utils.dictionaries.synthetic.synthetic_model`` (its docstring lists the settings; not orthogonalised with
--fast). Each architecture (relu, topk, jumprelu, batchtopk, matryoshka) is trained by
``interp_utils.dictionaries.sae.train_sae`` and by SAELens's ``SAETrainer`` with the settings of
``sae_lens.synthetic.train_toy_sae``, on the same stream of samples (drawn once beforehand, so that only training is
timed; ``--fresh`` draws them during training instead, SAELens through ``train_toy_sae`` itself), with the same width,
batch, learning rate, gradient clip (SAELens's, always on in its trainer) and k for the TopK family; the L1 and L0
coefficients of relu and jumprelu, in each trainer's own units, are flags (a short run's L0 moves steeply with them;
notebook 04 steers them to k with ``interp_utils.dictionaries.l0_target.L0Target`` and gives SAELens the converted
values instead). Every SAE is then measured as a SAELens inference SAE (ours through
``interp_utils.dictionaries.saelens_format.to_saelens``, SAELens's through ``save_inference_model`` and
``SAE.load_from_disk``) by ``sae_lens.synthetic.eval_sae_on_synthetic_data``: L0, dead latents, explained variance, F1
of latents as feature detectors, MCC and uniqueness of the decoder against the true features, and shrinkage.

    python benchmarks/sae_synthetic.py --fast            # 150k samples per SAE
    python benchmarks/sae_synthetic.py                   # 2M samples per SAE
    python benchmarks/sae_synthetic.py --fast --only relu jumprelu --l1 3 --l1-lens 0.8
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from sae_lens.synthetic import SyntheticModel

from interp_utils.dictionaries import synthetic as synth_lib

ARCHITECTURES = synth_lib.ARCHITECTURES


def ours(architecture: synth_lib.Architecture, args: argparse.Namespace) -> Any:
    return synth_lib.suite_sae(architecture, args.dim, args.d_sae, args.k, args.l1, args.l0_coeff, args.init_threshold)


def theirs(architecture: synth_lib.Architecture, args: argparse.Namespace) -> Any:
    return synth_lib.saelens_sae(
        architecture, args.dim, args.d_sae, args.k, args.l1_lens, args.l0_coeff_lens, args.init_threshold_lens
    )


def train(trainer: str, model: Any, synth: SyntheticModel, pool: torch.Tensor | None, args: argparse.Namespace) -> Any:
    """Train in place; returns the SAELens inference SAE to evaluate."""
    data = synth_lib.pool_batches(pool, args.batch, seed=args.seed) if pool is not None else None
    if trainer == "ours":
        clip = synth_lib.SAELENS_MAX_GRAD_NORM  # SAELens's trainer always clips at it: so does ours here
        return synth_lib.train_suite(model, synth, args.samples, args.batch, args.lr, data, max_grad_norm=clip)
    return synth_lib.train_saelens(model, synth, args.samples, args.batch, args.lr, data)


def row(name: str, r: dict[str, float], seconds: float) -> str:
    return (
        f"{name:<22}{r['l0']:>7.1f}{int(r['dead']):>6d}{r['explained_variance']:>8.3f}{r['f1']:>7.3f}"
        f"{r['mcc']:>7.3f}{r['uniqueness']:>7.3f}{r['shrinkage']:>8.3f}{seconds:>9.1f}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="150k samples per SAE, 10k to evaluate, no orthogonalising")
    parser.add_argument("--samples", type=int, default=None, help="training samples per SAE (default 2M; fast 150k)")
    parser.add_argument("--eval-samples", type=int, default=None, help="default 100k; fast 10k")
    parser.add_argument("--features", type=int, default=2048, help="true features of the synthetic model")
    parser.add_argument("--dim", type=int, default=96, help="its hidden dimension")
    parser.add_argument("--d-sae", type=int, default=None, help="SAE width (default: a quarter of the features)")
    parser.add_argument(
        "--k",
        type=int,
        default=None,
        help="k of topk, batchtopk and matryoshka (default: the true L0 "
        "of the d-sae most frequent features, as SynthSAEBench)",
    )
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
    args.d_sae = args.d_sae or max(1, args.features // 4)

    start = time.perf_counter()
    synth = synth_lib.synthetic_model(args.features, args.dim, args.seed, args.ortho_steps)
    args.k = args.k or max(1, round(synth_lib.width_l0(synth, args.d_sae, args.eval_samples, seed=args.seed + 1)))
    pool = None if args.fresh else synth_lib.sample_pool(synth, args.samples, seed=args.seed)
    print(
        f"synthetic model: {args.features} features in {args.dim} dimensions, built and {args.samples:,} samples "
        f"drawn in {time.perf_counter() - start:.1f}s; SAEs of {args.d_sae} latents, k {args.k}, batch {args.batch}, "
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
            result = synth_lib.evaluate(lens, synth, args.eval_samples, seed=args.seed + 1)  # the same samples for all
            print(row(f"{architecture} / {trainer}", result, seconds), flush=True)
    print(f"true L0 {result['true_l0']:.1f}; total {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
