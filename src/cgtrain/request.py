"""The TrainingRequest: one strict, validated description of a training job.

Validated once at the boundary (Ludwig habit); inner code trusts it. Errors are
turned into one line per problem naming the field, the value and the fix.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cgtrain.errors import CgtrainError
from cgtrain.plugins import did_you_mean

SAMPLERS = ("grid", "random", "tpe", "gp", "cmaes", "qmc", "nsga2")
MULTI_OBJECTIVE_SAMPLERS = ("nsga2", "tpe", "random", "grid", "qmc")
OBJECTIVES = ("metric", "latency_ms", "model_kb")  # latency: ms per 1000 rows; size: KiB of the model file
PRUNERS = ("none", "median", "percentile", "successive_halving", "hyperband")
CLASSIFICATION_METRICS = ("f1", "accuracy", "precision", "recall", "roc_auc", "pr_auc", "mcc", "balanced_accuracy")
# validation.metric per task; the first one is the task's default
TASK_METRICS = {
    "binary": CLASSIFICATION_METRICS, "multiclass": CLASSIFICATION_METRICS,
    "regression": ("rmse", "mae", "r2"),
    "anomaly": ("precision_at_k", "roc_auc", "pr_auc"),  # need labels; without them no search is run
    "clustering": ("silhouette", "adjusted_rand", "normalized_mutual_info"),
}
TASKS = tuple(TASK_METRICS)
METRICS = tuple(dict.fromkeys(m for names in TASK_METRICS.values() for m in names))
DEFAULT_FAMILIES = {"binary": ("logreg", "linear_svm", "lightgbm"), "multiclass": ("logreg", "linear_svm", "lightgbm"),
                    "regression": ("ridge", "random_forest", "lightgbm"), "anomaly": ("isolation_forest",),
                    "clustering": ("kmeans",)}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- search spaces as data (Optuna distributions) ---------------------------------
class FloatParam(Strict):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _range(self):
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0, got {self.low}")
        return self


class IntParam(Strict):
    type: Literal["int"]
    low: int
    high: int
    step: int = 1
    log: bool = False

    @model_validator(mode="after")
    def _range(self):
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self


class CategoricalParam(Strict):
    type: Literal["categorical"]
    choices: list[Union[str, int, float, bool, None]] = Field(min_length=1)


ParamSpec = Annotated[Union[FloatParam, IntParam, CategoricalParam], Field(discriminator="type")]


class Candidate(Strict):
    """A model family to try, with an optional search space and fixed params."""

    family: str
    space: dict[str, ParamSpec] | None = None  # None: the family's default space
    params: dict[str, Any] = Field(default_factory=dict)  # fixed, not searched

    @field_validator("family")
    @classmethod
    def _known_family(cls, name: str) -> str:
        from cgtrain.models import FAMILIES

        if name not in FAMILIES:
            raise ValueError(f"unknown family '{name}'{did_you_mean(name, FAMILIES.names())}; "
                             f"choose one of: {', '.join(FAMILIES.names())}")
        return name

    @model_validator(mode="after")
    def _known_params(self):
        from cgtrain.models import FAMILIES

        family = FAMILIES.get(self.family)
        allowed = family.param_names()
        for key in list(self.space or {}) + list(self.params):
            if key not in allowed:
                raise ValueError(f"family '{self.family}' has no parameter '{key}'"
                                 f"{did_you_mean(key, sorted(allowed))}; parameters: {', '.join(sorted(allowed))}")
        if family.check_params is not None:
            family.check_params(self.params)
        return self


# --- the request sections ----------------------------------------------------------
class DatasetConfig(Strict):
    path: str
    format: Literal["auto", "jsonl", "csv", "parquet", "dir"] = "auto"
    code_column: str | None = "code"  # None: tabular rows only (numeric/categorical columns)
    label_column: str | None = "label"  # None: unlabelled (task anomaly / clustering only)
    numeric_columns: list[str] = Field(default_factory=list)  # median-imputed, scaled; bad values quarantined
    categorical_columns: list[str] = Field(default_factory=list)  # one-hot; many levels: target + count encoded
    datetime_columns: list[str] = Field(default_factory=list)  # -> year, month, day, weekday, hour numbers
    text_columns: list[str] = Field(default_factory=list)  # free text -> TF-IDF word n-grams
    id_column: str | None = "id"  # None: ids are line numbers
    group_column: str | None = "group"  # None: every row is its own group
    segment_columns: list[str] = Field(default_factory=list)
    language: str | None = None  # None: guessed per function
    classes: list[Union[str, int, bool]] | None = None  # allowed labels; binary default: 0/1, true/false
    labels_file: str | None = None  # for format 'dir': CSV/JSONL with path + label
    max_code_chars: int = Field(default=200_000, gt=0)
    max_bad_fraction: float = Field(default=0.01, ge=0, le=1)
    sample: int | None = Field(default=None, gt=0)  # train on a seeded sample of whole groups
    # Rows whose code (up to names found in no other row) also occurs with another label:
    # keep = report only; drop = remove before splitting (label_conflicts.jsonl); off = skip the check.
    label_conflicts: Literal["keep", "drop", "off"] = "keep"

    @model_validator(mode="after")
    def _columns(self):
        tabular = [*self.numeric_columns, *self.categorical_columns, *self.datetime_columns, *self.text_columns]
        if self.code_column is None and not tabular:
            raise ValueError("code_column is null and no numeric_columns or categorical_columns are listed; "
                             "name the code column, or list the table's feature columns")
        dupes = sorted({c for c in tabular if tabular.count(c) > 1})
        if dupes:
            raise ValueError(f"column {dupes[0]!r} is listed twice in numeric/categorical/datetime/text_columns; "
                             f"list it once")
        for key in ("code_column", "label_column", "id_column", "group_column"):
            if getattr(self, key) is not None and getattr(self, key) in tabular:
                raise ValueError(f"{key} {getattr(self, key)!r} is also a feature column; remove it from "
                                 f"numeric_columns/categorical_columns")
        return self


FEATURE_SEARCH_KEYS = ("kind", "ngram_max", "max_features", "min_df", "metrics", "split_names", "string_words",
                       "sublinear_tf")


class FeaturesConfig(Strict):
    kind: Literal["tfidf", "hashing"] = "tfidf"
    ngram_max: int = Field(default=2, ge=1, le=4)
    max_features: int | None = Field(default=50_000, gt=0)
    min_df: int = Field(default=2, ge=1)
    metrics: bool = True
    split_names: bool = True  # the tokenizer's sub-token split (dataBuffer -> data buffer); false: names whole
    string_words: bool = False  # also the words inside string literals (after their <str> token)
    sublinear_tf: bool = True
    # Featurisation searched with the model (fitted per fold, cached across trials that share it);
    # keys from FEATURE_SEARCH_KEYS, e.g. {ngram_max: {type: int, low: 1, high: 4}}
    space: dict[str, ParamSpec] | None = None

    @field_validator("space")
    @classmethod
    def _space_keys(cls, space):
        for key in space or {}:
            if key not in FEATURE_SEARCH_KEYS:
                raise ValueError(f"features.space: unknown key '{key}'{did_you_mean(key, list(FEATURE_SEARCH_KEYS))}"
                                 f"; searchable: {', '.join(FEATURE_SEARCH_KEYS)}")
        return space


class HpoConfig(Strict):
    sampler: Literal[SAMPLERS] = "tpe"  # type: ignore[valid-type]
    n_trials: int = Field(default=20, ge=1)
    timeout_s: float | None = Field(default=None, gt=0)
    pruner: Literal[PRUNERS] = "none"  # type: ignore[valid-type]  # per CV fold, and per epoch for neural families
    # AutoML: a wall-clock budget for the whole run (data, study, ensemble, refit, test); families are
    # tried cheap first at low fidelity, expensive ones when they promise gains. n_trials stays a cap.
    budget_s: float | None = Field(default=None, gt=0)
    trial_timeout_s: float | None = Field(default=None, gt=0)  # per trial (default with budget_s: budget / 4)
    objectives: list[Literal[OBJECTIVES]] = Field(default_factory=lambda: ["metric"])  # type: ignore[valid-type]
    ensemble: Literal["none", "voting", "stacking", "auto"] = "none"  # of the top trials, kept only if CV is better
    ensemble_size: int = Field(default=5, ge=2, le=20)  # top-k trials an ensemble may draw on
    warm_start: bool = False  # first try the best params of earlier runs of this request name (sibling run dirs)
    # Parallel trials on one shared study (tune/parallel.py): N local worker processes; the storage by URI:
    # journal:PATH (Optuna JournalStorage; default: run_dir/study.journal) or postgresql://... (across machines)
    workers: int = Field(default=1, ge=1, le=256)
    storage: str | None = None
    study_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")  # default: cgtrain
    executor: Literal["local", "ray"] = "local"  # ray: trials as Ray tasks (ray_address; a local cluster if null)
    ray_address: str | None = None

    @model_validator(mode="after")
    def _shared_storage(self):
        uri = self.storage
        if uri is not None and uri.startswith("sqlite"):
            if self.workers > 1 or self.executor != "local":
                raise ValueError(f"storage {uri!r}: SQLite cannot be shared by several worker processes; use "
                                 f"journal:PATH (one machine) or postgresql://user@host/db (several)")
        elif uri is not None and not uri.startswith(("journal:", "postgresql://", "postgres://",
                                                     "postgresql+psycopg://")):
            raise ValueError(f"storage {uri!r} is not a study URI; use journal:PATH or postgresql://user@host/db")
        if self.ray_address is not None and self.executor != "ray":
            raise ValueError("ray_address needs executor: ray")
        return self

    @model_validator(mode="after")
    def _objectives(self):
        goals = self.objectives
        if not goals or goals[0] != "metric" or len(set(goals)) != len(goals):
            raise ValueError(f"objectives must start with 'metric' and list each objective once, got {goals}; "
                             f"e.g. objectives: [metric, latency_ms]")
        if len(goals) > 1:
            if self.sampler not in MULTI_OBJECTIVE_SAMPLERS:
                raise ValueError(f"sampler {self.sampler!r} cannot search several objectives; use one of "
                                 f"{', '.join(MULTI_OBJECTIVE_SAMPLERS)} (e.g. sampler: nsga2)")
            for key, off in (("pruner", "none"), ("ensemble", "none"), ("budget_s", None)):
                if getattr(self, key) != off:
                    raise ValueError(f"{key} {getattr(self, key)!r} needs a single objective; with objectives "
                                     f"{goals} set {key}: {'null' if off is None else off}")
        return self


class ValidationConfig(Strict):
    folds: int = Field(default=5, ge=2, le=20)
    test_fraction: float = Field(default=0.2, gt=0, lt=0.9)
    metric: Literal[METRICS] = "f1"  # type: ignore[valid-type]
    # train: the saved model is the one tested; all: after the test, refit once more on training + test rows
    # (the test metrics stay those of the training-rows model; more families seen generalise better)
    final_fit: Literal["train", "all"] = "train"


class QaConfig(Strict):
    """Quality assurance after the refit: calibration, decision threshold, audit, explanations, report."""

    enabled: bool = True  # false: no QA records and no report.html (the model and metrics are unaffected)
    calibration: Literal["none", "auto", "isotonic", "sigmoid"] = "none"  # auto: chosen by CV (Brier)
    threshold: Literal["argmax", "max_f1", "fpr", "precision"] = "argmax"  # chosen on out-of-fold predictions
    max_fpr: float | None = Field(default=None, gt=0, lt=1)  # for threshold: fpr
    min_precision: float | None = Field(default=None, gt=0, le=1)  # for threshold: precision
    precision_at_k: list[int] = Field(default_factory=lambda: [10, 50, 100])
    length_buckets: int = Field(default=4, ge=1, le=10)  # code-length quantile buckets in the audit
    alpha: float = Field(default=0.05, gt=0, lt=0.5)  # significance level of segment flags
    shap_rows: int = Field(default=200, ge=1, le=5000)  # test rows explained for global attributions
    explain_examples: int = Field(default=6, ge=0, le=100)  # test rows with stored per-example attributions

    @model_validator(mode="after")
    def _policy_needs(self):
        if self.threshold == "fpr" and self.max_fpr is None:
            raise ValueError("threshold 'fpr' needs max_fpr, e.g. qa.max_fpr=0.05")
        if self.threshold == "precision" and self.min_precision is None:
            raise ValueError("threshold 'precision' needs min_precision, e.g. qa.min_precision=0.9")
        if any(k < 1 for k in self.precision_at_k):
            raise ValueError(f"precision_at_k values must be >= 1, got {self.precision_at_k}")
        return self


class DistributedConfig(Strict):
    """Data-parallel training (torch DDP) of neural families: nproc processes on this machine."""

    nproc: int = Field(default=2, ge=1, le=64)
    backend: Literal["gloo", "nccl"] = "gloo"  # nccl: one CUDA device per process


class TrainSection(Strict):
    """Where and how neural families train (train/distributed.py); leave out for the defaults."""

    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$")  # auto: CUDA when present
    distributed: DistributedConfig | None = None


def _default_candidates() -> list[Candidate]:
    return [Candidate(family=name) for name in ("logreg", "linear_svm", "lightgbm")]


class TrainingRequest(Strict):
    name: str = Field(default="model", pattern=r"^[A-Za-z0-9_.-]+$")
    task: Literal[TASKS] = "binary"  # type: ignore[valid-type]
    seed: int = 0
    dataset: DatasetConfig
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    candidates: list[Candidate] = Field(default_factory=_default_candidates, min_length=1)
    hpo: HpoConfig = Field(default_factory=HpoConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    imbalance: Literal["none", "class_weight", "smote"] = "none"
    qa: QaConfig = Field(default_factory=QaConfig)
    train: TrainSection | None = None  # device and DDP of neural families; None: as before (auto, one process)

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, data: Any) -> Any:
        """A task's default metric and candidates when the request leaves them out."""
        task = data.get("task", "binary") if isinstance(data, dict) else None
        if not isinstance(task, str) or task not in TASK_METRICS or task in ("binary", "multiclass"):
            return data
        data = dict(data)
        validation = data.get("validation")
        if validation is None or (isinstance(validation, dict) and "metric" not in validation):
            data["validation"] = {**(validation or {}), "metric": TASK_METRICS[task][0]}
        if "candidates" not in data:
            data["candidates"] = [{"family": name} for name in DEFAULT_FAMILIES[task]]
        return data

    @model_validator(mode="after")
    def _fits_task(self):
        allowed = TASK_METRICS[self.task]
        metric = self.validation.metric
        if metric not in allowed:
            raise ValueError(f"validation.metric {metric!r} does not apply to task: {self.task}; use one of "
                             f"{', '.join(allowed)} (e.g. validation.metric: {allowed[0]})")
        from cgtrain.models import FAMILIES

        for i, cand in enumerate(self.candidates):
            fam = FAMILIES.get(cand.family)
            if not fam.supports(self.task):
                fits = [n for n in FAMILIES.names() if FAMILIES.get(n).supports(self.task)]
                raise ValueError(f"candidates.{i}.family: '{cand.family}' does not support task: {self.task} "
                                 f"(it supports {', '.join(sorted(fam.tasks))}); families for {self.task}: "
                                 f"{', '.join(fits)}")
            tabular = self.dataset.numeric_columns or self.dataset.categorical_columns
            if tabular and fam.input != "features":
                raise ValueError(f"candidates.{i}.family: '{cand.family}' reads code {fam.input} only, but the "
                                 f"dataset has numeric/categorical columns; use a family over the feature matrix")
        if self.dataset.label_column is None and self.task not in ("anomaly", "clustering"):
            raise ValueError(f"dataset.label_column is null, but task: {self.task} learns from labels; name the "
                             f"label column, or use task: anomaly / clustering")
        if self.task == "regression" and self.imbalance != "none":
            raise ValueError(f"imbalance: {self.imbalance} balances classes; task: regression has none; "
                             f"set imbalance: none")
        return self

    @model_validator(mode="after")
    def _unique_families(self):
        names = [c.family for c in self.candidates]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"candidates list family {dupes[0]!r} twice; merge them into one entry")
        return self


# --- loading, overrides, error messages ---------------------------------------------
class RequestError(CgtrainError):
    """An invalid request: `problems` holds one human line per problem."""

    def __init__(self, problems: list[str], source: str = "request"):
        self.problems, self.source = problems, source
        super().__init__(f"{source}: " + "; ".join(problems))


class _Yaml12Loader(yaml.SafeLoader):
    """Only true/false are booleans (YAML 1.2): `classes: [no, yes]` stays two strings, not [False, True]."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                    list("tTfF"))


MAX_REQUEST_BYTES = 1 << 20  # a request is a page of YAML; anything near this is not one
MAX_DEPTH = 64  # nesting levels
MAX_ALIASES = 1000  # YAML *alias uses
MAX_NODES = 200_000  # values after expanding aliases (a "billion laughs" expands to 10^9)


_TOO_DEEP = object()


class YamlLimitError(yaml.YAMLError):
    """The YAML is too deep or expands to too much: refused before anything is built."""


class _LimitedLoader(_Yaml12Loader):
    """Counts nesting and aliases while composing, and the expanded size before constructing."""

    def __init__(self, stream: Any):
        super().__init__(stream)
        self._depth, self._aliases = 0, 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise YamlLimitError(f"more than {MAX_ALIASES} aliases (*name); write the values out")
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YamlLimitError(f"nested deeper than {MAX_DEPTH} levels; a request needs a few")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _check_expanded(node)
        return self.construct_document(node)


def _check_expanded(root: yaml.Node) -> None:
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:  # depth is bounded by MAX_DEPTH, so recursion is safe
        if id(node) not in sizes:
            children = node.value if isinstance(node, yaml.SequenceNode) else \
                [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else []
            sizes[id(node)] = 1 + sum(size(c) for c in children)
        return sizes[id(node)]

    if size(root) > MAX_NODES:
        raise YamlLimitError(f"expands to {size(root)} values through aliases (limit {MAX_NODES}); "
                             f"write the values out")


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_LimitedLoader)  # noqa: S506 - a SafeLoader subclass


def _json_depth(data: Any) -> int:
    depth, todo = 0, [(data, 1)]
    while todo:
        node, d = todo.pop()
        depth = max(depth, d)
        if depth > MAX_DEPTH:
            return depth
        todo += [(v, d + 1) for v in (node.values() if isinstance(node, dict) else node
                                      if isinstance(node, list) else ())]
    return depth


def _flat(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    mark = getattr(exc, "problem_mark", None)
    if getattr(exc, "problem", None) and mark is not None:
        text = f"{exc.problem} at line {mark.line + 1}, column {mark.column + 1}"
    if "python/" in text and "constructor" in text:
        return f"{text}; tags such as !!python/... are not allowed: remove the tag"
    return text


def _request_text(path: Path) -> str:
    size = path.stat().st_size
    if size > MAX_REQUEST_BYTES:
        raise RequestError([f"the file is {size} bytes, over the {MAX_REQUEST_BYTES}-byte limit for a request; "
                            f"is this the request file?"], str(path))
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data:
        what = "UTF-16 text" if data.startswith((b"\xff\xfe", b"\xfe\xff")) or data[1:2] == b"\x00" else "binary"
        raise RequestError([f"the file is {what}, not UTF-8; save the request as UTF-8 text"], str(path))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RequestError([f"the file is not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}; Latin-1 "
                            f"or another legacy encoding?); save the request as UTF-8 text"], str(path)) from None


def read_request_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise RequestError([f"file not found: {path}"], str(path))
    text = _request_text(path)
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        data = json.loads(text) if path.suffix == ".json" else load_yaml(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise RequestError([f"not valid {kind}: {_flat(exc)}"], str(path)) from None
    except RecursionError:  # json's own limit, far below a stack overflow
        data = _TOO_DEEP
    if data is _TOO_DEEP or _json_depth(data) > MAX_DEPTH:
        raise RequestError([f"not a usable {kind} request: nested deeper than {MAX_DEPTH} levels"], str(path))
    if not isinstance(data, dict):
        raise RequestError([f"the top level must be a mapping of fields, got {type(data).__name__}"], str(path))
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply dotted `key=value` overrides (values parsed as YAML scalars/lists)."""
    data = json.loads(json.dumps(data))  # deep copy of plain data
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise RequestError([f"override {item!r} is not of the form key=value, e.g. hpo.n_trials=20"])
        try:
            value = load_yaml(raw) if raw != "" else None
        except yaml.YAMLError as exc:
            raise RequestError([f"override {item!r}: the value is not valid YAML ({_flat(exc)}); quote it, "
                                f"e.g. {key}='...' inside the shell's quotes"]) from None
        _set_dotted(data, key.strip().split("."), value, item)
    return data


def _set_dotted(node: Any, parts: list[str], value: Any, item: str) -> None:
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise RequestError([f"override {item!r}: '{part}' is not an index of a list of {len(node)}"])
            part = int(part)
        elif not isinstance(node, dict):
            raise RequestError([f"override {item!r}: '{'.'.join(parts[:depth])}' is not a section"])
        if last:
            node[part] = value
        else:
            if isinstance(node, dict) and node.get(part) is None:
                node[part] = {}
            node = node[part]


def parse_request(data: dict, source: str = "request") -> TrainingRequest:
    try:
        return TrainingRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestError(format_validation_errors(exc, data), source) from None


def load_request(path: str | Path, overrides: list[str] | None = None) -> TrainingRequest:
    data = apply_overrides(read_request_file(path), overrides or [])
    return parse_request(data, str(path))


def format_validation_errors(exc: ValidationError, data: dict) -> list[str]:
    lines = []
    for err in exc.errors(include_url=False):
        loc = [p for p in err["loc"] if not _is_union_tag(p)]
        field = ".".join(str(p) for p in loc) or "(top level)"
        lines.append(_one_line(err, field, loc, data))
    return list(dict.fromkeys(lines))  # de-duplicate, keep order


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and part in ("float", "int", "categorical")


def _one_line(err: dict, field: str, loc: list, data: dict) -> str:
    kind, value = err["type"], err.get("input")
    if kind == "extra_forbidden":
        parent, key = loc[:-1], str(loc[-1])
        allowed = _allowed_keys(parent, data)
        hint = did_you_mean(key, allowed) if allowed else ""
        return f"{field}: unknown key{hint}; allowed keys here: {', '.join(allowed)}"
    if kind == "missing":
        return f"{field}: required field is missing; add it to the request"
    if kind == "literal_error":
        choices = err.get("ctx", {}).get("expected", "")
        options = [c.strip().strip("'") for c in choices.replace(" or ", ",").split(",") if c.strip()]
        return f"{field}: {value!r} is not allowed{did_you_mean(str(value), options)}; choose one of: {', '.join(options)}"
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "value_error":
        return f"{field}: {msg}"
    return f"{field}: {msg} (got {value!r})"


def _allowed_keys(parent: list, data: dict) -> list[str]:
    model: Any = TrainingRequest
    node: Any = data
    for part in parent:
        node = node[part] if isinstance(node, (dict, list)) else None
        if isinstance(part, int):
            continue
        fields = getattr(model, "model_fields", None)
        if fields is None:
            return []
        if part not in fields:  # a user-chosen key of a dict section, e.g. a space's param name
            continue
        model = _model_of(fields[part].annotation, node)
    return sorted(model.model_fields) if hasattr(model, "model_fields") else []


def _model_of(annotation: Any, node: Any) -> Any:
    """The pydantic model inside an annotation such as `list[Candidate] | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg, node)
        if found is not None:
            return found
    return None


def request_json_schema() -> dict:
    return TrainingRequest.model_json_schema()


def request_to_yaml(request: TrainingRequest) -> str:
    return yaml.safe_dump(request.model_dump(mode="json"), sort_keys=False)
