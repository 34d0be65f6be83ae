"""Plotly wrappers used across notebooks: tensors in, labelled figures out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
import torch


def to_numpy(x) -> np.ndarray:
    """A NumPy array from a tensor, array or nested list."""
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def imshow(
    values,
    title: str = "",
    labels: dict | None = None,
    x: Sequence | None = None,
    y: Sequence | None = None,
    diverging: bool = True,
    **kwargs,
) -> go.Figure:
    """A heatmap; diverging values are centred on zero (red positive, blue negative)."""
    array = to_numpy(values)
    if array.ndim not in (2, 3):
        raise ValueError(f"imshow takes a 2-D array (or 3-D with facet_col), got shape {array.shape}.")
    style = dict(color_continuous_scale="RdBu", color_continuous_midpoint=0.0) if diverging else {}
    fig = px.imshow(array, x=x, y=y, labels=labels or {}, title=title, aspect="auto", **style, **kwargs)
    return fig


def line(
    ys: dict[str, Sequence] | Sequence,
    x: Sequence | None = None,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    log_x: bool = False,
    log_y: bool = False,
) -> go.Figure:
    """One or several lines; a dict maps each legend name to its y values."""
    series = ys if isinstance(ys, dict) else {"": ys}
    fig = go.Figure()
    for name, values in series.items():
        y = to_numpy(values)
        fig.add_trace(go.Scatter(x=to_numpy(x) if x is not None else None, y=y, mode="lines", name=name))
    fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title=ylabel, showlegend=len(series) > 1)
    fig.update_xaxes(type="log" if log_x else "linear")
    fig.update_yaxes(type="log" if log_y else "linear")
    return fig


def scatter(x, y, title: str = "", xlabel: str = "", ylabel: str = "", **kwargs) -> go.Figure:
    """A scatter plot of two 1-D arrays (extra keyword arguments go to ``px.scatter``)."""
    x, y = to_numpy(x).ravel(), to_numpy(y).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same number of points, got {x.shape[0]} and {y.shape[0]}.")
    return px.scatter(x=x, y=y, title=title, labels={"x": xlabel, "y": ylabel}, **kwargs)


def facets(values: dict[str, object], title: str = "", **kwargs) -> go.Figure:
    """Heatmaps of equal shape side by side, one per entry of ``values``, each titled by its key."""
    arrays = [to_numpy(v) for v in values.values()]
    if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 2:
        raise ValueError(f"facets takes 2-D arrays of one shape, got {[a.shape for a in arrays]}.")
    fig = imshow(np.stack(arrays), title=title, facet_col=0, **kwargs)
    for annotation, name in zip(fig.layout.annotations, values, strict=True):
        annotation.text = name
    return fig


def layer_position(values, positions: Sequence[str], title: str = "", color: str = "normalised") -> go.Figure:
    """A layer × position heatmap, such as a residual-stream patching sweep, with the positions named along x."""
    return imshow(values, x=list(positions), title=title, labels={"x": "position", "y": "layer", "color": color})
