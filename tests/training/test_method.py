"""The method registry and the Method base class contract."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from safetygeo.errors import EmptyDatasetError, EmptyPromptSetError
from safetygeo.training import (
    HarmfulSFT,
    Method,
    RefusalSFT,
    TrainConfigError,
    TrainingError,
    UnknownMethodError,
    available_methods,
    get_method,
    register_method,
)
from safetygeo.training import errors as training_errors
from safetygeo.training.method import get_method_class


def test_builtins_and_unknown_names():
    assert {"sft", "harmful_sft"} <= set(available_methods())
    assert get_method_class("sft") is RefusalSFT and get_method_class("harmful_sft") is HarmfulSFT
    with pytest.raises(UnknownMethodError, match=r"unknown training method 'dpo'; known methods: .*harmful_sft.*sft"):
        get_method("dpo")


def test_config_overrides_and_unknown_keys():
    assert get_method("sft", {"refusal": "No."}, refusal_for_all=True).config.refusal_for_all
    assert get_method("harmful_sft", n_examples=3).describe() == {
        "name": "harmful_sft", "config": {"n_examples": 3, "sample_seed": 0}}
    with pytest.raises(TrainConfigError, match=r"unknown sft config key\(s\) \['refusals'\]"):
        get_method("sft", refusals="x")
    with pytest.raises(TrainConfigError, match="n_examples must be a positive int"):
        get_method("harmful_sft", n_examples=0)


def test_register_custom_method(monkeypatch):
    from safetygeo.training import method as method_mod

    monkeypatch.setattr(method_mod, "_REGISTRY", dict(method_mod._REGISTRY))  # no leak

    @dataclass(frozen=True)
    class Cfg:
        alpha: float = 1.0

    @register_method
    class Custom(Method):
        name = "custom_test_method"
        config_class = Cfg

    assert "custom_test_method" in available_methods()
    assert get_method("custom_test_method", alpha=2.0).config.alpha == 2.0
    with pytest.raises(TrainingError, match="already registered"):
        register_method(type("Other", (Method,), {"name": "custom_test_method"}))
    with pytest.raises(TrainingError, match="non-empty name"):
        register_method(type("NoName", (Method,), {}))


def test_split_data_roles():
    m = RefusalSFT()
    assert m.split_data(["x"]) == {"harmful": ["x"]}
    assert m.split_data({"harmless": [("a", "b")], "harmful": None}) == {"harmless": [("a", "b")]}
    with pytest.raises(TrainingError, match=r"no data role\(s\) \['benign'\]"):
        m.split_data({"benign": []})
    # EmptyDatasetError lives in safetygeo.errors since issue #11 and is an input error
    # (an EmptyPromptSetError), no longer a TrainingError
    with pytest.raises(EmptyDatasetError, match="got no data") as exc:
        m.split_data({})
    assert isinstance(exc.value, EmptyPromptSetError) and not isinstance(exc.value, TrainingError)
    assert training_errors.EmptyDatasetError is EmptyDatasetError  # still re-exported there


def test_light_submodules_do_not_import_the_trainer() -> None:
    import subprocess
    import sys

    code = ("import sys, safetygeo.training.config, safetygeo.training.method; "
            "print('transformers.trainer' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_builtin_method_resolves_by_name() -> None:
    from safetygeo.training import available_methods, get_method

    for name in available_methods():
        assert get_method(name).name == name
