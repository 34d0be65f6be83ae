"""Train, evaluate and describe the bundled small GPT-2 (``python -m interp_utils.models.bundled train``).

The model is a GPT-2-architecture transformer (LayerNorm, GELU MLPs, learned positions) trained
on the generated corpus of :mod:`interp_utils.data.corpus`. ``evaluate`` measures what the notebooks
rely on: induction heads on repeated random tokens and IOI behaviour on held-out names/templates.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformers import PreTrainedTokenizerFast

from interp_utils.circuits.heads import induction_scores
from interp_utils.core.loading import BUNDLED_DIR, load_bundled
from interp_utils.core.runtime import set_seed
from interp_utils.data import corpus
from interp_utils.data.ioi import make_ioi_prompts, prompt_logit_diffs
from interp_utils.models.bundled_attempts import ATTEMPTS, attempt_row, attempts_table, record_attempt
from interp_utils.models.bundled_card import write_folder_card

ARCH: dict[str, Any] = dict(n_layers=4, d_model=128, n_heads=4, d_head=32, d_mlp=512, n_ctx=128)
TRAIN: dict[str, Any] = dict(steps=4500, batch_size=32, lr=2e-3, warmup=200, weight_decay=0.1, seed=0)
# Levers of issue 35's attempts (the shipped model: all at these defaults): the unembedding tied to the embedding as
# GPT-2's is, and the size (0: ARCH's); each attempt is one `train` command with its settings
LEVERS: dict[str, Any] = dict(tied=False, n_layers=0, n_heads=0, extra_names=0, own_templates=False)


def architecture(n_layers: int = 0, n_heads: int = 0) -> dict[str, Any]:
    """ARCH with the layer and head counts overridden (0 keeps ARCH's); heads split d_model evenly."""
    arch = dict(ARCH)
    if n_layers < 0 or n_heads < 0:
        raise ValueError(f"n_layers and n_heads must be positive, or 0 for the default (got {n_layers}, {n_heads})")
    if n_layers:
        arch["n_layers"] = n_layers
    if n_heads:
        if arch["d_model"] % n_heads:
            raise ValueError(f"n_heads ({n_heads}) must divide d_model ({arch['d_model']})")
        arch["n_heads"], arch["d_head"] = n_heads, arch["d_model"] // n_heads
    return arch


def make_config(d_vocab: int, seed: int = 0, arch: dict[str, Any] | None = None) -> HookedTransformerConfig:
    """The bundled model's TransformerLens config: GPT-2's architecture at a small size."""
    return HookedTransformerConfig(
        **(arch or ARCH),
        d_vocab=d_vocab,
        act_fn="gelu_new",
        normalization_type="LN",
        positional_embedding_type="standard",
        default_prepend_bos=True,
        model_name="interp-mini-gpt2",
        seed=seed,
        device="cpu",
    )


def train(
    out: Path,
    steps: int,
    batch_size: int,
    lr: float,
    warmup: int,
    weight_decay: float,
    seed: int,
    tied: bool = False,
    n_layers: int = 0,
    n_heads: int = 0,
    extra_names: int = 0,
    own_templates: bool = False,
) -> dict:
    """Train from scratch on the generated corpus, save to ``out`` and return the training record. ``tied``: the
    unembedding is the embedding's transpose throughout (their gradients summed, as one matrix), as in GPT-2.
    ``extra_names``: that many made-up names join the IOI stories' cast (and the vocabulary). ``own_templates``: the
    IOI stories use ``corpus.STORY_TEMPLATES`` instead of the paper's, all 15 of which are then held out."""
    set_seed(seed)
    tokenizer = corpus.build_tokenizer(extra_names)
    arch = architecture(n_layers, n_heads)
    cfg = make_config(len(tokenizer), seed, arch)
    model = HookedTransformer(cfg, tokenizer=tokenizer)
    W_E, W_U = model.embed.W_E, model.unembed.W_U
    if tied:
        with torch.no_grad():
            W_U.copy_(W_E.T)
    # weight decay on matrices only (not biases, LayerNorm gains or the position table), as in nanoGPT
    decays = {n: p.ndim >= 2 and "W_pos" not in n for n, p in model.named_parameters()}
    decay = [p for n, p in model.named_parameters() if decays[n]]
    no_decay = [p for n, p in model.named_parameters() if not decays[n]]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.95),
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0)))
    )
    batches = corpus.tokenizer_batches(tokenizer, batch_size, cfg.n_ctx, seed, extra_names, own_templates)
    start, losses = time.time(), []
    bar = tqdm(range(steps), desc="training bundled model")
    for step in bar:
        loss = model(next(batches), return_type="loss")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tied:  # one matrix used twice: its gradient is the sum, stepped once through W_E
            assert W_E.grad is not None and W_U.grad is not None
            W_E.grad += W_U.grad.T
            W_U.grad = None  # AdamW skips a parameter without a gradient
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if tied:
            with torch.no_grad():
                W_U.copy_(W_E.T)
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.3f}")
    seconds = time.time() - start
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "model.safetensors")
    tokenizer.save_pretrained(str(out))
    record = {
        "steps": steps,
        "batch_size": batch_size,
        "tokens_seen": steps * batch_size * cfg.n_ctx,
        "lr": lr,
        "warmup": warmup,
        "weight_decay": weight_decay,
        "seed": seed,
        "tied": tied,
        "extra_names": extra_names,
        "own_templates": own_templates,
        "train_seconds": round(seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "final_train_loss": round(sum(losses[-100:]) / len(losses[-100:]), 4),
    }
    config = {"hooked_transformer_config": {**arch, **_cfg_extra(cfg)}, "training": record}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return record


def _cfg_extra(cfg: HookedTransformerConfig) -> dict:
    """The config fields beyond :data:`ARCH` that loading needs."""
    keys = ["d_vocab", "act_fn", "normalization_type", "positional_embedding_type", "default_prepend_bos", "model_name"]
    return {k: getattr(cfg, k) for k in keys}


@torch.inference_mode()
def evaluate(model: HookedTransformer, n_prompts: int = 400, seed: int = 123, own_templates: bool = False) -> dict:
    """Held-out loss, induction scores and IOI logit differences of a bundled model; ``own_templates``: it was trained
    on ``corpus.STORY_TEMPLATES`` (``train --own-templates``), so all of the paper's templates are held out."""
    tokenizer = model.tokenizer
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise ValueError("evaluate measures a bundled model: load one with load_bundled(), which has its tokenizer.")
    held = next(corpus.tokenizer_batches(tokenizer, 64, model.cfg.n_ctx, 10_000 + seed, own_templates=own_templates))
    loss = model(held.to(model.cfg.device), return_type="loss").item()
    scores, chance = induction_scores(model, seq_len=40, batch=32, seed=seed)
    best = divmod(int(scores.argmax()), model.cfg.n_heads)
    result = {
        "heldout_loss": round(loss, 4),
        "induction_score_best_head": round(scores.max().item(), 4),
        "induction_best_head": f"{best[0]}.{best[1]}",
        "induction_chance": round(chance, 4),
        "induction_scores": [[round(x, 3) for x in row] for row in scores.tolist()],
    }
    names = {"train_names": corpus.TRAIN_NAMES, "heldout_names": corpus.HELD_OUT_NAMES}
    # an own-templates model's training templates are corpus.STORY_TEMPLATES, and all of the paper's are held out
    held_templates = list(range(len(corpus.BABA_TEMPLATES))) if own_templates else corpus.HELD_OUT_TEMPLATES
    measured = {}
    for name_split, name_list in names.items():
        for template_split in ("train_templates", "heldout_templates"):
            if template_split == "heldout_templates":
                prompts = make_ioi_prompts(n_prompts, name_list, held_templates, seed=seed)
            elif own_templates:
                prompts = corpus.story_prompts(n_prompts, name_list, seed=seed)
            else:
                prompts = make_ioi_prompts(n_prompts, name_list, corpus.TRAIN_TEMPLATES, seed=seed)
            diffs = prompt_logit_diffs(model, prompts)
            measured[f"ioi_{name_split}_{template_split}"] = (prompts, diffs)
            result[f"ioi_{name_split}_{template_split}"] = {
                "mean_logit_diff": round(diffs.mean().item(), 3),
                "std_logit_diff": round(diffs.std().item(), 3),
                "fraction_io_beats_s": round((diffs > 0).float().mean().item(), 4),
            }
    # the held-out names x held-out templates prompts, broken down by template
    prompts, diffs = measured["ioi_heldout_names_heldout_templates"]
    template_of = torch.tensor([p.template for p in prompts])
    result["ioi_heldout_names_by_heldout_template"] = {
        str(t): round(diffs[template_of == t].mean().item(), 3) for t in held_templates
    }
    result["ioi_circuit"] = ioi_circuit(model, seed=seed, templates=held_templates if own_templates else None)
    return result


@torch.inference_mode()
def ioi_circuit(
    model: HookedTransformer, n_prompts: int = 120, seed: int = 123, templates: list[int] | None = None
) -> dict:
    """Who writes the IOI answer on notebook 03's distribution (held-out names, training templates; or ``templates``
    of the paper's): the direct shares of attention and MLPs, the heads whose direct paths carry it (path patching
    to the logits), and notebook 03's head classes (``ioi_circuit.head_classes``). Where no carrier attends END -> IO
    more than -> S2 there are no name movers; the three strongest carriers the rules take in their place are listed
    as "name mover stand-ins"."""
    from interp_utils.circuits import dla
    from interp_utils.circuits import ioi_circuit as rules
    from interp_utils.data import ioi

    prompts = ioi.make_ioi_prompts(n_prompts, ioi.default_names(model), templates, seed=seed) if templates else None
    batch = ioi.ioi_batch(model, prompts or ioi.default_prompts(model, n_prompts, seed=seed), seed=seed + 1)
    runs = rules.run_ioi(model, batch)
    clean, clean_cache = runs.clean, runs.clean_cache
    layers = dla.layer_direct_effects(model, clean_cache, batch)
    to_logits = rules.path_sweep(model, batch.tokens, clean_cache, runs.corrupt_cache, runs.change)
    end_io, end_s2 = (rules.mean_attention(clean_cache, batch, "end", src) for src in ("IO", "S2"))
    carriers, movers = rules.name_movers(to_logits, end_io, end_s2)
    found = rules.head_classes(runs, to_logits=to_logits)  # the sweep to the logits, not computed twice
    classes = {cls: [f"{layer}.{h}" for layer, h in heads] for cls, heads in found.items()}
    if not any(end_io[h] > end_s2[h] for h in movers):  # no carrier prefers IO: the rules' stand-ins, named as such
        movers, classes["name mover stand-ins"], classes["name mover"] = [], classes["name mover"], []
    return {
        "attention_share": round(sum(v for k, v in layers.items() if k.startswith("attn")) / clean, 3),
        "mlp_share": round(sum(v for k, v in layers.items() if k.startswith("mlp")) / clean, 3),
        "carriers": {f"{layer}.{head}": round(to_logits[layer, head].item(), 3) for layer, head in carriers},
        "name_movers": [f"{layer}.{head}" for layer, head in movers],
        "attends_end_to_s2": [
            f"{layer}.{head}" for layer, head in carriers if end_s2[layer, head] >= end_io[layer, head]
        ],
        "classes": classes,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train from scratch, evaluate, and write weights and model card")
    ev = sub.add_parser("evaluate", help="measure a saved model")
    at = sub.add_parser("attempt", help="add a trained attempt (its folder) to the shipped model's attempts table")
    at.add_argument("folder", type=Path, help="the attempt's folder, written by train --out FOLDER")
    at.add_argument("--lever", required=True, help="what the attempt changed, in a few words")
    for p in (tr, ev, at):
        p.add_argument("--out", type=Path, default=BUNDLED_DIR, help="model folder (default: data/bundled-gpt2)")
    for key, value in TRAIN.items():
        tr.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    tr.add_argument("--tied", action="store_true", help="tie the unembedding to the embedding (W_U = W_E^T), as GPT-2")
    tr.add_argument("--n-layers", type=int, default=0, help=f"layers (default {ARCH['n_layers']})")
    tr.add_argument("--n-heads", type=int, default=0, help=f"heads per layer (default {ARCH['n_heads']})")
    tr.add_argument("--extra-names", type=int, default=0, help="made-up names added to the IOI stories' cast")
    tr.add_argument(
        "--own-templates", action="store_true", help="IOI stories in corpus.STORY_TEMPLATES; the paper's 15 held out"
    )
    args = parser.parse_args(argv)
    if args.command == "attempt":
        if not (args.folder / "metrics.json").exists():
            raise SystemExit(f"{args.folder} has no metrics.json: train it first (train --out {args.folder}).")
        rows = json.loads((args.out / ATTEMPTS).read_text()) if (args.out / ATTEMPTS).exists() else []
        rows = record_attempt(rows, attempt_row(args.folder, args.lever))
        (args.out / ATTEMPTS).write_text(json.dumps(rows, indent=2))
        write_folder_card(args.out, json.loads((args.out / "metrics.json").read_text()))
        print(attempts_table(args.out))
        return
    if args.command == "train":
        train(args.out, **{k: getattr(args, k) for k in {**TRAIN, **LEVERS}})  # its record goes into config.json
    model = load_bundled(args.out)
    own = json.loads((args.out / "config.json").read_text())["training"].get("own_templates", False)
    metrics = evaluate(model, own_templates=own)
    metrics["d_vocab"] = model.cfg.d_vocab
    # the trained weights as saved, without the attention masks (loading folds the LayerNorms' weights away)
    saved = load_file(args.out / "model.safetensors")
    metrics["n_params"] = sum(t.numel() for k, t in saved.items() if not k.endswith((".mask", ".IGNORE")))
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_folder_card(args.out, metrics)
    print(json.dumps({k: v for k, v in metrics.items() if k != "induction_scores"}, indent=2))


if __name__ == "__main__":
    main()
