"""Package attributes that load their module on first access (sym3d.lazy)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sym3d.lazy import lazy_getattr

_CHECK = """
import sys
import {package} as pkg
assert {module!r} not in sys.modules, "imported eagerly"
value = pkg.{name}
assert {module!r} in sys.modules
assert vars(pkg)[{name!r}] is value is getattr(sys.modules[{module!r}], {name!r})
"""


@pytest.mark.parametrize(
    ("package", "name", "module"),
    [
        ("sym3d", "InversionResult", "sym3d.engine.result"),
        ("sym3d.terms", "DepthRegConfig", "sym3d.terms.depth_reg"),
        ("sym3d_eg3d", "build_eg3d", "sym3d_eg3d.adapter"),
    ],
)
def test_package_attribute_loads_its_module_on_first_access(package, name, module) -> None:
    code = _CHECK.format(package=package, name=name, module=module)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_unknown_name_is_an_attribute_error_naming_the_package() -> None:
    import sym3d.terms

    with pytest.raises(AttributeError, match="module 'sym3d.terms' has no attribute 'Nope'"):
        sym3d.terms.Nope  # noqa: B018
    assert not hasattr(sym3d.terms, "Nope")


def test_relative_and_absolute_modules(tmp_path, monkeypatch) -> None:
    pkg = tmp_path / "lazy_demo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "things.py").write_text("Thing = 'thing'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import lazy_demo

    load = lazy_getattr("lazy_demo", {"Thing": ".things", "dumps": "json"})
    assert load("Thing") == "thing" and lazy_demo.Thing == "thing"
    import json

    assert load("dumps") is json.dumps and lazy_demo.dumps is json.dumps
    monkeypatch.delitem(sys.modules, "lazy_demo")
    monkeypatch.delitem(sys.modules, "lazy_demo.things")
