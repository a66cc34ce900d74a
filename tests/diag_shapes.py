"""Data shapes the demo generator never makes, and an in-process runner for 01_diagnosis.

The shapes are built here from a few lines of arithmetic, not by :mod:`fupan.demo`:
customers with key columns only (industry, region and account manager left empty),
orders with customer, date and amount. :func:`run_diagnosis` executes the notebook's code
cells in this process (no kernel), collecting what each cell puts on the deck, so a test
can scan every slide's text and every chart's data in a few seconds per shape.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pandas as pd
import paramfile

ROOT = Path(__file__).resolve().parents[1]
AS_OF = dt.date(2026, 10, 31)

SHAPES = (
    "orders_only",
    "one_tier",
    "short_history",
    "n30",
    "one_day",
    "no_churn",
    "churn90",
)


def _customers_orders(
    n: int,
    seed: int,
    first: dt.date,
    last: dt.date,
    churn: float,
    one_day: bool = False,
    recent_all: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``n`` customers acquired between ``first`` and ``last``; a ``churn`` share stop early."""
    rng = np.random.default_rng(seed)
    span = max((last - first).days, 1)
    acq = (
        np.zeros(n, dtype=int) if one_day else np.sort(rng.integers(0, span, n))
    ) + np.datetime64(first)
    horizon = np.datetime64(AS_OF)
    leaves = rng.random(n) < churn
    rows = []
    for i in range(n):
        start = acq[i]
        # a churner's last order is more than 400 days before as_of (or on acquisition)
        stop = horizon if not leaves[i] else min(horizon - 400, start + int(rng.integers(0, 200)))
        stop = max(stop, start)
        day, k = start, 0
        value = float(rng.lognormal(6, 1))
        while day <= stop:
            rows.append((f"C{i:04d}", day, round(value * rng.uniform(0.5, 1.5), 2)))
            k += 1
            day = day + int(rng.integers(10, 120))
        if recent_all and not leaves[i]:
            rows.append((f"C{i:04d}", horizon - int(rng.integers(0, 20)), round(value, 2)))
    orders = pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"])
    orders = orders[orders.order_date <= horizon].drop_duplicates(["customer_id", "order_date"])
    orders["order_date"] = pd.to_datetime(orders.order_date).dt.date
    orders.insert(0, "order_id", [f"O{i}" for i in range(len(orders))])
    customers = pd.DataFrame(
        {
            "customer_id": [f"C{i:04d}" for i in range(n)],
            "acquired_at": pd.to_datetime(acq).date,
        }
    )
    return customers, orders


def build(shape: str, folder: Path) -> tuple[Path, str, bool]:
    """Write a shape's data folder; return (folder, params YAML extras, tiers supplied)."""
    first, last, n, churn, extra = dt.date(2023, 1, 1), dt.date(2026, 9, 1), 300, 0.3, ""
    one_day = recent = False
    tiers = "spend"
    if shape == "short_history":
        first = dt.date(2026, 1, 15)
        churn = 0.0
    elif shape == "n30":
        n = 30
    elif shape == "one_day":
        one_day = True
    elif shape == "no_churn":
        churn, recent = 0.0, True
    elif shape == "churn90":
        churn = 0.9
    elif shape == "one_tier":
        tiers = "one"
        extra = (
            "tiers:\n  order: [member]\n  core: [member]\n  spend_floors: [0]\n"
            "  labels:\n    member: {zh: 会员, en: member}\n"
        )
    elif shape == "orders_only":
        tiers = "none"
    seed = SHAPES.index(shape) + 11
    customers, orders = _customers_orders(n, seed, first, last, churn, one_day, recent)
    if tiers == "one":
        customers["tier"] = "member"
    else:
        # what the data layer fills when the business supplied no tier: the spend-floor tier
        spend = (
            orders[pd.to_datetime(orders.order_date) > pd.Timestamp(AS_OF) - pd.Timedelta(days=365)]
            .groupby("customer_id")
            .amount.sum()
            .reindex(customers.customer_id)
            .fillna(0)
            .to_numpy()
        )
        floors = [200_000, 50_000, 10_000, 0] if tiers == "none" else [2000, 800, 200, 0]
        names = ["platinum", "gold", "silver", "attention"]
        level = np.array([next(i for i, f in enumerate(floors) if s >= f) for s in spend])
        if tiers == "spend":
            # a business's tiers lag its customers' spend: a quarter sit one tier too low
            lag = np.random.default_rng(seed).random(n) < 0.25
            level = np.where(lag, np.minimum(level + 1, len(names) - 1), level)
        customers["tier"] = [names[i] for i in level]
        if tiers == "spend":
            extra = "tiers:\n  spend_floors: [2000, 800, 200, 0]\n"
    for col in ("industry", "region", "account_manager"):
        customers[col] = None
    folder.mkdir(parents=True, exist_ok=True)
    customers.to_csv(folder / "customers.csv", index=False)
    orders.to_csv(folder / "orders.csv", index=False)
    return folder, extra, tiers != "none"


def params_file(folder: Path, data: Path, extra: str = "", lang: str = "en") -> Path:
    return paramfile.write(
        folder,
        data.resolve(),
        "churn_definition:\n  dormancy_days: 180\n" + extra,
        name="shape",
        as_of=AS_OF,
        lang=lang,
        seed=7,
        business_model="non_contractual",
    )


class Deck:
    """What the notebook showed: slides with their text and charts, and the results."""

    def __init__(self) -> None:
        self.slides: list[dict[str, Any]] = []
        self.results: dict[str, Any] = {}

    def add(self, data: dict[str, Any], kind: str) -> None:
        if kind == "slide" or not self.slides:
            self.slides.append({"title": data.get("text/plain", ""), "items": []})
        self.slides[-1]["items"].append((kind, data))

    def texts(self) -> list[str]:
        out = []
        for s in self.slides:
            for kind, data in s["items"]:
                if kind != "figure":
                    out.append(data.get("text/plain", "") or data.get("text/html", ""))
        return out


BAD = re.compile(r"(?<![\w])(nan|NaN|None|inf|-inf|NaT)(?![\w])|–|∞")
# a dash between two numbers is a range ("1–5", "88.8%–97.8%", "¥1k–¥2k"), not a placeholder
RANGE = re.compile(r"(?<=[\d%kMB万亿])\s?–\s?(?=[-\d¥$€£])")


def bad_text(text: str) -> list[str]:
    """Placeholders a slide must never hold."""
    plain = RANGE.sub(" to ", re.sub(r"<[^>]+>", " ", text))
    return [m.group(0) for m in BAD.finditer(plain)]


def run_diagnosis(params_path: Path, run_dir: Path, supplied: bool | None = None) -> Deck:
    """Execute 01_diagnosis's code cells here; return what they put on the deck.

    ``supplied=False`` makes ``ds.supplied("customers", "tier")`` answer False (the data
    layer's answer when the business supplied no tier), until the data layer has it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from fupan.io.dataset import Dataset
    from fupan.report import show

    deck = Deck()
    empty: list[str] = []

    def display(data: dict[str, Any], kind: str) -> None:
        deck.add(data, kind)

    def figure(fig: Any, close: bool = True) -> None:
        title = next((ax.get_title() for ax in fig.axes if ax.get_title()), "")
        has_data = any(ax.patches or ax.lines or ax.collections or ax.images for ax in fig.axes)
        if not has_data:
            empty.append(title)
        deck.add({"text/plain": title, "empty": not has_data}, "figure")
        plt.close(fig)

    nb = nbformat.read(ROOT / "notebooks" / "01_diagnosis.ipynb", 4)
    saved = (show._display, show.figure, getattr(Dataset, "supplied", None))
    show._display, show.figure = display, figure
    if supplied is not None:
        own = saved[2]

        def fake(self, table: str, column: str) -> bool:
            if table == "customers" and column == "tier":
                return supplied
            return own(self, table, column) if own else True

        Dataset.supplied = fake
    ns: dict[str, Any] = {}
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            src = cell.source
            if "parameters" in cell.metadata.get("tags", []):
                src += f"\nparams_file = {str(params_path)!r}\nrun_dir = {str(run_dir)!r}\n"
            exec(compile(src, "01_diagnosis", "exec"), ns)
    finally:
        show._display, show.figure = saved[0], saved[1]
        if supplied is not None:
            if saved[2] is None:
                del Dataset.supplied
            else:
                Dataset.supplied = saved[2]
        plt.close("all")
    deck.results = ns["nb"].results._load() if "nb" in ns else {}
    deck.empty_charts = empty
    return deck
