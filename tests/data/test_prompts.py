"""Tests for :class:`safetygeo.data.PromptSet`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from safetygeo.data import PromptFileNotFoundError, PromptIndexError, PromptSet
from safetygeo.errors import EmptyPromptSetError, PromptSetFormatError, SafetyGeoError

PROMPTS = [f"prompt {i}" for i in range(20)]
CATS = [None if i % 5 == 0 else ("a" if i % 2 == 0 else "b") for i in range(20)]


def make(n: int = 20, **kwargs: object) -> PromptSet:
    return PromptSet(
        prompts=PROMPTS[:n],
        name="toy",
        label="harmful",
        categories=CATS[:n],
        targets=[f"Sure {i}" for i in range(n)],
        meta={"source": "mem", "ids": [f"id{i}" for i in range(n)]},
        **kwargs,  # type: ignore[arg-type]
    )


# ---------------------------------------------------------------- construction
def test_lists_become_tuples_and_meta_is_copied() -> None:
    meta = {"source": "x"}
    ps = PromptSet(["a", "b"], name="s", categories=["c", None], targets=["t", None], meta=meta)
    assert ps.prompts == ("a", "b")
    assert ps.categories == ("c", None)
    assert ps.targets == ("t", None)
    meta["source"] = "changed"
    assert ps.meta == {"source": "x"}
    assert hash(ps) == hash(
        PromptSet(
            ["a", "b"], name="s", categories=["c", None], targets=["t", None], meta={"other": 1}
        )
    )


def test_frozen() -> None:
    ps = PromptSet(["a"], name="s")
    with pytest.raises(AttributeError):
        ps.label = "harmful"  # type: ignore[misc]


def test_empty_raises_naming_set() -> None:
    with pytest.raises(EmptyPromptSetError, match="'my-set'"):
        PromptSet([], name="my-set")


@pytest.mark.parametrize(
    ("prompts", "pattern"),
    [
        (["ok", 3], "index 1 is int"),
        (["ok", "fine", ""], "index 2 is empty"),
        (["   ", "ok"], "index 0 is empty"),
        (["ok", None], "index 1 is NoneType"),
    ],
)
def test_bad_prompt_names_index(prompts: list[object], pattern: str) -> None:
    with pytest.raises(PromptSetFormatError, match=pattern):
        PromptSet(prompts, name="s")  # type: ignore[arg-type]


def test_single_string_is_rejected() -> None:
    with pytest.raises(PromptSetFormatError, match="single str"):
        PromptSet("abc", name="s")  # type: ignore[arg-type]


def test_length_mismatch() -> None:
    with pytest.raises(PromptSetFormatError, match="categories has length 1 but there are 2"):
        PromptSet(["a", "b"], name="s", categories=["x"])
    with pytest.raises(PromptSetFormatError, match="targets has length 3 but there are 2"):
        PromptSet(["a", "b"], name="s", targets=["x", "y", "z"])
    with pytest.raises(PromptSetFormatError, match=r"meta\['labels'\] has length 1"):
        PromptSet(["a", "b"], name="s", meta={"labels": ["safe"]})


def test_bad_category_type_and_label_type() -> None:
    with pytest.raises(PromptSetFormatError, match=r"categories\[1\] must be str or None"):
        PromptSet(["a", "b"], name="s", categories=["x", 5])  # type: ignore[list-item]
    with pytest.raises(PromptSetFormatError, match="label must be str or None"):
        PromptSet(["a"], name="s", label=1)  # type: ignore[arg-type]
    with pytest.raises(PromptSetFormatError, match="name must be a non-empty str"):
        PromptSet(["a"], name="")


def test_errors_are_safetygeo_errors() -> None:
    assert issubclass(PromptIndexError, SafetyGeoError) and issubclass(PromptIndexError, IndexError)
    assert issubclass(PromptFileNotFoundError, FileNotFoundError)


# ---------------------------------------------------------------- sequence protocol
def test_len_iter_getitem() -> None:
    ps = make(5)
    assert len(ps) == 5
    assert list(ps) == PROMPTS[:5]
    assert ps[0] == "prompt 0"
    assert ps[-1] == "prompt 4"
    assert ps[np.int64(2)] == "prompt 2"
    sub = ps[1:4]
    assert isinstance(sub, PromptSet)
    assert sub.prompts == ("prompt 1", "prompt 2", "prompt 3")
    assert sub.targets == ("Sure 1", "Sure 2", "Sure 3")
    assert sub.meta["ids"] == ["id1", "id2", "id3"]
    assert ps[::-2].prompts == ("prompt 4", "prompt 2", "prompt 0")
    with pytest.raises(PromptIndexError, match=r"index 5 out of range .* length 5"):
        ps[5]
    with pytest.raises(TypeError, match="int or slice"):
        ps["x"]  # type: ignore[call-overload]
    with pytest.raises(EmptyPromptSetError):
        ps[3:3]


def test_repr_is_short() -> None:
    r = repr(make())
    assert r == "PromptSet(name='toy', label='harmful', n=20, n_categories=2, targets=True)"


# ---------------------------------------------------------------- sha256
def test_sha256_exact_definition_and_label_independence() -> None:
    ps = PromptSet(["héllo", "b"], name="s", label="harmful")
    expected = hashlib.sha256('["héllo","b"]'.encode()).hexdigest()
    assert ps.sha256() == expected
    assert ps.with_label("harmless").sha256() == expected
    assert PromptSet(["héllo", "b"], name="other", categories=["x", None]).sha256() == expected
    assert PromptSet(["b", "héllo"], name="s").sha256() != expected


# ---------------------------------------------------------------- subset / sample / filter
def test_subset_keeps_alignment_and_allows_repeats() -> None:
    ps = make(6)
    sub = ps.subset([5, 0, 5])
    assert sub.prompts == ("prompt 5", "prompt 0", "prompt 5")
    assert sub.categories == (None, None, None)
    assert sub.targets == ("Sure 5", "Sure 0", "Sure 5")
    assert sub.meta["ids"] == ["id5", "id0", "id5"]
    assert sub.meta["source"] == "mem"
    assert sub.label == "harmful" and sub.name == "toy"
    assert ps.subset(np.array([1, 2])).prompts == ("prompt 1", "prompt 2")
    with pytest.raises(PromptIndexError, match="index 6 out of range"):
        ps.subset([0, 6])
    with pytest.raises(EmptyPromptSetError, match="no indices"):
        ps.subset([])


def test_sample_deterministic() -> None:
    ps = make()
    a, b = ps.sample(7, seed=3), ps.sample(7, seed=3)
    assert a == b
    assert len(set(a.prompts)) == 7
    idx = sorted(np.random.default_rng(3).permutation(20)[:7].tolist())
    assert a.prompts == tuple(PROMPTS[i] for i in idx)
    assert a.meta["sample"] == {"n": 7, "seed": 3}
    assert ps.sample(7, seed=4).prompts != a.prompts
    assert ps.sample(20, seed=0).prompts == ps.prompts
    with pytest.raises(SafetyGeoError, match="cannot sample n=21"):
        ps.sample(21)
    with pytest.raises(SafetyGeoError, match="cannot sample n=0"):
        ps.sample(0)


def test_filter_by_category_predicate_and_collection() -> None:
    ps = make(10)
    assert ps.categories == (None, "b", "a", "b", "a", None, "a", "b", "a", "b")
    assert ps.filter("a").prompts == ("prompt 2", "prompt 4", "prompt 6", "prompt 8")
    assert ps.filter("a").categories == ("a",) * 4
    assert ps.filter({"a", "b"}).prompts == tuple(PROMPTS[i] for i in (1, 2, 3, 4, 6, 7, 8, 9))
    assert ps.filter(lambda p: p.endswith(("0", "9"))).prompts == ("prompt 0", "prompt 9")
    with pytest.raises(
        EmptyPromptSetError, match="'toy': no prompt matches filter categories \\['zzz'\\]"
    ):
        ps.filter("zzz")
    with pytest.raises(SafetyGeoError, match="has no categories"):
        PromptSet(["a"], name="s").filter("x")


# ---------------------------------------------------------------- split
def test_split_default_sizes_and_names() -> None:
    parts = make().split()
    assert list(parts) == ["train", "val", "test"]
    assert [len(p) for p in parts.values()] == [16, 2, 2]
    assert [p.meta["split"] for p in parts.values()] == ["train", "val", "test"]


def test_split_disjoint_covering_and_deterministic() -> None:
    ps = make()
    a = ps.split({"train": 0.5, "val": 0.25, "test": 0.25}, seed=7)
    b = ps.split({"train": 0.5, "val": 0.25, "test": 0.25}, seed=7)
    c = ps.split({"train": 0.5, "val": 0.25, "test": 0.25}, seed=8)
    assert a == b
    assert {k: v.prompts for k, v in a.items()} != {k: v.prompts for k, v in c.items()}
    sets = [set(p.prompts) for p in a.values()]
    assert sum(len(s) for s in sets) == 20
    assert set().union(*sets) == set(PROMPTS)
    # exact assignment: first 10 permuted indices -> train, next 5 -> val, last 5 -> test
    perm = np.random.default_rng(7).permutation(20).tolist()
    assert a["train"].prompts == tuple(PROMPTS[i] for i in sorted(perm[:10]))
    assert a["test"].prompts == tuple(PROMPTS[i] for i in sorted(perm[15:]))
    # categories / targets / ids follow their prompts
    for part in a.values():
        for prompt, target, pid in zip(
            part.prompts, part.targets or (), part.meta["ids"], strict=True
        ):
            i = int(prompt.split()[1])
            assert target == f"Sure {i}" and pid == f"id{i}"


def test_split_floor_then_remainder() -> None:
    ps = PromptSet([f"p{i}" for i in range(10)], name="s")
    sizes = {k: len(v) for k, v in ps.split((0.7, 0.3)).items()}
    assert sizes == {"train": 7, "test": 3}
    sizes = {k: len(v) for k, v in ps.split({"a": 0.35, "b": 0.35, "c": 0.3}).items()}
    assert sizes == {"a": 3, "b": 3, "c": 4}


def test_split_errors() -> None:
    ps = make(5)
    with pytest.raises(SafetyGeoError, match="sum to"):
        ps.split((0.5, 0.4))
    with pytest.raises(SafetyGeoError, match="must be positive"):
        ps.split({"train": 1.2, "test": -0.2})
    with pytest.raises(SafetyGeoError, match=r"give 2 .* or 3"):
        ps.split((0.25, 0.25, 0.25, 0.25))
    with pytest.raises(EmptyPromptSetError, match=r"split \['val'\] would be empty"):
        ps.split((0.8, 0.1, 0.1))


# ---------------------------------------------------------------- JSON round trip
def test_json_round_trip(tmp_path: Path) -> None:
    ps = make().split(seed=1)["val"].with_label("harmless")
    path = tmp_path / "sub" / "val.json"
    ps.to_json(path)
    back = PromptSet.from_json(path)
    assert back == ps
    assert back.sha256() == ps.sha256()
    obj = json.loads(path.read_text())
    assert obj["format"] == "safetygeo.PromptSet"
    assert obj["sha256"] == ps.sha256()
    assert [p.name for p in path.parent.iterdir()] == ["val.json"]  # no temp files left


def test_from_json_errors(tmp_path: Path) -> None:
    with pytest.raises(PromptFileNotFoundError, match=r"nope\.json"):
        PromptSet.from_json(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PromptSetFormatError, match="invalid JSON"):
        PromptSet.from_json(bad)
    other = tmp_path / "other.json"
    other.write_text('["a", "b"]')
    with pytest.raises(PromptSetFormatError, match="not a saved PromptSet"):
        PromptSet.from_json(other)
    tampered = tmp_path / "t.json"
    obj = make(3).to_dict()
    obj["prompts"][0] = "edited"
    tampered.write_text(json.dumps(obj))
    with pytest.raises(PromptSetFormatError, match="sha256 mismatch"):
        PromptSet.from_json(tampered)


def test_with_label() -> None:
    ps = make(3)
    relabelled = ps.with_label("unsafe")
    assert relabelled.label == "unsafe"
    assert relabelled.prompts == ps.prompts and ps.label == "harmful"
    assert ps.with_label(None).label is None
