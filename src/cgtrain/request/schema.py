"""The TrainingRequest schema: one strict, validated description of a training job.

Validated once at the boundary (Ludwig habit); inner code trusts it. Errors are
turned into one line per problem naming the field, the value and the fix.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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
        if family.missing():  # e.g. textcnn on a core install: the pip command, not an ImportError later
            raise ValueError(f"family '{self.family}' needs {', '.join(family.missing())}, not installed here; "
                             f"install with: pip install 'cgtrain[{family.extra}]'")
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
                       "ordinal_names", "sublinear_tf", "name_flow")


class FeaturesConfig(Strict):
    kind: Literal["tfidf", "hashing"] = "tfidf"
    ngram_max: int = Field(default=2, ge=1, le=4)
    max_features: int | None = Field(default=50_000, gt=0)
    min_df: int = Field(default=2, ge=1)
    metrics: bool = True
    split_names: bool = True  # the tokenizer's sub-token split (dataBuffer -> data buffer); false: names whole
    string_words: bool = False  # also the words inside string literals (after their <str> token)
    ordinal_names: bool = False  # also the tokens with local names numbered by first use (`<v0> = <v1> ;`)
    sublinear_tf: bool = True
    # also terms for what happens to each local name: ordered pairs of its uses' statement contexts
    # (`@=_new_<v>>>delete_[_]@`, cgtrain.features.flow); read from the numbered copy, so with ordinal_names only
    name_flow: bool = False
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
    # Rows left out of the evaluation side (test split, CV validation folds) because they repeat a training row:
    # rows: the code (exact, and up to names / formatting) and the row's feature values; none: nothing;
    # auto: rows for code datasets (a copied function is leakage), none for plain tables (a repeated feature
    # vector is how tables are: dropping it leaves an unrepresentative test split of the rare rows).
    dedup: Literal["auto", "rows", "none"] = "auto"


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
    # a name becomes directory, experiment and registered-model names: kept to what every store takes
    name: str = Field(default="model", pattern=r"^[A-Za-z0-9_.-]+$", max_length=128)
    task: Literal[TASKS] = "binary"  # type: ignore[valid-type]
    seed: int = Field(default=0, ge=0, le=2**32 - 1)  # what numpy's and scikit-learn's RandomState accept
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
