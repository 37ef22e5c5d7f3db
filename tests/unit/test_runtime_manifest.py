"""Loading and checking the kernel manifest: a broken one is refused with the place of the fault."""

from __future__ import annotations

import json

import pytest
from veraltheim.wasm import IntegrityError
from veraltheim.wasm.manifest import load_manifest

from tests.support.wat import write_test_manifest


@pytest.fixture
def manifest(tmp_path):
    return write_test_manifest(tmp_path / "modules")


def edited(path, edit):
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw))
    return path


def test_loads_the_test_manifest(manifest):
    m = load_manifest(manifest)
    assert m.modules["test"].file == manifest.parent / "test.wasm"
    assert m.modules["test"].allowed_imports == {"env.vh_progress"}
    assert m.kernel("test.params").param("sigma").default == 1.5


def param(raw, kernel, name):
    return next(p for p in raw["kernels"][kernel]["params"] if p["name"] == name)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r.update(format=2), "format: expected 1, got 2"),
        (lambda r: r["kernels"]["test.echo"].update(module="nope"), "unknown module 'nope'"),
        (lambda r: r["kernels"]["test.echo"]["input"].update(kind="jpeg"), "input kind 'jpeg'"),
        (lambda r: r["kernels"]["test.echo"]["output"].update(kind="x"), "output kind 'x'"),
        (lambda r: r["kernels"]["test.echo"].update(grants=["network"]), "grant 'network'"),
        (lambda r: param(r, "test.params", "width").update(type="str"), "unknown type 'str'"),
        (lambda r: param(r, "test.params", "dtype").update(choices=[]), "needs choices"),
        (lambda r: param(r, "test.params", "sigma").update(default=99), "bad default"),
        (lambda r: r["modules"]["test"].update(sha256="abc"), "bad sha256"),
        (lambda r: r["kernels"]["test.echo"].pop("export"), "malformed manifest"),
        (
            lambda r: r["kernels"]["test.params"]["params"].append(
                dict(param(r, "test.params", "width"))
            ),
            "duplicate param",
        ),
    ],
)
def test_a_broken_manifest_is_refused(manifest, edit, message):
    with pytest.raises(IntegrityError, match=message):
        load_manifest(edited(manifest, edit))


def test_missing_and_unreadable_manifests(tmp_path):
    with pytest.raises(IntegrityError, match="no kernel manifest"):
        load_manifest(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(IntegrityError, match="cannot read the manifest"):
        load_manifest(bad)


def test_range_text_for_list(manifest):
    spec = load_manifest(manifest).kernel("test.params")
    assert [p.range_text() for p in spec.params] == [
        "int 1..100, required",
        "float 0.5..4, default 1.5",
        "f64|i32, default f64",
    ]


def test_a_catalogue_entry_round_trips_to_the_same_spec():
    import dataclasses

    from veraltheim.wasm import Runtime, kernel_spec_from_dict

    for spec in Runtime().catalogue():
        again = kernel_spec_from_dict(json.loads(json.dumps(spec.to_dict())))
        assert again == dataclasses.replace(spec, export="")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"description": "x"}, "without a name"),
        ({"name": "k", "input": {"kind": "rgba8"}}, "malformed entry"),
        (
            {"name": "k", "input": {"kind": "rgba8"}, "output": {"kind": "?"}, "params": []},
            "unknown output kind",
        ),
    ],
)
def test_a_bad_catalogue_entry_is_refused(entry, message):
    from veraltheim.wasm import kernel_spec_from_dict

    with pytest.raises(IntegrityError, match=message):
        kernel_spec_from_dict(entry)


@pytest.mark.parametrize(
    ("ptype", "value", "message"),
    [
        ("float", float("inf"), "must be finite"),
        ("float", float("nan"), "must be finite"),
        ("int", 10**400, "does not fit in an f64"),
        ("float", -(10**400), "does not fit in an f64"),
    ],
)
def test_an_unbounded_param_still_refuses_what_an_f64_cannot_carry(ptype, value, message):
    from veraltheim.wasm import BadInput
    from veraltheim.wasm.manifest import ParamSpec

    with pytest.raises(BadInput, match=message):
        ParamSpec("p", ptype).coerce("k", value)
    assert ParamSpec("p", ptype).coerce("k", 3) == 3
