"""Mutation test for notebook 07's lie-detector row: the row must be able to fail. A probe trained on shuffled labels
in place of the truth probe makes the row disagree with the band the notebook judges by (probes.TRUTH_BAND)."""

import torch

from interp_utils import Band, ReproductionTable, corpus, facts, ioi, probes


def truth_data(model, n, seed):
    names = ioi.single_token_names(model)
    prompts, third = facts.third_name_prompts(ioi.make_ioi_prompts(n, names, corpus.TRAIN_TEMPLATES, seed=seed), names,
                                              seed + 2)  # fmt: skip
    batch = ioi.ioi_batch(model, prompts, corrupted=prompts)
    x3 = probes.residuals_at(model, *facts.mention_statements(model, batch, third)).unflatten(0, (3, n))
    y = torch.cat([torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)])
    return torch.cat([x3[0], x3[facts.false_completions(n), torch.arange(n)]]), y  # the notebook's statements


def test_a_probe_trained_on_shuffled_labels_makes_the_truth_row_disagree(bundled_model):
    (x, y), (x_test, y_test) = truth_data(bundled_model, 120, 0), truth_data(bundled_model, 60, 10)
    assert isinstance(probes.TRUTH_BAND, Band)

    def row(labels):
        """The notebook's truth row, its probe trained on `labels`: (agrees, value) at the best layer."""
        layers = range(bundled_model.cfg.n_layers)
        acc = [probes.logistic_probe(x[:, i], labels).accuracy(x_test[:, i], y_test) for i in layers]
        null = [probes.logistic_probe(x[:, i], probes.shuffled(y, 0)).accuracy(x_test[:, i], y_test) for i in layers]
        best = max(layers, key=lambda i: acc[i])
        agrees = ReproductionTable("mutation").judge("truth", "paper", "measured", acc[best], probes.TRUTH_BAND,
                                                     null[best], "shuffled")  # fmt: skip
        return agrees, acc[best]

    agrees, value = row(y)
    assert agrees, f"the real truth probe should agree (accuracy {value:.3f})"
    agrees, value = row(probes.shuffled(y, 1))
    assert not agrees and value not in probes.TRUTH_BAND, f"a shuffled-label probe reached {value:.3f}"
