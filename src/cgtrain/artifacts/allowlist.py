"""The exact names a cgtrain model file may hold (see `registry/audit.py`).

Fully-qualified names, never prefixes: a module prefix such as `numpy.` admits
`numpy.save` and friends. The lists hold what cgtrain's own families, featurizers,
ensembles and table steps write, and nothing else; `tests/security` checks that every
family's saved model needs no other name, and that hostile ones are refused. A family
that stores a new type adds its exact name here (saving refuses what loading would).
"""
from __future__ import annotations

# Plain values and containers (skops' JSON, list, dict, ... nodes).
_PLAIN = {
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.set", "builtins.str", "builtins.int",
    "builtins.float", "builtins.bool", "builtins.NoneType", "builtins.bytes", "builtins.slice",
    "collections.OrderedDict", "collections.defaultdict",
}
# numpy / scipy data: arrays, dtypes and scalars, sparse matrices. No functions.
_ARRAYS = {
    "numpy.ndarray", "numpy.dtype", "numpy.bool", "numpy.bool_", "numpy.str_", "numpy.bytes_",
    *(f"numpy.{t}" for t in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                             "float16", "float32", "float64", "longlong", "ulonglong", "intc", "uintc")),
    "numpy.random.mtrand.RandomState", "numpy.random._generator.Generator",
    *(f"scipy.sparse._{fmt}.{fmt}_{kind}" for fmt in ("csr", "csc", "coo")
      for kind in ("matrix", "array")),
}
# scikit-learn estimators and the internal types their fitted state holds, by exact name.
_SKLEARN = {
    "sklearn.pipeline.Pipeline", "sklearn.pipeline.FeatureUnion",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.feature_extraction.text.TfidfVectorizer", "sklearn.feature_extraction.text.TfidfTransformer",
    "sklearn.feature_extraction.text.HashingVectorizer", "sklearn.feature_extraction.text.CountVectorizer",
    "sklearn.impute._base.SimpleImputer", "sklearn.impute._base.MissingIndicator",
    "sklearn.preprocessing._data.StandardScaler", "sklearn.preprocessing._data.MaxAbsScaler",
    "sklearn.preprocessing._encoders.OneHotEncoder", "sklearn.preprocessing._encoders.OrdinalEncoder",
    "sklearn.preprocessing._target_encoder.TargetEncoder", "sklearn.preprocessing._label.LabelEncoder",
    "sklearn.feature_selection._univariate_selection.SelectKBest",
    "sklearn.feature_selection._from_model.SelectFromModel",
    "sklearn.decomposition._truncated_svd.TruncatedSVD",
    "sklearn.linear_model._logistic.LogisticRegression", "sklearn.linear_model._ridge.Ridge",
    "sklearn.linear_model._ridge.RidgeClassifier", "sklearn.linear_model._stochastic_gradient.SGDClassifier",
    "sklearn.linear_model._stochastic_gradient.SGDRegressor",
    "sklearn.naive_bayes.ComplementNB", "sklearn.naive_bayes.MultinomialNB",
    "sklearn.svm._classes.LinearSVC", "sklearn.svm._classes.LinearSVR",
    "sklearn.calibration.CalibratedClassifierCV", "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration", "sklearn.isotonic.IsotonicRegression",
    "sklearn.frozen._frozen.FrozenEstimator",
    "sklearn.model_selection._classification_threshold.FixedThresholdClassifier",
    "sklearn.ensemble._forest.RandomForestClassifier", "sklearn.ensemble._forest.RandomForestRegressor",
    "sklearn.ensemble._forest.ExtraTreesClassifier", "sklearn.ensemble._forest.ExtraTreesRegressor",
    "sklearn.ensemble._iforest.IsolationForest",
    "sklearn.tree._classes.DecisionTreeClassifier", "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.tree._classes.ExtraTreeClassifier", "sklearn.tree._classes.ExtraTreeRegressor",
    "sklearn.tree._tree.Tree",
    "sklearn.cluster._kmeans.KMeans", "sklearn.cluster._kmeans.MiniBatchKMeans",
    "sklearn.cluster._hdbscan.hdbscan.HDBSCAN",
}
_LIGHTGBM = {"lightgbm.sklearn.LGBMClassifier", "lightgbm.sklearn.LGBMRegressor", "lightgbm.basic.Booster"}
# cgtrain's own types: each holds plain data (weights as arrays, vocabularies as lists).
_CGTRAIN = {
    "cgtrain.features.tokenizer.CodeTokenizer", "cgtrain.features.featurizer.CodeFeaturizer",
    "cgtrain.features.tabular.CodeColumnTokenizer", "cgtrain.features.tabular.TabularFeaturizer",
    "cgtrain.features.tabular.DatetimeExpander", "cgtrain.features.tabular.FrequencyEncoder",
    "cgtrain.models.neural.NeuralClassifier",
    "cgtrain.models.hf.finetune.HFClassifier", "cgtrain.models.hf.embed.HFEmbedClassifier",
    "cgtrain.models.ensemble.EnsembleModel",
    "cgtrain.models.linear.SGDText", "cgtrain.features.selection.Chi2Select", "cgtrain.models.locator.BugLocator",
    "cgtrain.models.bug_spotter.BugSpotter",
    "cgtrain.models.unsupervised.IsolationForestDetector", "cgtrain.models.unsupervised.AutoencoderDetector",
    "cgtrain.models.unsupervised.HDBSCANClusterer",
}

TRUSTED_TYPES: frozenset[str] = frozenset(_PLAIN | _ARRAYS | _SKLEARN | _LIGHTGBM | _CGTRAIN)

# Function references a model may hold (a vectorizer's tokenizer, a selector's score
# function): ours, or a pure scikit-learn scoring function, each by exact name.
TRUSTED_FUNCTIONS: frozenset[str] = frozenset({
    "cgtrain.features.featurizer.split_tokens",
    "cgtrain.features.flow.flow_terms",
    "sklearn.feature_selection._univariate_selection.chi2",
    "sklearn.feature_selection._univariate_selection.f_classif",
    "sklearn.feature_selection._univariate_selection.f_regression",
})

# Types stored as parameter values (`dtype=np.float32`, a defaultdict's factory).
TRUSTED_TYPE_VALUES: frozenset[str] = frozenset({
    "builtins.str", "builtins.int", "builtins.float", "builtins.bool", "builtins.object",
    "collections.OrderedDict", "builtins.dict", "builtins.list",
    "numpy.float16", "numpy.float32", "numpy.float64", "numpy.int32", "numpy.int64", "numpy.bool_", "numpy.bool",
})
