"""How much the verdicts depend on the reading: the stability pairs under the other reading.

    python stages/readings.py vgg_s        # stage readings@vgg_s

params: ``readings: [alexnet_s, vgg_s, resnet_s]`` (populations that are also in ``stability``).
The run's ``reading`` fits the stability pairs (kc.studies.stability); this study fits the same pairs
under the other reading (``paper`` <-> ``authors``, kc.readings: taps, normalisation, Σ, gates, init,
optimiser) and the report sets Tables 1-2 and the verdicts of claims 1 and 2 side by side.
"""
from __future__ import annotations

from kc.config import Config, ConfigError
from kc.studies import stability
from kc.studies.common import Context, StudyReport, ci, list_of_populations, table

KEY = "readings"
TITLE = "The paper's reading and the authors' code, side by side"


def other(reading: str) -> str:
    return "authors" if reading == "paper" else "paper"


def parse(value, cfg: Config) -> list[str]:
    names = list_of_populations(value, cfg, KEY)
    listed = cfg.raw.get("stability") or []
    for name in names:
        if name not in listed:
            raise ConfigError(f"{KEY}: nets.{name} must also be in stability (the run's own reading is fitted there)")
    return names


def run(cfg: Config, name: str, root=".") -> dict:
    """Stage readings@<population>: the stability pairs under the other reading."""
    return stability.fit_population(cfg, name, KEY, other(cfg.reading), root)


def report(ctx: Context) -> StudyReport | None:
    names = ctx.cfg.studies.get(KEY) or []
    if not names:
        return None
    this, that = ctx.cfg.reading, other(ctx.cfg.reading)
    cols = {this: stability.columns(ctx, stability.KEY, names), that: stability.columns(ctx, KEY, names)}
    rows = []
    for a, b in zip(cols[this], cols[that]):
        rows.append({"layer @ nets": f"{a['layer']} @ {a['population']}",
                     f"Case 1, {this}": ci(stability.instability(ctx, a, "case1")),
                     f"Case 1, {that}": ci(stability.instability(ctx, b, "case1")),
                     f"Case 2, {this}": ci(stability.instability(ctx, a, "case2")),
                     f"Case 2, {that}": ci(stability.instability(ctx, b, "case2"))})
    verdicts, summary = [], {}
    for number, decide in ((1, stability.claim1), (2, stability.claim2)):
        row = {"claim": str(number)}
        for reading in (this, that):
            c = decide(ctx, cols[reading])
            row[reading] = f"**{c.verdict}**: {ci(c.interval)}"
            if c.interval is not None:
                summary[f"readings_claim{number}_{reading}"] = c.interval.estimate
        verdicts.append(row)
    text = (f"The run's reading is `{this}`; the same pairs were fitted under `{that}` (README, \"Readings of the "
            "paper\"). Instability with 95% intervals, and the verdicts of claims 1 and 2 under each reading "
            "(same rules as above).\n\n" + table(rows) + "\n" + table(verdicts))
    return StudyReport(KEY, TITLE, text, [], [], summary)
