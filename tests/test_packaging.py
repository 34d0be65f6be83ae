"""Packaging: a wheel holds every module of the package; pyproject.toml's ranges and requirements.txt's pins name the
same packages and agree; importing the package changes no other library's settings; circuit-tracer runs through the
backend the suite uses."""

import importlib
import pkgutil
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ImportError:  # Python 3.10: tomli (requirements-dev.txt), the same parser
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def _pins() -> dict[str, Requirement]:
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    reqs = [Requirement(line) for line in lines if line and not line.startswith("-")]
    return {canonicalize_name(r.name): r for r in reqs}


def _ranges() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {canonicalize_name(r.name): r for r in map(Requirement, project["dependencies"])}


def test_pyproject_and_requirements_name_the_same_packages():
    pins, ranges = _pins(), _ranges()
    assert set(pins) == set(ranges), f"only pinned: {set(pins) - set(ranges)}; only ranged: {set(ranges) - set(pins)}"


def test_every_pin_lies_in_its_range():
    ranges = _ranges()
    for name, pin in _pins().items():
        exact = [s.version for s in pin.specifier if s.operator == "=="]
        if exact:  # a pinned version must be allowed by the package's range
            assert ranges[name].specifier.contains(exact[0], prereleases=True), f"{name}=={exact[0]} vs {ranges[name]}"
        else:  # a range in requirements.txt (torch, numpy, IPython: Colab's own are kept) is the package's range
            assert pin.specifier == ranges[name].specifier, f"{name}: {pin.specifier} vs {ranges[name].specifier}"


@pytest.mark.slow
def test_wheel_holds_every_module(tmp_path):
    """setuptools' package discovery: every module under interp_utils/ (subpackages included) is in the wheel."""
    source = tmp_path / "src"  # a copy, so that no build/ left in the checkout can add or hide a module
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "interp_utils", source / "interp_utils", ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("interp_notebooks-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "interp_utils").rglob("*.py")}
    assert modules and not modules - names, f"missing from the wheel: {sorted(modules - names)}"
    assert "interp_utils/course/checks/ioi.py" in names


def test_imports_are_light_and_change_no_library_settings():
    """In a fresh interpreter: the attribution-graph and token-stream modules import no IOI templates, head scores,
    corpus or stand-in (the text source is passed in); and importing interp_utils with every short name leaves tqdm's
    and torch's settings as they were."""
    code = (
        "import sys, tqdm, torch\n"
        "state = lambda: (tqdm.tqdm.monitor_interval, torch.get_default_dtype(), torch.get_num_threads(),\n"
        "                 torch.are_deterministic_algorithms_enabled(), torch.is_grad_enabled())\n"
        "before = state()\n"
        "import interp_utils.tracing.attribution, interp_utils.data.activations\n"
        "loaded = {m for m in sys.modules if m.startswith('interp_utils.')}\n"
        "bad = loaded & {'interp_utils.data.ioi', 'interp_utils.circuits.heads', 'interp_utils.data.corpus',"
        " 'interp_utils.models.standin'}\n"
        "assert not bad, bad\n"
        "import interp_utils\n"
        "for name in [*interp_utils.MODULES, *interp_utils.NAMES]: getattr(interp_utils, name)\n"
        "assert state() == before, (before, state())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_short_names_are_the_subpackage_modules():
    import interp_utils

    for short, path in interp_utils.MODULES.items():
        assert getattr(interp_utils, short) is importlib.import_module(f"interp_utils.{path}")
    for name, path in interp_utils.NAMES.items():
        assert getattr(interp_utils, name) is getattr(importlib.import_module(f"interp_utils.{path}"), name)
    subpackages = [info.name for info in pkgutil.iter_modules(interp_utils.__path__) if info.ispkg]
    for sub in subpackages:  # the names each subpackage gives, where it gives any
        package = importlib.import_module(f"interp_utils.{sub}")
        for name, module in getattr(package, "NAMES", {}).items():
            assert getattr(package, name) is getattr(importlib.import_module(f"interp_utils.{sub}.{module}"), name)
    assert {"core", "circuits", "dictionaries", "tracing"} <= set(subpackages)
    with pytest.raises(AttributeError, match="its modules are"):
        interp_utils.no_such_module  # noqa: B018


def test_circuit_tracer_runs_through_the_transformerlens_backend(bundled_model):
    """The suite uses circuit-tracer 0.5's TransformerLens backend only (its nnsight backend was built against nnsight
    0.6 and is not what the suite calls): the replacement model it builds from our transcoders is that backend's."""
    from circuit_tracer.replacement_model.replacement_model_transformerlens import TransformerLensReplacementModel

    from interp_utils.dictionaries.sae import SAEConfig
    from interp_utils.dictionaries.transcoders import Transcoders
    from interp_utils.tracing.circuit_tracer_interop import to_circuit_tracer

    cfg = bundled_model.cfg
    sae_cfg = SAEConfig(d_in=cfg.d_model, d_sae=8, k=2, d_out=cfg.d_model)
    transcoders: Transcoders = {layer: _transcoder(sae_cfg) for layer in range(cfg.n_layers)}
    replacement = to_circuit_tracer(bundled_model, transcoders)
    assert isinstance(replacement, TransformerLensReplacementModel)
    source = (ROOT / "interp_utils").rglob("*.py")
    assert not any("replacement_model_nnsight" in p.read_text() for p in source)


def _transcoder(cfg):
    from interp_utils.dictionaries.sae import SAE

    return SAE(cfg)


def test_circuit_tracers_nnsight_backend_imports_with_the_pinned_nnsight():
    """requirements.txt pins nnsight (lesson 08) to a version with which circuit-tracer 0.5's nnsight backend still
    imports: nnsight 0.8 moved ``Barrier`` out of ``nnsight.intervention.tracing.tracer``, which the backend imports."""
    nnsight = pytest.importorskip("nnsight")
    app = nnsight.CONFIG.APP
    before = (app.PYMOUNT, app.CROSS_INVOKER)
    try:  # importing the backend turns nnsight's .save() method off for the whole process: put it back afterwards
        from circuit_tracer.replacement_model.replacement_model_nnsight import NNSightReplacementModel
    finally:
        app.PYMOUNT, app.CROSS_INVOKER = before
    assert NNSightReplacementModel is not None
    pinned = _pins()["nnsight"]
    from importlib.metadata import version

    assert pinned.specifier.contains(version("nnsight")), "the installed nnsight is not the pinned one"
