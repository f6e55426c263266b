"""A sweep's validation table (``sweep/validation.csv`` on its parent run) in a report.

The sweeper writes the table once every (configuration, fresh seed) pair has finished
(:mod:`pg.sweep.validation_stage`); the report shows it as written, so the numbers are
the ones the sweep chose its winner by.  A sweep without one (validation off, a grid, a
store older than validation) simply has no such section.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from pg.record import names

if TYPE_CHECKING:
    from pg.record.reader import Reader, Run

VALIDATION_CSV = "validation.csv"  # the table's file in a report folder
HIDDEN = ("values", "run_ids", "ci_low", "ci_high")  # long or redundant for a page


@dataclass
class Validation:
    table: pd.DataFrame | None = None
    facts: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def shown(self) -> pd.DataFrame:
        """The table for Markdown, HTML and the terminal: the statistics, not the id lists."""
        assert self.table is not None
        return self.table.drop(columns=[c for c in HIDDEN if c in self.table])


def load_validation(reader: Reader, parent: Run, frame: pd.DataFrame) -> Validation:
    """The parent run's validation table and its winner; a note when validation runs exist
    but the table does not (yet): an interrupted validation."""
    out = Validation()
    text = reader.text(parent.info.run_id, names.VALIDATION_CSV)
    if text is None:
        started = int((frame["kind"] == names.KIND_VALIDATION).sum()) if "kind" in frame else 0
        if started:
            out.notes.append(
                f"validation not finished: {started} validation run(s) and no "
                f"{names.VALIDATION_CSV} yet (run the sweep's command again to finish it)"
            )
        return out
    out.table = pd.read_csv(io.StringIO(text))
    tags = parent.data.tags
    trial = tags.get(names.VALIDATED_BEST_TRIAL)
    if trial is not None:
        value = float(tags.get(names.VALIDATED_BEST_VALUE, "nan"))
        out.facts["validated best"] = f"trial {trial} (mean {value:.4g} on fresh seeds)"
    best = tags.get(names.BEST_TRIAL)
    if best is not None:
        out.facts["search best"] = f"trial {best} (value {float(tags[names.BEST_VALUE]):.4g})"
    return out


def section_text(validation: Validation) -> str:
    seeds = ""
    if validation.table is not None and len(validation.table):
        seeds = f" (seeds {validation.table['seeds'].iloc[0]})"
    return (
        "The search's best configurations trained again on seeds the search never used"
        f"{seeds}: mean, sample std and ci95 (half-width of the 95 % Student-t interval) of "
        "their final objective, best first; search_value is the value that put them in the "
        "top. A configuration with a failed seed ranks last. All columns: validation.csv."
    )
