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
from interp_utils.models.bundled_attempts import ATTEMPTS, attempt_row, attempts_table, attention_writers

ARCH: dict[str, Any] = dict(n_layers=4, d_model=128, n_heads=4, d_head=32, d_mlp=512, n_ctx=128)
TRAIN: dict[str, Any] = dict(steps=4500, batch_size=32, lr=2e-3, warmup=200, weight_decay=0.1, seed=0)
# Levers of issue 35's attempts (the shipped model: all at these defaults): the unembedding tied to the embedding as
# GPT-2's is, and the size (0: ARCH's); each attempt is one `train` command with its settings
LEVERS: dict[str, Any] = dict(tied=False, n_layers=0, n_heads=0, extra_names=0)


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
) -> dict:
    """Train from scratch on the generated corpus, save to ``out`` and return the training record. ``tied``: the
    unembedding is the embedding's transpose throughout (their gradients summed, as one matrix), as in GPT-2.
    ``extra_names``: that many made-up names join the IOI stories' cast (and the vocabulary)."""
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
    batches = corpus.tokenizer_batches(tokenizer, batch_size, cfg.n_ctx, seed=seed, n_extra_names=extra_names)
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
def evaluate(model: HookedTransformer, n_prompts: int = 400, seed: int = 123) -> dict:
    """Held-out loss, induction scores and IOI logit differences of a bundled model."""
    tokenizer = model.tokenizer
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise ValueError("evaluate measures a bundled model: load one with load_bundled(), which has its tokenizer.")
    held = next(corpus.tokenizer_batches(tokenizer, 64, model.cfg.n_ctx, seed=10_000 + seed))
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
    templates = {"train_templates": corpus.TRAIN_TEMPLATES, "heldout_templates": corpus.HELD_OUT_TEMPLATES}
    measured = {}
    for name_split, name_list in names.items():
        for template_split, template_list in templates.items():
            prompts = make_ioi_prompts(n_prompts, name_list, template_list, seed=seed)
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
        str(t): round(diffs[template_of == t].mean().item(), 3) for t in corpus.HELD_OUT_TEMPLATES
    }
    result["ioi_circuit"] = ioi_circuit(model, seed=seed)
    return result


@torch.inference_mode()
def ioi_circuit(model: HookedTransformer, n_prompts: int = 120, seed: int = 123) -> dict:
    """Who writes the IOI answer on notebook 03's distribution (held-out names, training templates): the direct
    shares of attention and MLPs, and the heads whose direct paths carry it (path patching to the logits)."""
    from interp_utils.circuits import dla
    from interp_utils.circuits import ioi_circuit as rules
    from interp_utils.data import ioi

    batch = ioi.ioi_batch(model, ioi.default_prompts(model, n_prompts, seed=seed), seed=seed + 1)
    runs = rules.run_ioi(model, batch)
    clean, clean_cache = runs.clean, runs.clean_cache
    layers = dla.layer_direct_effects(model, clean_cache, batch)
    to_logits = rules.path_sweep(model, batch.tokens, clean_cache, runs.corrupt_cache, runs.change)
    end_io, end_s2 = (rules.mean_attention(clean_cache, batch, "end", src) for src in ("IO", "S2"))
    carriers, movers = rules.name_movers(to_logits, end_io, end_s2)
    return {
        "attention_share": round(sum(v for k, v in layers.items() if k.startswith("attn")) / clean, 3),
        "mlp_share": round(sum(v for k, v in layers.items() if k.startswith("mlp")) / clean, 3),
        "carriers": {f"{layer}.{head}": round(to_logits[layer, head].item(), 3) for layer, head in carriers},
        "name_movers": [f"{layer}.{head}" for layer, head in movers],
        "attends_end_to_s2": [
            f"{layer}.{head}" for layer, head in carriers if end_s2[layer, head] >= end_io[layer, head]
        ],
    }


def write_card(path: Path, record: dict, metrics: dict, arch: dict[str, Any] | None = None) -> None:
    """The model card: architecture (``arch``, default ARCH), corpus, training and measured behaviour."""
    arch = arch or ARCH
    mix = corpus.MIX
    induction = (
        f"{metrics['induction_score_best_head']} (head {metrics['induction_best_head']}; "
        f"uniform-attention chance {metrics['induction_chance']})"
    )

    circuit = metrics["ioi_circuit"]
    attn_share = f"{circuit['attention_share']:.1%}".replace("-0.0%", "0.0%")
    writers = (
        "here MLPs do, after the heads have moved the information"
        if circuit["mlp_share"] > circuit["attention_share"]
        else "here, too, attention writes more of it than the MLPs"
    )
    carriers = ", ".join(f"{head} ({value:+.2f})" for head, value in circuit["carriers"].items())
    name_movers = ", ".join(circuit["name_movers"]) or "none"
    s_attenders = ", ".join(circuit["attends_end_to_s2"]) or "none"
    by_template = ", ".join(f"{v} (template {t})" for t, v in metrics["ioi_heldout_names_by_heldout_template"].items())
    ioi_rows = "\n".join(
        f"| IOI mean logit diff, {label} | {d['mean_logit_diff']} (IO beats S in {d['fraction_io_beats_s']:.1%}) |"
        for label, d in (
            ("held-out names and held-out templates", metrics["ioi_heldout_names_heldout_templates"]),
            ("held-out names, training templates", metrics["ioi_heldout_names_train_templates"]),
            ("training names, held-out templates", metrics["ioi_train_names_heldout_templates"]),
            ("training names and templates", metrics["ioi_train_names_train_templates"]),
        )
    )

    table = attempts_table(path.parent)
    attempts = (
        "## Attempts at an IOI circuit in attention heads (issue 35)\n"
        "Models trained by `python -m interp_utils.models.bundled train --out FOLDER` with the levers in the settings "
        "column (`--tied`, `--extra-names N`, `--n-layers`, `--n-heads`; this model: the first row), each measured by "
        "the same `evaluate`: IOI on held-out names and templates, the attention and MLP shares and the name movers on "
        "notebook 03's distribution, as above. Issue 35's first target, attention writing at least half of the direct "
        f"logit difference, is met by: {', '.join(attention_writers(path.parent)) or 'none of them'}.\n\n"
        + table
        + "\n\n"
        if table
        else ""
    )
    tying = "unembedding tied to the embedding, as GPT-2's" if record.get("tied") else "untied unembedding"
    text = f"""# interp-mini-gpt2: the bundled model

A GPT-2-architecture transformer small enough to run every notebook on a laptop CPU. It is what the
notebooks use when GPT-2 small cannot be downloaded, and CI checks real findings on it.
Written by `python -m interp_utils.models.bundled train` (this card included); all numbers measured.

## Architecture
GPT-2 block structure (pre-LayerNorm, GELU MLPs, learned absolute positions, {tying}):
{arch["n_layers"]} layers, d_model {arch["d_model"]}, {arch["n_heads"]} heads of d_head {arch["d_head"]},
d_mlp {arch["d_mlp"]}, context {arch["n_ctx"]}, vocabulary {metrics["d_vocab"]} words,
{metrics["n_params"]:,} parameters. Weights in `model.safetensors` (TransformerLens layout), config in
`config.json`, word-level tokenizer in `tokenizer.json` (`<|endoftext|>` is BOS/EOS/pad; every name is
one token, with or without a leading space).

## Corpus
Generated on the fly by `interp_utils.data.corpus` (seeded): {mix["ioi"]:.0%} IOI stories from the templates of
Wang et al. (2022) in BABA and ABBA order ({corpus.ROLE_NOUN_SHARE:.0%} of them with nouns instead of
names in the two roles, so that the rule is not tied to particular names), {mix["plain"]:.0%} simple
English-like sentences from a small grammar, {mix["random_repeat"]:.0%} random word spans repeated after a
random-length prefix, and {mix["sentence_repeat"]:.0%} repeated sentences. IOI templates
{corpus.HELD_OUT_TEMPLATES} and every fifth name ({len(corpus.HELD_OUT_NAMES)} names) never occur in the IOI
stories (the names do occur in plain sentences); they are held out for evaluation.

## Training
{record["steps"]} steps of {record["batch_size"]} x {arch["n_ctx"]} tokens ({record["tokens_seen"]:,} tokens),
AdamW (lr {record["lr"]}, {record["warmup"]} warm-up steps, cosine decay, weight decay {record["weight_decay"]}), seed
{record["seed"]}. Wall time **{record["train_seconds"] / 60:.1f} minutes** on {record["torch_threads"]} CPU threads
(2-core machine). Final training loss {record["final_train_loss"]}, held-out loss {metrics["heldout_loss"]}.

## Measured behaviour
| property | measured |
|---|---|
| best induction score (repeated random tokens, 40 + 40) | {induction} |
{ioi_rows}

With held-out names, the mean logit difference on each held-out template separately is
{by_template}:
the model generalises to some unseen templates much better than to others.

For comparison, Wang et al. report a mean logit difference of 3.56 (IO beats S in 99.3%) for GPT-2 small.

## Who carries the IOI answer
Measured by `ioi_circuit` on notebook 03's distribution (held-out names, training templates, 120 prompts):
- **Attention layers write {attn_share} of the logit difference directly, MLPs
  {circuit["mlp_share"]:.1%}** (direct logit attribution). In GPT-2 small the name movers, attention heads, write most
  of it (Wang et al. 2022); {writers}.
- Heads whose direct paths (including the MLPs after them) carry the answer, by path patching to the logits
  (change on the normalised scale): {carriers}.
- Of these, {name_movers} attend from the last token to the IO more than to S2 (name movers, in the paper's
  terms); {s_attenders} attend to S2 instead.

{attempts}## Limits
A toy: a {metrics["d_vocab"]}-word vocabulary, no real text, short context. It shows the mechanisms the notebooks
study, not GPT-2's full behaviour; each notebook says when its numbers come from this model.
"""
    path.write_text(text)


def _write_folder_card(folder: Path, metrics: dict) -> None:
    """A model folder's card, from its config.json (training record and architecture) and ``metrics``."""
    config = json.loads((folder / "config.json").read_text())
    write_card(folder / "MODEL_CARD.md", config["training"], metrics, config["hooked_transformer_config"])


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
    args = parser.parse_args(argv)
    if args.command == "attempt":
        if not (args.folder / "metrics.json").exists():
            raise SystemExit(f"{args.folder} has no metrics.json: train it first (train --out {args.folder}).")
        rows = json.loads((args.out / ATTEMPTS).read_text()) if (args.out / ATTEMPTS).exists() else []
        rows.append(attempt_row(args.folder, args.lever))
        (args.out / ATTEMPTS).write_text(json.dumps(rows, indent=2))
        _write_folder_card(args.out, json.loads((args.out / "metrics.json").read_text()))
        print(attempts_table(args.out))
        return
    if args.command == "train":
        train(args.out, **{k: getattr(args, k) for k in {**TRAIN, **LEVERS}})  # its record goes into config.json
    model = load_bundled(args.out)
    metrics = evaluate(model)
    metrics["d_vocab"] = model.cfg.d_vocab
    # the trained weights as saved, without the attention masks (loading folds the LayerNorms' weights away)
    saved = load_file(args.out / "model.safetensors")
    metrics["n_params"] = sum(t.numel() for k, t in saved.items() if not k.endswith((".mask", ".IGNORE")))
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    _write_folder_card(args.out, metrics)
    print(json.dumps({k: v for k, v in metrics.items() if k != "induction_scores"}, indent=2))


if __name__ == "__main__":
    main()
