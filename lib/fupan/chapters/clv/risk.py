"""What is at risk now? Churn probabilities (chapter 2's list, else the CLV model) x CLV."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fupan.chapters import atrisk
from fupan.chapters.clv.valuation import TRANSACTIONS, YEAR_DAYS, Valuation, _ts
from fupan.core.chapter_params import LtvParams
from fupan.io import engine
from fupan.io.dataset import Dataset

#: Columns a churn-score frame may carry its churn probability in (churn chapter).
PROBABILITY_COLUMNS = ("churn_probability", "p_churn", "probability")


# --------------------------------------------------------------------------------------
# LTV at risk now


def churn_scores(
    ds: Dataset, as_of: Any, run_dir: str | Path | None = None
) -> tuple[pd.DataFrame | None, str]:
    """The churn chapter's at-risk list at ``as_of``, with its churn probabilities.

    First the list chapter 2 exported in this run (``<run_dir>/exports/at_risk.csv``, read
    back when ``results.json`` says chapter 2 recorded that many customers), so both chapters
    show the same customers and the health model is not trained twice; then
    :func:`fupan.chapters.atrisk.at_risk_list` at ``as_of``. Every listed customer is
    at risk unless the frame says otherwise (``at_risk`` flag, or ``band`` red/amber).

    Returns
    -------
    (frame ``customer_id, p_churn, at_risk`` or None, status: ``"churn_export"`` or
    ``"churn_scores"`` when used, else why not: ``"no_probability"``,
    ``"failed: ..."``)
    """
    if run_dir:
        frame = _chapter2_export(Path(run_dir))
        if frame is not None:
            scores, why = normalise_scores(frame)
            if scores is not None:
                return scores, "churn_export"
    try:
        frame = atrisk.at_risk_list(ds, _ts(as_of).date())
    except Exception as exc:  # noqa: BLE001 - an optional integration must not stop the chapter
        return None, f"failed: {type(exc).__name__}: {exc}"
    return normalise_scores(frame)


def _chapter2_export(run_dir: Path) -> pd.DataFrame | None:
    """Chapter 2's exported at-risk list of this run, headers mapped back to column names."""
    from fupan.core import i18n
    from fupan.report.results import Recorder

    path = run_dir / "exports" / "at_risk.csv"
    count = Recorder(run_dir).get("churn.at_risk_count")
    if not path.exists() or count is None:
        return None
    back: dict[str, str] = {}
    for col in ("customer_id", "churn_probability"):
        for lang in i18n.LANGS:
            try:
                back[i18n.t(f"churn.acol.{col}", lang)] = col
            except i18n.MissingLabelError:
                return None
    frame = pd.read_csv(path, encoding="utf-8-sig", dtype=str).rename(columns=back)
    if len(frame) != int(count) or not {"customer_id", "churn_probability"} <= set(frame.columns):
        return None  # not the list this run recorded
    return frame[["customer_id", "churn_probability"]]


def normalise_scores(frame: Any) -> tuple[pd.DataFrame | None, str]:
    """``customer_id, p_churn, at_risk`` from a churn-score frame, or None and why not."""
    if not isinstance(frame, pd.DataFrame) or "customer_id" not in frame.columns:
        return None, "no_probability"
    prob = next((c for c in PROBABILITY_COLUMNS if c in frame.columns), None)
    if prob is None:
        return None, "no_probability"
    p = pd.to_numeric(frame[prob], errors="coerce")
    if (p.notna().sum() == 0 and len(frame)) or (p.dropna() < 0).any() or (p.dropna() > 1).any():
        return None, "no_probability"
    if "at_risk" in frame.columns:
        flag = frame["at_risk"].astype(bool)
    elif "band" in frame.columns:
        flag = frame["band"].astype(str).str.lower().isin(["red", "amber"])
    else:
        flag = pd.Series(True, index=frame.index)  # a list of at-risk customers
    out = pd.DataFrame(
        {"customer_id": frame.customer_id.astype(str), "p_churn": p, "at_risk": flag.astype(bool)}
    )
    return out.dropna(subset=["p_churn"]).drop_duplicates("customer_id"), "churn_scores"


def at_risk(
    now: Valuation,
    active: Iterable[str],
    ltv: LtvParams,
    scores: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Customers at risk now, with ``ltv_at_risk = p_churn x clv``.

    With ``scores`` (the churn chapter's, see :func:`churn_scores`): its flagged customers and
    probabilities. Without: the CLV model's own view: transactions, P(alive) below
    ``ltv.at_risk_p_alive`` (probability 1 - P(alive)); contracts, a renewal decision within
    ``ltv.at_risk_renewal_days`` (probability of not renewing). Only customers still active
    under the churn definition count.

    Returns
    -------
    One row per at-risk customer: ``customer_id, clv, p_churn, ltv_at_risk``, largest first.
    """
    v = now.values
    active_ids = active if isinstance(active, pd.Index | pd.Series | np.ndarray) else list(active)
    v = v[engine.isin(v.index, active_ids)]
    if scores is not None:
        s = scores[scores.at_risk.astype(bool)].set_index("customer_id")
        s = s[engine.isin(s.index, active_ids)]
        frame = pd.DataFrame({"p_churn": s.p_churn.astype(float)})
        frame["clv"] = v.clv.reindex(frame.index).fillna(0.0)
    else:
        if now.kind == TRANSACTIONS:
            flag = v.p_alive < ltv.at_risk_p_alive
        else:
            flag = v.years_to_decision * YEAR_DAYS <= ltv.at_risk_renewal_days
        frame = v.loc[flag, ["p_churn", "clv"]].copy()
    frame["ltv_at_risk"] = frame.p_churn * frame.clv
    frame = frame.rename_axis("customer_id").reset_index()
    return frame.sort_values(["ltv_at_risk", "customer_id"], ascending=[False, True]).reset_index(
        drop=True
    )
