"""The report's "Data" section: the attention frame as a CSV made in the browser."""

from __future__ import annotations

import numpy as np

from ..section import ReportContext, Section


def data_section(ctx: ReportContext) -> Section:
    n_rows = sum(int(np.prod(s.shape)) for s in ctx.capture.stacks.values())
    return Section(
        "data",
        "Data",
        "sections/data.html.j2",
        {
            "n_rows": n_rows,
            "precision": ctx.page.precision,
            "encoder_decoder": ctx.capture.is_encoder_decoder,
            "stem": _file_stem(str(ctx.capture.metadata.get("model_name", "attention"))),
        },
    )


def _file_stem(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.rsplit("/", 1)[-1])
    return keep.strip("-.") or "attention"
