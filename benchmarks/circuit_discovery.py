"""Benchmark: the cost of circuit discovery on one IOI task: exact edge patching, EAP, EAP-IG and ACDC.

On the bundled model every method runs in full and is scored against the IOI circuit that notebook 03's rules find
(ROC AUC), so the speed-up of EAP over ACDC is read beside the AUC each reaches. On a GPT-2-shaped model (random
weights: no reference circuit) exact patching runs on a sample of edges and ACDC on its first visits, and both are
extrapolated to the whole graph (one pass per edge), as the table says. Beside the times: the largest difference
between the batched exact patching and patching the same edges one pass at a time.

    python benchmarks/circuit_discovery.py                      # the bundled model and the GPT-2-shaped model
    python benchmarks/circuit_discovery.py --models bundled --tau 0.01
"""

from __future__ import annotations

import argparse
import time

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interp_utils import corpus, discovery, edge_attribution, edge_graph, ioi, ioi_circuit, load_bundled
from interp_utils import reference_circuits as rc
from interp_utils.circuits.edge_graph import EdgeGraph
from interp_utils.core.runtime import benchmark_device, timed
from interp_utils.data.ioi import ioi_batch, make_ioi_prompts, single_token_names


def run(model: HookedTransformer, batch: ioi.IOIBatch, args, truth: torch.Tensor | None) -> list[tuple]:
    graph = EdgeGraph.of(model)
    tokens, corrupt = batch.tokens.to(args.device), batch.corrupted.to(args.device)

    def metric(logits):
        return ioi.logit_diff(logits, batch).mean()

    full = truth is not None
    recorded = edge_graph.record_outputs(model, graph, corrupt)
    with torch.inference_mode():
        clean_logits = model(tokens)
        clean = float(metric(clean_logits))
    sample = torch.arange(graph.n_edges) if full else torch.randperm(graph.n_edges)[: args.sample]
    exact, t_exact = timed(
        lambda: edge_graph.edge_patching(model, graph, tokens, corrupt, metric, sample, progress=False), args.device
    )
    t_exact *= graph.n_edges / len(sample)
    check = torch.arange(min(args.check_edges, len(sample)))
    pairs = graph.edges()[sample[check]]

    def one_pass(up: int, down: int) -> float:  # the edge alone, in a pass of its own
        mask = torch.zeros(1, *graph.allowed.shape, dtype=torch.bool)
        mask[0, up, down] = True
        return float(edge_graph.masked_metrics(model, graph, tokens, recorded, mask, metric)[0]) - clean

    one_by_one = torch.tensor([one_pass(up, down) for up, down in pairs.tolist()])
    gap = (one_by_one - exact[check]).abs().max().item()
    eap, t_eap = timed(lambda: edge_attribution.eap(model, graph, tokens, corrupt, metric).cpu(), args.device)
    ig, t_ig = timed(
        lambda: edge_attribution.eap_ig(model, graph, tokens, corrupt, metric, steps=args.ig_steps).cpu(), args.device
    )
    where = torch.zeros(tokens.shape, dtype=torch.bool, device=args.device)
    where[torch.arange(len(batch)), batch.positions["end"]] = True
    kl = discovery.kl_divergence(clean_logits, where)
    if full:
        found = discovery.acdc(model, graph, tokens, corrupt, kl, args.tau)
        t_acdc, acdc_note = found.seconds, f"{found.passes} passes"
    else:  # the first visits of the search, timed, then one pass per edge
        visits = [0]

        def measure(patched):
            visits[0] += 1
            if visits[0] > args.acdc_visits:
                raise StopIteration
            return float(edge_graph.masked_metrics(model, graph, tokens, recorded, patched[None], kl)[0])

        start = time.perf_counter()
        try:
            discovery.acdc_search(graph, measure, args.tau)
        except StopIteration:
            pass
        t_acdc = (time.perf_counter() - start) / args.acdc_visits * graph.n_edges
        acdc_note = f"extrapolated from {args.acdc_visits} passes to {graph.n_edges}"

    def auc(scores):
        return f"{discovery.auc(*discovery.roc(scores, truth)):.3f}" if full else "n/a"

    acdc_auc = "n/a"
    if full:
        circuit = graph.as_edges(found.kept).cpu()
        acdc_auc = f"{discovery.auc(*discovery.circuit_roc([circuit], truth)):.3f} (one τ)"
    exact_note = "" if full else f"extrapolated from {len(sample)} edges"
    return [
        ("exact edge patching", t_exact, auc(exact.cpu()) if full else "n/a", exact_note, f"{gap:.1e}"),
        ("EAP", t_eap, auc(eap), "", ""),
        (f"EAP-IG ({args.ig_steps} steps)", t_ig, auc(ig), "", ""),
        (f"ACDC (τ = {args.tau:g})", t_acdc, acdc_auc, acdc_note, ""),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["bundled", "gpt2-size"], choices=["bundled", "gpt2-size"])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--tau", type=float, default=0.01)
    parser.add_argument("--ig-steps", type=int, default=5)
    parser.add_argument("--sample", type=int, default=200, help="edges patched exactly on the GPT-2-shaped model")
    parser.add_argument("--acdc-visits", type=int, default=100, help="ACDC passes timed on the GPT-2-shaped model")
    parser.add_argument("--check-edges", type=int, default=20, help="edges also patched one pass at a time")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    bundled = load_bundled(device=args.device)
    names = single_token_names(bundled, corpus.HELD_OUT_NAMES)
    batch = ioi_batch(bundled, make_ioi_prompts(args.prompts, names, seed=0))
    print(f"device: {benchmark_device(args.device)}; {args.prompts} IOI prompts")
    for which in args.models:
        if which == "bundled":
            model, label = bundled, "bundled model"
            classes = ioi_circuit.head_classes(ioi_circuit.run_ioi(model, batch))
            graph = EdgeGraph.of(model)
            truth: torch.Tensor | None = graph.as_edges(rc.class_reference(graph, classes)).cpu()
        else:
            cfg = dict(n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, n_ctx=1024, act_fn="gelu_new")
            model = HookedTransformer(HookedTransformerConfig(**cfg, d_vocab=bundled.cfg.d_vocab, seed=0,
                                                              device=args.device))  # fmt: skip
            label, truth = "GPT-2-shaped model (random weights)", None
        rows = run(model, batch, args, truth)
        graph = EdgeGraph.of(model)
        print(f"\n{label}: {graph.n_edges} edges")
        print(f"{'method':<24} {'seconds':>10} {'AUC':>16}  {'largest difference, one pass per edge':>38}  note")
        for name, t, auc, note, gap in rows:
            print(f"{name:<24} {t:>10.2f} {auc:>16}  {gap:>38}  {note}")
        eap, acdc = rows[1][1], rows[3][1]
        print(f"EAP is {acdc / eap:.0f}× faster than one ACDC run (τ = {args.tau:g}); EAP-IG {acdc / rows[2][1]:.0f}×.")


if __name__ == "__main__":
    main()
