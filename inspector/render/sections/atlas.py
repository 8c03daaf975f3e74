"""The corpus atlas page's sections: the head-analysis figures at corpus scale.

Section builders ``(Atlas) -> Section | None`` (no capture, so no bertviz views): corpus overview,
per-metric layer x head heatmaps of the corpus means (and of the spread), head roles from the
mean metrics, the mean head-distance matrix in cluster order, the MDS map of the heads, the
sortable, downloadable summary table, and optionally the syntactic-probe table. Figures come from
:mod:`inspector.render.charts`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from ...analysis import distances as _distances
from ...analysis import roles as _roles
from ...corpus.aggregate import SUMMARY_COLUMNS
from ...corpus.atlas import Atlas
from ...corpus.probe import ProbeResult
from ...errors import InputError
from ..charts import (
    distance_figure,
    embedding_figure,
    heatmap_columns,
    metric_heatmap_figure,
    roles_figure,
)
from ..figures import FIGURE_SCRIPTS
from ..names import model_label, source_label
from ..section import Section, frame_table
from ..section import table_context as _context

AtlasSectionBuilder = Callable[[Atlas], "Section | None"]


def head_frame(atlas: Atlas, stat: str = "mean") -> pd.DataFrame:
    """One row per head on ``(layer, head)``, one column per metric, holding ``stat``."""
    if stat not in atlas.summary.columns:
        raise InputError(f"unknown statistic {stat!r}; one of {list(SUMMARY_COLUMNS[3:])}")
    frame = atlas.summary.reset_index()
    frame["metric"] = frame["metric"].astype(str)
    wide = frame.pivot_table(index=["layer", "head"], columns="metric", values=stat, dropna=False)
    wide.columns.name = None
    return wide


def atlas_roles(atlas: Atlas) -> pd.DataFrame | None:
    """Head roles (:func:`inspector.metrics.head_roles`) from the corpus-mean metrics."""
    wide = head_frame(atlas)
    if any(col not in wide.columns for col in _roles.ROLE_SCORES.values()):
        return None
    if "sink_token" not in wide.columns:
        wide = wide.assign(sink_token=sink_targets(wide))
    return _roles.head_roles(wide)


#: Where a corpus sink's attention goes, by the metric measuring it (first match wins ties).
SINK_TARGETS = (
    ("to_first", "first token"),
    ("to_sep", "separator"),
    ("to_special", "special token"),
    ("to_punct", "punctuation"),
)


def sink_targets(wide: pd.DataFrame) -> pd.Series:
    """Per head, what its attention sink is across the corpus: the target (first token,
    separator, special token, punctuation) with the largest mean share. A corpus has no single
    sink token (it is a position or a kind of token), so roles name the kind."""
    present = [(col, name) for col, name in SINK_TARGETS if col in wide.columns]
    if not present:
        return pd.Series("token", index=wide.index)
    shares = wide[[col for col, _ in present]].fillna(-1.0).to_numpy()
    names = np.array([name for _, name in present], dtype=object)
    return pd.Series(names[shares.argmax(axis=1)], index=wide.index)


def overview_section(atlas: Atlas) -> Section:
    m = atlas.metadata
    keys = (
        ("model", None),
        ("attention", "kind"),
        ("source", "source"),
        ("texts", "n_texts"),
        ("tokens", "n_tokens"),
        ("skipped (blank)", "n_skipped"),
        ("truncated", "n_truncated"),
        ("layers x heads", None),
        ("engine", "engine"),
        ("batch size", "batch_size"),
        ("texts / s", "texts_per_second"),
    )
    facts = []
    for label, key in keys:
        if label == "model":
            facts.append((label, model_label(m)))
        elif key is None:
            facts.append((label, f"{m.get('n_layers')} x {m.get('n_heads')}"))
        elif key == "source" and m.get(key):
            facts.append((label, source_label(str(m[key]))))
        elif m.get(key) is not None:
            value = m[key]
            facts.append((label, f"{value:,}" if isinstance(value, int) else str(value)))
    facts.append(("metrics", ", ".join(m.get("metrics", []))))
    return Section("overview", "Corpus", "sections/atlas.html.j2", _context(facts=facts))


def heatmap_section(atlas: Atlas) -> Section:
    means = head_frame(atlas)
    stds = head_frame(atlas, "std")
    shown = heatmap_columns(means)
    figures = [
        metric_heatmap_figure(
            means, shown, name="atlas-means", title="corpus mean of each metric per head"
        ),
        metric_heatmap_figure(
            stds,
            shown,
            name="atlas-stds",
            title="standard deviation across inputs: how much each head varies",
        ),
    ]
    return Section(
        "heatmaps",
        "Head metrics",
        "sections/atlas.html.j2",
        _context(figures=figures),
        scripts=FIGURE_SCRIPTS,
    )


def roles_section(atlas: Atlas) -> Section | None:
    roles = atlas_roles(atlas)
    if roles is None:
        return None
    counts = roles["role"].value_counts().reindex(_roles.ROLES, fill_value=0)
    intro = (
        "Roles from the corpus means (thresholds of inspector.analysis.roles.RoleThresholds): "
        + (", ".join(f"{role} {int(n)}" for role, n in counts.items() if n))
        + ". A sink is named by where its attention goes on average (the first token, a "
        "separator, a special token or punctuation), which the texts' own tokens vary."
    )
    fig = roles_figure(roles, name="atlas-roles", title="head roles (corpus means)")
    return Section(
        "roles",
        "Head roles",
        "sections/atlas.html.j2",
        _context(intro=intro, figures=[fig]),
        scripts=FIGURE_SCRIPTS,
    )


def distances_section(atlas: Atlas) -> Section | None:
    dist = atlas.distances
    if dist is None or not np.isfinite(dist.to_numpy()).all():
        return None
    roles = atlas_roles(atlas)
    figures = [
        distance_figure(
            dist,
            name="atlas-distances",
            title="Jensen–Shannon distance between heads, averaged over the corpus",
        ),
        embedding_figure(
            _distances.head_embedding(dist),
            roles,
            name="atlas-mds",
            title="heads placed by their mean distances (classical MDS), coloured by role",
        ),
    ]
    return Section(
        "distances",
        "Head distances",
        "sections/atlas.html.j2",
        _context(figures=figures),
        scripts=FIGURE_SCRIPTS,
    )


def summary_section(atlas: Atlas) -> Section:
    frame = atlas.summary.reset_index()[list(SUMMARY_COLUMNS)].astype({"metric": str})
    return Section(
        "summary",
        "Per-head statistics",
        "sections/atlas.html.j2",
        _context(
            intro="ci95: 95% interval of the mean; p2_5 / p97_5: central 95% of the inputs.",
            **frame_table(frame, "atlas-summary", ("metric",)),
        ),
    )


def probe_section(probe: ProbeResult) -> Section:
    table = probe.table
    columns = ["relation", "n", "best_head", "accuracy", "direction", "baseline_offset",
               "baseline_accuracy"]  # fmt: skip
    rows = [list(r) for r in table[columns].itertuples(index=False)]
    meta = probe.metadata
    intro = (
        f"Syntactic head probe (Clark et al. 2019) on {meta.get('treebank')}: "
        f"{meta.get('n_scored_sentences')} sentences; punct and root not scored."
    )
    return Section(
        "probe",
        "Syntactic heads",
        "sections/atlas.html.j2",
        _context(
            intro=intro,
            columns=columns,
            rows=rows,
            table_id="atlas-probe",
            text_columns=("relation", "best_head", "direction"),
        ),
    )


#: The atlas report's sections, in page order.
DEFAULT_ATLAS_SECTIONS: tuple[AtlasSectionBuilder, ...] = (
    overview_section,
    heatmap_section,
    roles_section,
    distances_section,
    summary_section,
)


__all__ = ["DEFAULT_ATLAS_SECTIONS", "atlas_roles", "head_frame", "probe_section"]
