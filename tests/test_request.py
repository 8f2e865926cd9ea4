"""The request schema: strict, with one clear line per problem."""
import json

import pytest

from cgtrain.request import (RequestError, TrainingRequest, apply_overrides, load_request, parse_request,
                             request_json_schema)

BASE = {"dataset": {"path": "data.jsonl"}}


def problems(data):
    with pytest.raises(RequestError) as info:
        parse_request(data)
    return info.value.problems


def test_defaults_fill_a_minimal_request():
    req = parse_request(BASE)
    assert req.hpo.sampler == "tpe" and req.validation.folds == 5 and req.dataset.max_bad_fraction == 0.01
    assert [c.family for c in req.candidates] == ["logreg", "linear_svm", "lightgbm"]


def test_misspelt_key_gets_one_line_with_suggestion():
    lines = problems({**BASE, "hpo": {"n_trails": 3}})
    assert len(lines) == 1
    assert lines[0].startswith("hpo.n_trails: unknown key (did you mean 'n_trials'?)")


def test_misspelt_family_and_param_suggest_the_right_names():
    assert "did you mean 'lightgbm'" in problems({**BASE, "candidates": [{"family": "lightgmb"}]})[0]
    line = problems({**BASE, "candidates": [{"family": "lightgbm", "params": {"num_leave": 3}}]})[0]
    assert "no parameter 'num_leave'" in line and "did you mean 'num_leaves'" in line


def test_bad_choice_names_the_field_value_and_choices():
    line = problems({**BASE, "hpo": {"sampler": "TPE"}})[0]
    assert line.startswith("hpo.sampler: 'TPE' is not allowed (did you mean 'tpe'?)") and "cmaes" in line


def test_every_problem_is_reported_at_once():
    lines = problems({"dataset": {}, "seed": "x", "hpo": {"n_trials": 0}})
    fields = [line.split(":")[0] for line in lines]
    assert fields == ["seed", "dataset.path", "hpo.n_trials"]


def test_search_space_is_validated_as_data():
    space = {"C": {"type": "float", "low": 1.0, "high": 0.1}}
    assert "must not exceed" in problems({**BASE, "candidates": [{"family": "logreg", "space": space}]})[0]
    space = {"C": {"type": "float", "lo": 1.0, "high": 2.0}}
    assert "did you mean 'low'" in " ".join(problems({**BASE, "candidates": [{"family": "logreg", "space": space}]}))


def test_dotted_overrides_parse_values_and_reach_list_items():
    data = apply_overrides({**BASE, "candidates": [{"family": "logreg"}]},
                           ["hpo.n_trials=7", "dataset.path=x.csv", "candidates.0.family=lightgbm", "seed=3"])
    req = parse_request(data)
    assert (req.hpo.n_trials, req.dataset.path, req.candidates[0].family, req.seed) == (7, "x.csv", "lightgbm", 3)
    with pytest.raises(RequestError, match="key=value"):
        apply_overrides(BASE, ["hpo.n_trials"])


def test_load_request_reads_yaml_and_json(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps(BASE))
    assert load_request(tmp_path / "r.json").dataset.path == "data.jsonl"
    (tmp_path / "bad.yaml").write_text("dataset: [unclosed")
    with pytest.raises(RequestError, match="not valid YAML"):
        load_request(tmp_path / "bad.yaml")
    with pytest.raises(RequestError, match="file not found"):
        load_request(tmp_path / "missing.yaml")


def test_the_shipped_examples_are_valid():
    for name in ("python-bugs", "juliet"):
        assert isinstance(load_request(f"examples/{name}.yaml"), TrainingRequest)


def test_json_schema_is_generated_from_the_model():
    schema = request_json_schema()
    assert "dataset" in schema["required"] and schema["additionalProperties"] is False
    assert set(schema["$defs"]["HpoConfig"]["properties"]["sampler"]["enum"]) >= {"grid", "tpe", "gp", "cmaes"}
