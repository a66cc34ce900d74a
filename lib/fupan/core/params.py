"""Run definitions: YAML files in ``params/`` validated by pydantic models.

A params file is a contract. Unknown keys are rejected with the nearest valid name, types
are checked, dates parsed, and every problem is reported in one message. Relative paths in
a params file are resolved against the folder that holds the file, so a run does not depend
on the directory it was started from.

Chapter sections (``diagnosis``, ``churn``, ``ltv``, ``simulation``, ``followup``, ``kpi``)
each own one model class in :mod:`fupan.core.chapter_params`. Loading a file also makes its
run context (:class:`fupan.core.paths.RunContext`): every path of the run, absolute.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from fupan.core import paths
from fupan.core.chapter_params import (
    ChurnParams,
    DiagnosisParams,
    FollowupParams,
    KpiParams,
    LtvParams,
    Section,
    SimulationParams,
)

NOTEBOOKS = (
    "00_data_check",
    "01_diagnosis",
    "02_churn_root_cause",
    "03_ltv_loss",
    "04_strategy_simulation",
    "05_kpi_tracking",
    "06_followup",
)


class ParamsError(ValueError):
    """A params file that does not meet its contract; the message lists every problem."""


class NumberFormat(Section):
    """How a column writes its numbers: "1.234,50" is ``{decimal: ",", thousands: "."}``."""

    decimal: Literal[".", ","] = Field(".", description="decimal mark")
    thousands: Literal[",", ".", " ", "'", ""] = Field(
        ",", description="thousands separator ('' for none)"
    )

    @model_validator(mode="after")
    def _distinct(self) -> NumberFormat:
        if self.decimal == self.thousands:
            raise ValueError("number_format: decimal and thousands must differ")
        return self


class DataSource(Section):
    """Where the data comes from and how its columns map onto the contract."""

    source: str = Field(
        description="folder of CSV/Parquet/xlsx files, a .duckdb file, or a database URL"
    )
    files: dict[str, str] = Field(
        default_factory=dict, description="table -> file name, when files are not named by table"
    )
    columns: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="table -> {source column: contract column}"
    )
    values: dict[str, dict[str, dict[str, str]]] = Field(
        default_factory=dict,
        description="table -> column -> {source value: contract value}, e.g. Chinese channel names",
    )
    encoding: str = Field(
        "auto", description="CSV encoding: auto (UTF-8, UTF-8-SIG, GB18030) or a codec"
    )
    sheet: str | int | None = Field(None, description="Excel sheet name or index (default: first)")
    sheets: dict[str, str | int] = Field(
        default_factory=dict,
        description="table -> Excel sheet name or 0-based index; overrides data.sheet",
    )
    encodings: dict[str, str] = Field(
        default_factory=dict, description="table -> CSV encoding; overrides data.encoding"
    )
    header_row: int | None = Field(
        None,
        description="0-based header row in Excel/CSV files; default: detected (title rows skipped)",
    )
    orphans: Literal["fail", "drop"] = Field(
        "drop", description="rows whose customer_id is not in customers: stop, or drop and report"
    )
    orphan_threshold: float = Field(
        0.05,
        ge=0,
        le=1,
        description="a table with a larger share of orphan rows stops the run even with orphans: drop",
    )
    number_format: NumberFormat | dict[str, NumberFormat | dict[str, NumberFormat]] | None = Field(
        None,
        description="how numbers are written: one format for every column, or per table "
        "({orders: {decimal: ',', thousands: '.'}}), or per column ({orders: {amount: {...}}}); "
        "default: a decimal point, with ',' accepted only as a thousands separator",
    )
    bad_amounts: Literal["fail", "drop"] = Field(
        "fail",
        description="orders with an empty, NaN or infinite amount: stop, or drop and report",
    )
    orders_before_acquisition: Literal["warn", "fail", "adjust"] = Field(
        "warn",
        description="orders dated before the customer's acquired_at: keep both and report "
        "(warn), stop (fail), or move acquired_at to the first order and report (adjust)",
    )

    def number_format_for(self, table: str, column: str) -> NumberFormat | None:
        """The number format of one column: per column, else per table, else global."""
        nf = self.number_format
        if nf is None or isinstance(nf, NumberFormat):
            return nf
        per = nf.get(table)
        if isinstance(per, dict):
            return per.get(column)
        return per


class Tiers(Section):
    """The tier vocabulary the business assigns, best first."""

    order: list[str] = ["platinum", "gold", "silver", "attention"]
    core: list[str] = ["platinum", "gold"]
    labels: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {
            "platinum": {"zh": "白金", "en": "Platinum"},
            "gold": {"zh": "黄金", "en": "Gold"},
            "silver": {"zh": "银牌", "en": "Silver"},
            "attention": {"zh": "需关注", "en": "Needs attention"},
        }
    )
    # Annual-spend floors per tier (same order as ``order``; the last tier has floor 0).
    spend_floors: list[float] = [200_000, 50_000, 10_000, 0]
    dormant_days: int = Field(
        365, description="no order for this long: dormant, whatever the spend"
    )

    @model_validator(mode="after")
    def _check(self) -> Tiers:
        missing = [t for t in self.core if t not in self.order]
        if missing:
            raise ValueError(f"core tiers {missing} are not in tiers.order {self.order}")
        if "spend_floors" not in self.model_fields_set and len(self.spend_floors) != len(
            self.order
        ):
            # Not set in the params: data.load resolves them from the data's spend
            # (fupan.io.tiers.resolve_floors); until then no floor is reachable but the last.
            inf = float("inf")
            object.__setattr__(self, "spend_floors", [inf] * (len(self.order) - 1) + [0.0])
            return self
        if len(self.spend_floors) != len(self.order):
            raise ValueError("tiers.spend_floors needs one floor per tier in tiers.order")
        if any(a < b for a, b in zip(self.spend_floors, self.spend_floors[1:], strict=False)):
            raise ValueError("tiers.spend_floors must decrease from the best tier to the worst")
        return self


class ChurnDefinition(Section):
    """How churn is defined for this business."""

    dormancy_days: int = Field(
        365, gt=0, description="non-contractual: no order for this long = churned"
    )
    grace_days: int = Field(60, ge=0, description="contractual: days after end_date to renew")
    reasons: list[str] = [
        "service",
        "price",
        "competitor",
        "no_contact",
        "product_fit",
        "relocation",
        "other",
    ]


class Format(Section):
    currency: str = "CNY"
    currency_symbol: str = "¥"
    thousands: str = ","
    decimals: int = 1


class Privacy(Section):
    """Masking for decks and exports meant for wide circulation."""

    mask_pii: bool = Field(
        False, description="replace customer names and ids by salted hashes in the deck"
    )
    salt: str | None = Field(
        None, description="masking key; the FUPAN_PII_SALT environment variable wins"
    )


class Benchmarks(Section):
    """Industry benchmarks and targets (``params/benchmarks.yaml``)."""

    churn_rate: float = 0.12
    core_churn_rate: float = 0.12
    top_n_renewal_target: float = 0.75
    renewal_rate: float = 0.80
    first_response_days: float = 3.5
    resolution_days: float = 7.0
    sla_first_response_days: dict[str, float] = Field(
        default_factory=lambda: {"platinum": 1.0, "gold": 2.0, "silver": 3.5, "attention": 5.0}
    )
    nps_alert_below: float = 40.0
    nps_target: float = 45.0
    lost_ltv_rate: float = 0.10
    net_revenue_retention: float = 1.0
    touch_policy_per_quarter: dict[str, float] = Field(
        default_factory=lambda: {"platinum": 6, "gold": 4, "silver": 2, "attention": 1}
    )
    kpi_targets: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="kpi -> {target, alert}; read by fupan.chapters.kpi"
    )


class Params(Section):
    """A whole run definition."""

    name: str | dict[str, str] = Field(
        "fupan review",
        description="the run's name on the title slide and every footer: one text, or one per "
        "language, {zh: 2026 年度客户复盘, en: 2026 customer review}; after loading, the text "
        "in the run's language",
    )
    name_en: str | None = Field(
        None, description="the English name when name is a single (Chinese) text"
    )
    goals: dict[str, list[str]] = Field(
        default_factory=dict,
        description="the review's goals per language, for the background slide",
    )
    kind: Literal["annual_review", "monthly"] = "annual_review"
    lang: Literal["zh", "en"] = "zh"
    as_of: dt.date
    period_start: dt.date | None = Field(
        None, description="start of the review period (default: one year before as_of)"
    )
    seed: int = 42
    business_model: Literal["contractual", "non_contractual"] = "non_contractual"
    engine: Literal["duckdb", "spark"] = "duckdb"
    data: DataSource
    notebooks: list[str] = list(NOTEBOOKS)
    cell_timeout_seconds: int = Field(900, gt=0)
    parallel_notebooks: int = Field(
        2,
        ge=1,
        description=(
            "notebooks executed at once, each in its own kernel (1: one after another); "
            "each kernel holds the data it reads, so memory grows with this"
        ),
    )
    engine_memory_gb: float | None = Field(
        2.0,
        gt=0,
        description=(
            "memory each notebook's DuckDB engine may hold before it spills to disk in the "
            "run's work folder (null: DuckDB's default, 80% of the machine per notebook)"
        ),
    )
    benchmarks_file: str | None = "benchmarks.yaml"
    reports_dir: str | None = Field(
        None,
        description=(
            "where runs are written, relative to this file "
            "(default: reports/ under the folder fupan is started in; --out overrides)"
        ),
    )
    benchmarks: Benchmarks = Field(default_factory=Benchmarks)
    tiers: Tiers = Field(default_factory=Tiers)
    churn_definition: ChurnDefinition = Field(default_factory=ChurnDefinition)
    format: Format = Field(default_factory=Format)
    privacy: Privacy = Field(default_factory=Privacy)
    diagnosis: DiagnosisParams = Field(default_factory=DiagnosisParams)
    churn: ChurnParams = Field(default_factory=ChurnParams)
    ltv: LtvParams = Field(default_factory=LtvParams)
    simulation: SimulationParams = Field(default_factory=SimulationParams)
    kpi: KpiParams = Field(default_factory=KpiParams)
    followup: FollowupParams = Field(default_factory=FollowupParams)
    # Set by load(): the folder relative paths are resolved against.
    base_dir: str = Field("", exclude=True)
    # Set by load(): the run's paths, absolute (see the context property).
    _context: paths.RunContext | None = PrivateAttr(None)
    _params_file: Path | None = PrivateAttr(None)

    @field_validator("notebooks")
    @classmethod
    def _known_notebooks(cls, v: list[str]) -> list[str]:
        bad = [n for n in v if n not in NOTEBOOKS]
        if bad:
            raise ValueError(f"unknown notebooks {bad}; known: {list(NOTEBOOKS)}")
        return v

    @field_validator("name")
    @classmethod
    def _name_languages(cls, v: str | dict[str, str]) -> str | dict[str, str]:
        if isinstance(v, dict):
            bad = [k for k in v if k not in ("zh", "en")]
            if bad:
                raise ValueError(f"name: unknown language {bad}; give name: {{zh: …, en: …}}")
            empty = [k for k, text in v.items() if not str(text).strip()]
            if empty or not v:
                raise ValueError(f"name: the {empty or 'zh/en'} text is empty")
        elif not v.strip():
            raise ValueError("name must not be empty")
        return v

    @model_validator(mode="after")
    def _run_name(self) -> Params:
        """``name`` becomes the text in the run's language (the title and every footer)."""
        object.__setattr__(
            self, "name", run_name(self.name, self.name_en, self.lang, self.kind, self.as_of)
        )
        return self

    @model_validator(mode="after")
    def _derive(self) -> Params:
        if self.period_start is None:
            object.__setattr__(
                self, "period_start", _years_before(self.as_of, 1) + dt.timedelta(days=1)
            )
        if self.period_start >= self.as_of:
            raise ValueError(f"period_start {self.period_start} must be before as_of {self.as_of}")
        return self

    def resolve(self, path: str) -> str:
        """A path from the params file, absolute, relative to the file's folder (URLs unchanged)."""
        return paths.absolute(path, self.base_dir)

    @property
    def context(self) -> paths.RunContext:
        """Every path of the run, absolute (:class:`fupan.core.paths.RunContext`).

        Made once by :func:`load`; params built otherwise (or a copy whose paths were
        changed) get theirs on first use."""
        if self._context is None or self._context.key != _context_key(self):
            self._context = run_context(self, self._params_file)
        return self._context

    def tier_label(self, tier: str) -> str:
        return self.tiers.labels.get(tier, {}).get(self.lang, tier)


_CJK = re.compile(r"[\u3400-\u9fff]")


_DEFAULT_EN_NAME = {"annual_review": "Customer review {year}", "monthly": "Monthly customer report"}


def run_name(
    name: str | dict[str, str], name_en: str | None, lang: str, kind: str, as_of: dt.date
) -> str:
    """The run's name in ``lang``.

    ``name`` is one text or ``{zh: …, en: …}``; ``name_en`` is the English one beside a
    single text. An English deck never shows a Chinese run name: without an English name
    it says the kind of review and the year (and warns, naming the fix).

    Raises
    ------
    ValueError
        when ``name`` is per language and ``name_en`` is given too, or the per-language
        name lacks the run's language.
    """
    if isinstance(name, dict):
        if name_en is not None:
            raise ValueError(
                "give the English name once: name: {zh: …, en: …} or name_en, not both"
            )
        if lang in name:
            return name[lang]
        if lang == "en" or _CJK.search(next(iter(name.values()))):
            raise ValueError(
                f"name has no '{lang}' text for this {lang} deck (it has {sorted(name)}): "
                f"add it, e.g. name: {{zh: …, en: …}}"
            )
        return next(iter(name.values()))
    if lang == "en" and name_en:
        return name_en
    if lang == "en" and _CJK.search(name):
        fallback = _DEFAULT_EN_NAME[kind].format(year=as_of.year)
        warnings.warn(
            f"name '{name}' is Chinese and the deck is English: it is titled '{fallback}'. "
            "Set name: {zh: …, en: …} or name_en to choose the English name.",
            stacklevel=2,
        )
        return fallback
    return name


def _years_before(d: dt.date, years: int) -> dt.date:
    try:
        return d.replace(year=d.year - years)
    except ValueError:  # 29 February
        return d.replace(year=d.year - years, day=28)


def _nearest(name: str, options: list[str]) -> str:
    near = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    return (
        f" — did you mean '{near[0]}'?" if near else f" — valid keys: {', '.join(sorted(options))}"
    )


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that owns the field at ``loc`` (for 'did you mean')."""
    model: type[BaseModel] = Params
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            return None
    return model


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: {err.error_count()} problem(s) in the params"]
    for e in err.errors():
        loc = tuple(e["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            model = _model_at(loc)
            hint = _nearest(str(loc[-1]), list(model.model_fields)) if model else ""
            lines.append(f"  - unknown key '{where}'{hint}")
        else:
            got = e.get("input")
            got_s = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"  - {where}: {e['msg']}{got_s}")
    return "\n".join(lines)


class _Loader(yaml.SafeLoader):
    """YAML without implicit timestamps: dates stay strings so pydantic reports bad ones."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader) or {}
    except FileNotFoundError:
        raise ParamsError(f"params file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of keys at the top level")
    return raw


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load(path: str | Path, **overrides: Any) -> Params:
    """Read, merge and validate a params file.

    Parameters
    ----------
    path : the YAML run definition.
    **overrides : top-level or dotted keys (``data.source``) that replace the file's values;
        ``None`` and empty strings are ignored so notebook defaults can pass through.

    Raises
    ------
    ParamsError
        listing every problem at once, with the nearest valid key for unknown ones.
    """
    path = Path(path).resolve()
    raw = _read_yaml(path)
    for key, value in overrides.items():
        if value is None or value == "":
            continue
        node = raw
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    # A params file copied on its own has no benchmarks or scenarios beside it: the default
    # names fall back to the packaged files with a warning. A file named otherwise must
    # exist (falling back would silently price what the user did not ask for).
    bench_file = raw.get("benchmarks_file", "benchmarks.yaml")
    if bench_file:
        bench_path = path.parent / bench_file
        if not bench_path.exists():
            if bench_file != "benchmarks.yaml":
                raise ParamsError(f"{path}: benchmarks_file '{bench_file}' not found beside it")
            bench_path = _fallback(path, "benchmarks_file", bench_file, "benchmarks.yaml")
        raw["benchmarks"] = _merge(_read_yaml(bench_path), raw.get("benchmarks") or {})
    sim = raw.get("simulation")
    if isinstance(sim, dict) and sim.get("scenarios_file") == "scenarios.yaml":
        if not (path.parent / "scenarios.yaml").exists():
            _fallback(path, "simulation.scenarios_file", "scenarios.yaml", "scenarios.yaml")
            # Left at its default, fupan.core.scenarios takes the packaged file and the deck says so.
            del sim["scenarios_file"]
    try:
        params = Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(format_validation_error(err, str(path))) from None
    object.__setattr__(params, "base_dir", str(path.parent))
    params._params_file = path
    params._context = run_context(params, path)
    return params


def _context_key(params: Params) -> tuple[Any, ...]:
    return (
        params.base_dir,
        params.data.source,
        params.reports_dir,
        params.benchmarks_file,
        params.simulation.scenarios_file,
        params.kind,
        params.as_of,
    )


def run_context(params: Params, params_file: Path | None = None) -> paths.RunContext:
    """The run's paths, resolved against the params file's folder: the one place a run
    resolves them (outputs named on the command line are the CLI's, against the shell's
    folder)."""
    configured = params.reports_dir
    reports = (
        Path(params.resolve(str(Path(configured).expanduser()))).resolve()
        if configured
        else (Path.cwd() / "reports").resolve()
    )
    bench, scen = params.benchmarks_file, params.simulation.scenarios_file
    return paths.RunContext(
        params_file=params_file,
        base_dir=Path(params.base_dir) if params.base_dir else None,
        data=params.resolve(params.data.source),
        benchmarks_file=Path(params.resolve(bench)) if bench else None,
        scenarios_file=Path(params.resolve(scen)) if scen else None,
        reports_dir=reports,
        run_name=f"{params.kind}-{params.as_of.isoformat()}",
        key=_context_key(params),
    )


#: Benchmarks and scenarios shipped with the package, used when a params file has none beside it.
DEFAULTS_DIR = Path(__file__).resolve().parent / "defaults"


def packaged_default(name: str) -> Path:
    """The packaged default file ``name`` (``benchmarks.yaml``, ``scenarios.yaml``)."""
    packaged = DEFAULTS_DIR / name
    if packaged.exists():
        return packaged
    return Path(__file__).resolve().parents[3] / "params" / name  # a source checkout


def _fallback(params_path: Path, key: str, name: str, default: str) -> Path:
    import warnings

    fallback = packaged_default(default)
    if not fallback.exists():
        raise ParamsError(
            f"{params_path}: {key} '{name}' not found beside it, and no packaged default"
        )
    warnings.warn(
        f"{key} '{name}' is not beside {params_path.name}; using the packaged default "
        f"{fallback} (copy it beside the params file to change it)",
        UserWarning,
        stacklevel=3,
    )
    return fallback


def dump(params: Params) -> dict[str, Any]:
    """The params as plain JSON-able values (for manifests and re-runs)."""
    import re

    out = params.model_dump(mode="json")
    # A database URL may carry a password: manifests are shared, credentials are not.
    out["data"]["source"] = re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", params.context.data)
    return out
