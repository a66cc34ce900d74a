"""A tiny hand-made dataset that meets the contract, for unit tests of the spine.

Small enough that every expected number can be checked by hand.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import paramfile

AS_OF = "2026-10-31"


def frames() -> dict[str, pd.DataFrame]:
    customers = pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3", "C4", "C5"],
            "acquired_at": ["2023-01-10", "2023-05-01", "2024-02-15", "2024-08-01", "2025-03-03"],
            "customer_name": ["甲公司", "乙公司", "丙公司", "丁公司", "戊公司"],
            "industry": ["retail", "retail", "tech", "finance", "tech"],
            "region": ["华东", "华南", "华东", "华北", "西南"],
            "tier": ["platinum", "gold", "silver", "attention", "silver"],
            "account_manager": ["AM-1", "AM-1", "AM-2", "AM-2", "AM-1"],
            "acquisition_channel": ["referral", "event", "online", "sales", "online"],
        }
    )
    orders = pd.DataFrame(
        {
            "order_id": [f"O{i}" for i in range(1, 11)],
            "customer_id": ["C1", "C1", "C1", "C2", "C2", "C3", "C4", "C5", "C5", "C1"],
            "order_date": [
                "2023-01-10",
                "2024-06-01",
                "2026-09-15",
                "2023-05-01",
                "2025-01-20",
                "2024-02-15",
                "2024-08-01",
                "2025-03-03",
                "2026-10-20",
                "2026-10-01",
            ],
            "amount": [
                120000.0,
                80000.0,
                150000.0,
                40000.0,
                30000.0,
                12000.0,
                3000.0,
                9000.0,
                11000.0,
                -5000.0,
            ],
            "category": ["hardware"] * 10,
        }
    )
    contracts = pd.DataFrame(
        {
            "contract_id": ["K1", "K2", "K3"],
            "customer_id": ["C1", "C1", "C2"],
            "start_date": ["2024-01-01", "2025-01-01", "2024-06-01"],
            "end_date": ["2024-12-31", "2026-12-31", "2025-05-31"],
            "annual_value": [100000.0, 110000.0, 40000.0],
            "renewal_of": [None, "K1", None],
        }
    )
    touches = pd.DataFrame(
        {
            "touch_id": ["T1", "T2", "T3", "T4"],
            "customer_id": ["C1", "C1", "C2", "C3"],
            "touched_at": [
                "2026-09-01 10:00:00",
                "2026-10-01 09:30:00",
                "2025-01-05 14:00:00",
                "2026-08-08 11:00:00",
            ],
            "channel": ["visit", "call", "email", "wechat"],
            "responded": ["true", "false", "true", ""],
        }
    )
    tickets = pd.DataFrame(
        {
            "ticket_id": ["S1", "S2", "S3"],
            "customer_id": ["C1", "C2", "C3"],
            "opened_at": ["2026-09-01 08:00:00", "2025-01-10 08:00:00", "2026-10-25 08:00:00"],
            "first_response_at": ["2026-09-02 08:00:00", "2025-01-17 08:00:00", ""],
            "resolved_at": ["2026-09-05 08:00:00", "2025-01-20 08:00:00", ""],
            "priority": ["high", "normal", "urgent"],
            "category": ["billing", "quality", "delivery"],
        }
    )
    surveys = pd.DataFrame(
        {
            "survey_id": ["V1", "V2", "V3"],
            "customer_id": ["C1", "C2", "C3"],
            "surveyed_at": ["2026-06-01", "2025-01-25", "2026-07-01"],
            "nps": [9, 3, 7],
            "csat": [5, 2, 4],
            "dim_need_fit": [4.5, 2.0, 3.5],
        }
    )
    activity = pd.DataFrame(
        {
            "customer_id": ["C1", "C1", "C3"],
            "period_start": ["2026-10-05", "2026-10-12", "2026-10-12"],
            "logins": [5, 3, 0],
        }
    )
    churn_events = pd.DataFrame(
        {
            "customer_id": ["C2"],
            "churned_at": ["2025-06-30"],
            "reason": ["service"],
            "competitor": ["CompA"],
            "lost_value": [70000.0],
        }
    )
    return {
        "customers": customers,
        "orders": orders,
        "contracts": contracts,
        "touches": touches,
        "tickets": tickets,
        "surveys": surveys,
        "activity": activity,
        "churn_events": churn_events,
        "pilots": pd.DataFrame(
            {
                "pilot": ["amber_monthly_touch"] * 4,
                "customer_id": ["C1", "C2", "C3", "C4"],
                "arm": ["treatment", "control", "treatment", "control"],
                "started_at": ["2025-11-03"] * 4,
            }
        ),
    }


def write(
    folder: str | Path, fmt: str = "csv", drop: tuple[str, ...] = (), **replace: pd.DataFrame
) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, df in {**frames(), **replace}.items():
        if name in drop:
            continue
        if fmt == "csv":
            df.to_csv(folder / f"{name}.csv", index=False)
        elif fmt == "parquet":
            df.to_parquet(folder / f"{name}.parquet", index=False)
        elif fmt == "xlsx":
            df.to_excel(folder / f"{name}.xlsx", index=False)
    return folder


def params_file(
    folder: str | Path,
    data_dir: str | Path,
    extra: str = "",
    notebooks: tuple[str, ...] = ("00_data_check",),
) -> Path:
    return paramfile.write(
        folder,
        Path(data_dir).resolve(),
        extra,
        notebooks=notebooks,
        name="tiny review",
        as_of=AS_OF,
    )
