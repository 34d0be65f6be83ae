"""Benchmark: SAE training throughput of interp_utils.dictionaries.sae.train_sae against SAELens's SAETrainer.

Both train each of the five architectures (TopK; ReLU + L1, SAELens's "standard"; JumpReLU; BatchTopK; Matryoshka
BatchTopK) with the same width, k (or L1 / L0 coefficient), batch size, learning rate, gradient clip (SAELens's, norm 1
in the model's units) and number of tokens, from the same tensor of the bundled model's residual-stream activations,
on this machine. Activations are collected once beforehand, so only training is timed. Prints tokens per second for
each, their ratio, and each SAE's L0 and explained variance on held-out activations (measured by the same code) so
that a faster trainer is not a worse one.

    python benchmarks/sae_training.py                    # 2M tokens, 1024 latents
    python benchmarks/sae_training.py --tokens 500000 --d-sae 4096
    python benchmarks/sae_training.py --only jumprelu batchtopk matryoshka
"""

from __future__ import annotations

import argparse

import torch
from sae_lens import SAETrainer
from sae_lens.config import SAETrainerConfig

from interp_utils import activations, hooks, load_bundled, sae, sae_metrics
from interp_utils.core.runtime import benchmark_device, timed
from interp_utils.dictionaries import synthetic

ARCHITECTURES: tuple[synthetic.Architecture, ...] = ("topk", "relu", "jumprelu", "batchtopk", "matryoshka")


def batches(data: torch.Tensor, batch_size: int, seed: int):
    """Shuffled minibatches in the same order for both trainers."""
    return sae.tensor_batches(data, batch_size, torch.Generator().manual_seed(seed))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=2_000_000)
    parser.add_argument("--d-sae", type=int, default=1024)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--l1", type=float, default=2.0, help="L1 coefficient of the suite's ReLU SAE")
    parser.add_argument("--l0", type=float, default=1.0, help="L0 coefficient of both JumpReLU SAEs (own units)")
    parser.add_argument("--init-threshold", type=float, default=0.5, help="JumpReLU's initial thresholds (both)")
    parser.add_argument(
        "--only", nargs="+", choices=ARCHITECTURES, default=list(ARCHITECTURES), help="architectures to train"
    )
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--activations", type=int, default=2**18, help="activations collected to train on")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = load_bundled(device=args.device)
    hook = hooks.name("resid_pre", 2)
    stream = activations.token_batches(model, 32, seed=0)
    buffer = activations.ActivationBuffer(model, hook, stream, batch_size=args.batch, pool_tokens=2**16)
    data, held_out = buffer.take(args.activations), buffer.take(2**14)
    d_in = model.cfg.d_model
    print(
        f"{len(data):,} training activations ({d_in}-d), {args.tokens:,} tokens per SAE, {args.d_sae} latents, "
        f"batch {args.batch}, lr {args.lr}, {benchmark_device(args.device)}"
    )

    steps = args.tokens // args.batch
    lens_trainer = SAETrainerConfig(  # as train_sae: Adam, the learning rate decaying over the last 20% of steps
        total_training_samples=args.tokens,
        train_batch_size_samples=args.batch,
        lr=args.lr,
        lr_end=args.lr / 10,  # SAELens's own default; its runner sets it, the trainer expects it set
        lr_decay_steps=steps // 5,
        device=args.device,
    )
    # architecture -> (its name, the suite's SAEConfig options); SAELens's training SAE of the same architecture is
    # synthetic.saelens_sae with the same numbers. SAELens's L1 coefficient multiplies the decoder-norm-weighted L1 in
    # model units, and JumpReLU's coefficient and thresholds are likewise each trainer's own units (the suite's inputs
    # are scaled to E||x|| = sqrt(d)), so the same number means different sparsity: throughput is compared at equal
    # width and batch, and L0 is printed to show how far apart the sparsity ended up. Matryoshka's prefixes are
    # d_sae/16, d_sae/4 and d_sae in both.
    setups = {
        "topk": ("TopK", dict(k=args.k)),
        "relu": ("ReLU + L1", dict(l1_coeff=args.l1)),
        "jumprelu": ("JumpReLU", dict(l0_coeff=args.l0, init_threshold=args.init_threshold)),
        "batchtopk": ("BatchTopK", dict(k=args.k)),
        "matryoshka": ("Matryoshka", dict(k=args.k, prefixes=tuple(synthetic.matryoshka_prefixes(args.d_sae)))),
    }
    pairs = {}
    for architecture in ARCHITECTURES:
        if architecture in args.only:
            name, options = setups[architecture]
            config = sae.SAEConfig(d_in=d_in, d_sae=args.d_sae, architecture=architecture, **options)
            ours = sae.SAE(config, device=args.device)  # first: both draw their initial weights from one generator
            lens = synthetic.saelens_sae(
                architecture, d_in, args.d_sae, args.k, args.l1, args.l0, args.init_threshold, device=args.device
            )
            pairs[name] = (ours, lens)
    rows = []
    for name, (ours, theirs) in pairs.items():
        _, ours_s = timed(
            lambda ours=ours: sae.train_sae(
                ours,
                batches(data, args.batch, 0),
                args.tokens,
                batch_size=args.batch,
                lr=args.lr,
                progress=False,
                max_grad_norm=synthetic.SAELENS_MAX_GRAD_NORM,  # SAELens's trainer always clips: ours too, here
            ),
            args.device,
        )
        trainer = SAETrainer(cfg=lens_trainer, sae=theirs, data_provider=batches(data, args.batch, 0))
        _, theirs_s = timed(trainer.fit, args.device)
        theirs.eval()
        for who, model_sae, seconds in (("interp_utils", ours, ours_s), ("SAELens", theirs, theirs_s)):
            with torch.no_grad():
                result = sae_metrics.evaluate_sae(model_sae, held_out)
            rows.append((name, who, seconds, args.tokens / seconds, result["l0"], result["explained_variance"]))
        print(
            f"{name}: interp_utils {ours_s:.1f} s, SAELens {theirs_s:.1f} s; ratio {theirs_s / ours_s:.2f}x "
            "(SAELens time / ours)"
        )
    print("\n| SAE | trainer | seconds | tokens/s | L0 | explained variance |\n|---|---|---|---|---|---|")
    for name, who, seconds, rate, l0, ev in rows:
        print(f"| {name} | {who} | {seconds:.1f} | {rate:,.0f} | {l0:.1f} | {ev:.3f} |")


if __name__ == "__main__":
    main()
