"""Benchmark: attribution-graph time of interp_utils.tracing.attribution.attribute against circuit-tracer's attribute.

Both build the full (unpruned) graph of the same prompts on the bundled model with the same transcoders, per-layer
and cross-layer (trained briefly here, so that feature counts are realistic), on this machine. Prints seconds per
graph for each (the best of ``--repeats``), the speed-up (circuit-tracer's time over ours), the graph's size, and the
largest difference between the two adjacency matrices, so that a faster one is not a different one.

    python benchmarks/attribution.py                          # prompts of 16, 32, 64 and 128 tokens, both kinds
    python benchmarks/attribution.py --lengths 128 --kinds clt --train-tokens 400000
"""

from __future__ import annotations

import argparse
import random

import torch

from interp_utils import attribution, ioi, load_bundled, transcoders
from interp_utils.core.runtime import benchmark_device, timed
from interp_utils.dictionaries.clt import CLTConfig, train_clt
from interp_utils.dictionaries.sae import SAEConfig
from interp_utils.tracing import circuit_tracer_interop as interop


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--kinds", nargs="+", choices=["per-layer", "clt"], default=["per-layer", "clt"])
    parser.add_argument("--train-tokens", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pool-tokens", type=int, default=2**17, help="activations in each transcoder's buffer")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    model = load_bundled(device=args.device)
    d = model.cfg.d_model
    cfg = SAEConfig(d_in=d, d_sae=8 * d, architecture="topk", k=16, d_out=d)
    trained = {}
    if "per-layer" in args.kinds:
        trained["per-layer"], _ = transcoders.train_transcoders(
            model,
            range(model.cfg.n_layers),
            cfg,
            args.train_tokens,
            batch_size=512,
            pool_tokens=args.pool_tokens,
            lr=1e-3,
            progress=False,
        )
    if "clt" in args.kinds:
        clt_cfg = CLTConfig(n_layers=model.cfg.n_layers, d_model=d, d_sae=8 * d, k=16)
        trained["clt"], _ = train_clt(model, clt_cfg, args.train_tokens, pool_tokens=args.pool_tokens, progress=False)
    names = ioi.single_token_names(model)
    print(f"device: {benchmark_device(args.device)}")
    header = f"{'kind':>9} {'tokens':>6} {'features':>8} {'ours (s)':>9} {'circuit-tracer (s)':>18} {'speed-up':>8}"
    print(header + f" {'max |Δ edge|':>12}")
    for kind, tcs in trained.items():
        ct_model = interop.to_circuit_tracer(model, tcs)
        rng = random.Random(0)
        for length in args.lengths:
            tokens = model.to_tokens("".join(" " + rng.choice(names) for _ in range(length - 1)))[0]
            runs = {
                "ours": lambda t=tokens, tcs=tcs: attribution.attribute(
                    model, tcs, t, batch_size=args.batch_size, progress=False
                ),
                "theirs": lambda t=tokens, m=ct_model: interop.attribute(m, t, batch_size=args.batch_size),
            }
            results, seconds = {}, {}
            for name, fn in runs.items():
                times = []
                for _ in range(args.repeats):
                    results[name], seconds_taken = timed(fn, args.device)
                    times.append(seconds_taken)
                seconds[name] = min(times)
            diff = interop.compare(results["ours"], results["theirs"]).edge_diff
            print(
                f"{kind:>9} {length:>6} {results['ours'].n_features:>8} {seconds['ours']:>9.2f} "
                f"{seconds['theirs']:>18.2f} {seconds['theirs'] / seconds['ours']:>7.2f}x {diff:>12.1e}"
            )
        del ct_model


if __name__ == "__main__":
    main()
