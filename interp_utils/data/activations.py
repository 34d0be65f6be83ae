"""Text in, activations out: token streams (hub data set online, generated corpus offline) and a shuffling buffer.

Used to train sparse autoencoders (notebook 04) and transcoders (notebook 05) on a model's activations.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from interp_utils.core import hooks
from interp_utils.core.hooks import hook_layer
from interp_utils.core.loading import TextSource, hub_reachable, is_standin, text_source

# A parquet copy of the Pile's first 10k documents. (gpt2-small-res-jb was trained on OpenWebText, but
# Skylion007/openwebtext is a loading-script data set, which datasets >= 4 no longer runs.)
HUB_DATASET = "NeelNanda/pile-10k"


def describe_text(model: HookedTransformer, source: TextSource | None = None) -> str:
    """Where :func:`token_batches` takes ``model``'s text from, in words (``source`` as there)."""
    source = source or text_source(model)
    if source == "corpus":
        standin = " in GPT-2's tokens (the test stand-in reads no hub data)" if is_standin(model) else ""
        return f"the generated corpus{standin or ' (offline)'}"
    return f"{HUB_DATASET} (Hugging Face hub)"


def token_batches(
    model: HookedTransformer,
    batch_size: int,
    n_ctx: int | None = None,
    seed: int = 0,
    source: TextSource | None = None,
    dataset: str = HUB_DATASET,
) -> Iterator[Int[Tensor, "batch pos"]]:
    """Endless ``[batch_size, n_ctx]`` token batches, each row starting with BOS.

    ``source="corpus"`` reads the generated corpus (:mod:`interp_utils.data.corpus`) in the model's tokens,
    ``source="hub"`` streams ``dataset`` from the hub; by default, the model's own
    (:func:`interp_utils.core.loading.text_source`: the corpus for the bundled model and the tests' GPT-2 stand-in).
    """
    source = source or text_source(model)
    if source not in ("corpus", "hub"):
        raise ValueError(f"source must be 'corpus' (the generated corpus) or 'hub' (a hub data set), got {source!r}.")
    n_ctx = n_ctx or model.cfg.n_ctx
    if n_ctx > model.cfg.n_ctx:
        raise ValueError(f"n_ctx={n_ctx} is longer than the model's context ({model.cfg.n_ctx}).")
    tokenizer = model.tokenizer
    if source == "corpus":
        if tokenizer is None:
            raise ValueError(f"{model.cfg.model_name} has no tokenizer: the corpus cannot be turned into its tokens.")
        from interp_utils.data import corpus  # only where the corpus is read

        yield from corpus.tokenizer_batches(tokenizer, batch_size, n_ctx, seed)
        return
    if not hub_reachable():
        raise ConnectionError(
            f"Text for {model.cfg.model_name} comes from the hub data set {dataset!r}, but the hub is unreachable. "
            "Connect to the internet, or use the bundled model (MODEL='bundled'), whose corpus is generated locally."
        )
    if tokenizer is None:
        raise ValueError(f"{model.cfg.model_name} has no tokenizer: text cannot be turned into its tokens.")
    from datasets import load_dataset

    stream = load_dataset(dataset, split="train", streaming=True).shuffle(seed=seed, buffer_size=10_000)
    bos, rows, row = tokenizer.bos_token_id, [], []
    for example in stream:
        row += [bos] + tokenizer(example["text"])["input_ids"]
        while len(row) >= n_ctx:  # documents packed into rows, as in GPT-2's training
            rows.append(row[:n_ctx])
            row = [bos] + row[n_ctx:]
            if len(rows) == batch_size:
                yield torch.tensor(rows)
                rows = []


@torch.no_grad()
def collect(
    model: HookedTransformer,
    hook_names: str | list[str],
    tokens: Int[Tensor, "batch pos"],
    model_batch: int = 32,
    skip_bos: bool = True,
) -> Float[Tensor, "n d"] | list[Float[Tensor, "n d"]]:
    """Activations at ``hook_names`` for every token (position 0 left out when ``skip_bos``), flattened.

    A list of names gives a list of tensors whose rows are the same tokens (e.g. an MLP's input and output).
    """
    names = [hook_names] if isinstance(hook_names, str) else list(hook_names)
    missing = [n for n in names if n not in model.hook_dict]
    if missing:
        raise ValueError(
            f"Unknown hook(s) {missing}; build names with interp_utils.core.hooks.name, e.g. "
            f"{hooks.name('resid_pre', 2)!r} or {hooks.name('mlp_out', 1)!r}."
        )
    layers = [hook_layer(n) for n in names]
    known = [layer for layer in layers if layer is not None]
    stop = max(known) + 1 if len(known) == len(layers) else None  # stop after the last layer needed
    out: list[list[Tensor]] = [[] for _ in names]
    for chunk in tokens.split(model_batch):
        _, cache = model.run_with_cache(chunk.to(model.cfg.device), names_filter=names, stop_at_layer=stop)
        for i, name in enumerate(names):
            acts = cache[name][:, 1:] if skip_bos else cache[name]
            out[i].append(acts.reshape(-1, acts.shape[-1]).float().cpu())
    result = [torch.cat(parts) for parts in out]
    return result[0] if isinstance(hook_names, str) else result


class ActivationBuffer:
    """Shuffled batches of activations from a token stream, as SAELens's mixing buffer does.

    A pool of ``pool_tokens`` activations is shuffled; when half of it has been served, that half is
    refilled with fresh activations. Tokens from one context therefore rarely share a batch.
    """

    def __init__(
        self,
        model: HookedTransformer,
        hook_names: str | list[str],
        tokens: Iterator[Int[Tensor, "batch pos"]],
        batch_size: int = 4096,
        pool_tokens: int = 2**17,
        skip_bos: bool = True,
    ):
        if pool_tokens < 2 * batch_size:
            raise ValueError(f"pool_tokens ({pool_tokens}) must be at least twice batch_size ({batch_size}).")
        self.model, self.hook_names, self.tokens = model, hook_names, tokens
        self.batch_size, self.pool_tokens, self.skip_bos = batch_size, pool_tokens, skip_bos
        self.tokens_collected, self.seconds_collecting = 0, 0.0
        self.pool = self._fresh(pool_tokens)
        self.served = 0

    def _fresh(self, n: int) -> Tensor:
        """At least ``n`` new activations, shuffled; pairs of hooks are stacked along a new dim 1."""
        start, parts, got = time.perf_counter(), [], 0
        while got < n:
            acts = collect(self.model, self.hook_names, next(self.tokens), skip_bos=self.skip_bos)
            acts = acts if isinstance(acts, Tensor) else torch.stack(acts, dim=1)
            parts.append(acts)
            got += len(acts)
        pool = torch.cat(parts)[:n]
        self.tokens_collected += len(pool)
        self.seconds_collecting += time.perf_counter() - start
        return pool[torch.randperm(len(pool))]

    def take(self, n: int, progress: bool = False) -> Tensor:
        """``n`` fresh activations that training never sees (for evaluation)."""
        chunks = [
            self._fresh(min(self.pool_tokens, n - i)) for i in tqdm(range(0, n, self.pool_tokens), disable=not progress)
        ]
        return torch.cat(chunks)

    def __iter__(self) -> ActivationBuffer:
        return self

    def __next__(self) -> Tensor:
        half = self.pool_tokens // 2
        if self.served + self.batch_size > half:
            self.pool[:half] = self._fresh(half)
            self.pool = self.pool[torch.randperm(self.pool_tokens)]
            self.served = 0
        batch = self.pool[self.served : self.served + self.batch_size]
        self.served += self.batch_size
        return batch
