"""Benchmark: interp_utils.circuits.patching.patch_sweep against TransformerLens's patching module.

Both patch clean activations into a corrupted IOI run, for the residual stream at every (layer, position)
and for every head's output at all positions, on the same model, prompts and machine. Prints seconds
for each, the speed-up and the largest difference between their results.

    python benchmarks/patching.py                 # the bundled model
    python benchmarks/patching.py --gpt2-size     # a randomly initialised model of GPT-2 small's shape
"""

from __future__ import annotations

import argparse

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens import patching as tl_patching

from interp_utils import corpus, load_bundled, patching
from interp_utils.core.runtime import benchmark_device, timed
from interp_utils.data.ioi import ioi_batch, make_ioi_prompts, single_token_names


@torch.no_grad()
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=40)
    parser.add_argument("--gpt2-size", action="store_true", help="GPT-2 small's shape, random weights")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    model = load_bundled(device=args.device)
    names = single_token_names(model, corpus.HELD_OUT_NAMES)
    # one template, so every prompt has the same length and TransformerLens's per-position sweep applies
    batch = ioi_batch(model, make_ioi_prompts(args.prompts, names, templates=[0], seed=0))
    if args.gpt2_size:
        cfg = dict(n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, n_ctx=1024, act_fn="gelu_new")
        model = HookedTransformer(HookedTransformerConfig(**cfg, d_vocab=model.cfg.d_vocab, seed=0, device=args.device))
    rows, end = torch.arange(len(batch)).to(args.device), batch.positions["end"].to(args.device)
    io, s = batch.io.to(args.device), batch.s.to(args.device)

    def logit_diff(logits: torch.Tensor) -> torch.Tensor:
        final = logits[rows, end]
        return final.gather(1, io[:, None])[:, 0] - final.gather(1, s[:, None])[:, 0]

    _, clean_cache = model.run_with_cache(batch.tokens)
    seq = batch.tokens.shape[1]
    positions = {str(p): torch.full((len(batch),), p) for p in range(seq)}
    sweeps = {
        "residual stream, every layer x position": (
            lambda: tl_patching.get_act_patch_resid_pre(
                model, batch.corrupted, clean_cache, lambda lg: logit_diff(lg).mean()
            ),
            patching.resid_patches(model, list(positions)),
        ),
        "every head's output, all positions": (
            lambda: tl_patching.get_act_patch_attn_head_out_all_pos(
                model, batch.corrupted, clean_cache, lambda lg: logit_diff(lg).mean()
            ),
            patching.head_patches(model),
        ),
    }
    name = "GPT-2-small-shaped (random weights)" if args.gpt2_size else model.cfg.model_name
    print(f"model: {name}; {len(batch)} prompts of {seq} tokens; {benchmark_device(args.device)}")
    for label, (reference, patches) in sweeps.items():
        expected, t_tl = timed(reference, args.device)
        ours, t_ours = timed(
            lambda patches=patches: patching.patch_sweep(
                model, batch.corrupted, clean_cache, patches, logit_diff, positions
            ),
            args.device,
        )
        diff = (ours.reshape(expected.shape) - expected.cpu()).abs().max().item()
        print(
            f"{label}: {len(patches)} patches. TransformerLens {t_tl:.2f} s, batched {t_ours:.2f} s "
            f"({t_tl / t_ours:.1f}x); largest difference {diff:.2e}"
        )


if __name__ == "__main__":
    main()
