"""A Rasa server without TensorFlow: Waypoint's pipeline (config.yml) uses none
of it, yet stock Rasa 3.6 imports it and Keras, 338 MB of the 754 MB a loaded
Waypoint server holds (measured below).

Where Rasa 3.6.21 imports TensorFlow (traced with an import hook, then checked
by hand), and what this module does about each, every change on its own:

1. ``lazy_train_utils``. ``rasa.core.policies.ensemble`` (imported by the
   recipe, the agent, the CLI) -> ``policy`` -> ``tracker_featurizers`` ->
   ``single_state_featurizer`` -> ``rasa.nlu.extractors.extractor``, whose
   ``import rasa.utils.train_utils`` pulls ``rasa.utils.tensorflow.callback``
   (``import tensorflow``). Every module on that path only calls
   ``train_utils.<function>`` inside functions, so ``rasa.utils.train_utils``
   is made *lazy*: the import creates the module, and its code runs, exactly
   as written and with its own errors, the first time anything reads one of
   its attributes (PEP 562 module ``__getattr__``; other threads wait for it).
   A DIET, TED or ResponseSelector model reads it at once: TensorFlow comes
   then.

2. ``registry``. ``DefaultV1Recipe._from_registry`` (training: building the
   graph from config.yml) imports ``rasa.engine.recipes.default_components``,
   i.e. every default component, DIETClassifier, TEDPolicy, ResponseSelector,
   ConveRT and LanguageModelFeaturizer with them (each ``import tensorflow``).
   Here a name the stock list holds imports only that component's module (the
   name -> module table is read from default_components.py's own imports, not
   copied); a dotted name imports its own module as before; any other name goes
   to Rasa's own lookup, which imports every default and raises Rasa's error.

3. ``deferred_train_schema``. Loading a model (``ModelMetadata.from_dict``)
   turns both stored graphs back into classes. Serving runs only the predict
   graph; the *train* graph names ``DefaultV1RecipeValidator``, whose module
   imports DIETClassifier and TEDPolicy to compare classes. The train graph is
   now kept as stored and turned into classes by Rasa's own
   ``GraphSchema.from_dict`` the first time anything reads it (e.g.
   ``ModelMetadata.as_dict``): same classes, same errors, later; copies and
   pickles stay deferred. The predict graph is read
   at load as before, so a model naming a missing class still fails at load.

4. ``thinc_probe``. The tokenizer's spaCy imports thinc, and ``thinc.compat``
   probes for TensorFlow at import (``import tensorflow``, then asks it for
   GPUs) to offer its optional TensorFlow wrapper. thinc.compat now runs with
   TensorFlow hidden from it, then gets, in place of the module, an object that
   imports TensorFlow the first time thinc reads anything from it
   (``has_tensorflow`` stays True when TensorFlow is installed;
   ``has_tensorflow_gpu`` is computed when first read). thinc reads TensorFlow
   only in its TensorFlow wrapper and on cupy GPUs.

Nothing is stubbed: each deferred import runs the real module, at the moment
its first use needs it, so ``rasa train``, ``rasa test``, ``rasa shell`` and a
stock pipeline with DIETClassifier (bench/stock_config.yml) work as before and
import TensorFlow when they use it. ``rasa train`` imports it for every config
still: its first node, ``DefaultV1RecipeValidator``, imports DIETClassifier
(training only; the served model never loads it).

Measured (VmRSS from /proc/self/status of a Python process that installs
plugins.launch's plug-ins, imports Rasa's command line, server and Waypoint's
channels, loads models/waypoint.tar.gz with ``Agent.load`` and parses one
message; Rasa 3.6.21, Python 3.10, x86_64, three runs each, identical): 416 MB
with lean, 754 MB with ``WAYPOINT_LEAN=0`` (TensorFlow and Keras, 338 MB, 45%);
start-up to the first answer 4.4 s instead of 6.3 s. tests/test_lean.py
measures the same on a small model trained with config.yml (384 MB / 720 MB).

Guards: each change checks the source it was written against (a hash of the
patched function, :func:`plugins.source_matches`, or of the module file made
lazy or read) and stays off on its own when that changed, with a warning.
``WAYPOINT_LEAN=0`` turns all four off (stock Rasa). ``install()`` must run
before Rasa is imported (plugins.launch calls it first); a module already
imported by then cannot be made lazy and its change reports off.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import importlib
import importlib.abc
import importlib.util
import logging
import pathlib
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

from content import settings
from plugins import source_matches

logger = logging.getLogger(__name__)

EXPECTED = {  # sha256 (16 hex digits) in rasa 3.6.21 / thinc 8.1.12
    "train_utils": "7ae337d7a78d2c16",  # file rasa/utils/train_utils.py
    "default_components": "b58a9dc0d456472a",  # file rasa/engine/recipes/default_components.py
    "from_registry": "acb1a4f501f71a34",  # DefaultV1Recipe._from_registry
    "metadata_from_dict": "ee3da9f00c7daa75",  # ModelMetadata.from_dict
    "thinc_compat": "e4ce073417f9539e",  # file thinc/compat.py
}
LAZY_MODULE = "rasa.utils.train_utils"
THINC_COMPAT = "thinc.compat"
NAMES = ("lazy_train_utils", "thinc_probe", "registry", "deferred_train_schema")

_installed: dict[str, bool] = {}


def install() -> dict[str, bool]:
    """The four changes, each on its own (the two import hooks first: they
    must be in place before Rasa's modules are imported); returns which are on."""
    global _installed
    if settings.get("WAYPOINT_LEAN") == "0":
        return {name: False for name in NAMES}
    if _installed:
        return dict(_installed)
    _installed = {"lazy_train_utils": _lazy_train_utils(), "thinc_probe": _thinc_probe()}
    _installed["registry"] = _registry()
    _installed["deferred_train_schema"] = _defer_train_schema()
    return dict(_installed)


# -- helpers ------------------------------------------------------------------


def _package_file(package: str, relative: str) -> pathlib.Path | None:
    """A file of an installed top-level package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return pathlib.Path(next(iter(spec.submodule_search_locations))) / relative


def _file_matches(path: pathlib.Path | None, expected: str, patch: str) -> bool:
    """True when the module file ``patch`` relies on is the one it was written for."""
    try:
        found = hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path else ""
    except OSError:
        found = ""
    if found != expected:
        logger.warning("%s is not the version %s was written for; it stays as it is", path, patch)
        return False
    return True


class _Hook(importlib.abc.MetaPathFinder):
    """Finds one module with the other finders and hands its spec to ``wrap``."""

    def __init__(self, name: str, wrap: Callable[[Any], Any]) -> None:
        self.name, self.wrap = name, wrap

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != self.name or name in sys.modules:  # reload(): Rasa's own import
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None) if finder is not self else None
            spec = find(name, path, target) if find else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = self.wrap(spec.loader)
                return spec
        return None


class _Wrapped(importlib.abc.Loader):
    """A loader that runs another loader's module code its own way."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def __getattr__(self, name: str) -> Any:  # get_source, get_code, is_package ...
        return getattr(self._loader, name)

    def _restore(self, module: types.ModuleType) -> None:
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader


# -- 1. rasa.utils.train_utils runs at its first use ----------------------------


class _OnFirstUse(_Wrapped):
    """The module exists at once; its code runs when one of its attributes is
    first read (module ``__getattr__``, PEP 562: only for names not yet there)."""

    def exec_module(self, module: types.ModuleType) -> None:
        lock = threading.RLock()
        started = [False]
        namespace = module.__dict__

        def __getattr__(name: str) -> Any:
            with lock:  # another thread waits here while the code runs
                if not started[0]:
                    started[0] = True
                    self._restore(module)
                    try:
                        self._loader.exec_module(module)
                    except BaseException:
                        started[0] = False  # raised here, and again at the next use
                        namespace["__getattr__"] = __getattr__
                        raise
                    if namespace.get("__getattr__") is __getattr__:
                        del namespace["__getattr__"]
                    logger.debug("%s loaded at its first use (%s)", module.__name__, name)
            try:
                return namespace[name]
            except KeyError:
                raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}") from None

        namespace["__getattr__"] = __getattr__


def _lazy_train_utils() -> bool:
    if LAZY_MODULE in sys.modules:
        return False
    if not _file_matches(_package_file("rasa", "utils/train_utils.py"), EXPECTED["train_utils"], "lazy_train_utils"):
        return False
    sys.meta_path.insert(0, _Hook(LAZY_MODULE, _OnFirstUse))
    return True


# -- 4. thinc's TensorFlow probe at thinc's first use of TensorFlow ----------------


class _TensorFlowOnUse(types.ModuleType):
    """Stands in for ``tensorflow`` inside thinc: the first attribute read
    imports it as thinc.compat would have (with ``tensorflow.experimental.dlpack``)."""

    def __init__(self) -> None:
        super().__init__("tensorflow", "TensorFlow, imported at thinc's first use of it")

    def __getattr__(self, name: str) -> Any:
        tensorflow = importlib.import_module("tensorflow")
        importlib.import_module("tensorflow.experimental.dlpack")
        return getattr(tensorflow, name)


class _ProbeHidden(_Wrapped):
    def exec_module(self, module: types.ModuleType) -> None:
        self._restore(module)
        hide = "tensorflow" not in sys.modules and importlib.util.find_spec("tensorflow") is not None
        if not hide:  # already imported, or not installed: thinc probes as it always does
            self._loader.exec_module(module)
            return
        sys.modules["tensorflow"] = None  # type: ignore[assignment]  # its `import tensorflow` fails
        try:
            self._loader.exec_module(module)
        finally:
            if "tensorflow" in sys.modules and sys.modules["tensorflow"] is None:
                del sys.modules["tensorflow"]
        namespace = module.__dict__
        namespace["tensorflow"] = _TensorFlowOnUse()
        namespace["has_tensorflow"] = True
        namespace.pop("has_tensorflow_gpu", None)

        def __getattr__(name: str) -> Any:
            if name == "has_tensorflow_gpu":  # thinc.compat's own expression
                value = len(namespace["tensorflow"].config.get_visible_devices("GPU")) > 0
                namespace[name] = value
                return value
            raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")

        namespace.setdefault("__getattr__", __getattr__)


def _thinc_probe() -> bool:
    if THINC_COMPAT in sys.modules:
        return False
    if not _file_matches(_package_file("thinc", "compat.py"), EXPECTED["thinc_compat"], "thinc_probe"):
        return False
    sys.meta_path.insert(0, _Hook(THINC_COMPAT, _ProbeHidden))
    return True


# -- 2. the registry imports the components that are looked up ------------------


def _default_component_modules(path: pathlib.Path | None) -> dict[str, str]:
    """Class name -> module, from default_components.py's own imports (not run)."""
    tree = ast.parse(path.read_text(encoding="utf-8")) if path else ast.Module(body=[], type_ignores=[])
    listed = {
        element.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for element in getattr(node.value, "elts", [])
        if isinstance(element, ast.Name)
    }
    return {
        alias.asname or alias.name: node.module
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
        if (alias.asname or alias.name) in listed
    }


def _registry() -> bool:
    path = _package_file("rasa", "engine/recipes/default_components.py")
    if not _file_matches(path, EXPECTED["default_components"], "registry"):
        return False
    from rasa.engine.recipes.default_recipe import DefaultV1Recipe
    from rasa.shared.utils.common import class_from_module_path

    original = DefaultV1Recipe.__dict__.get("_from_registry")
    if not isinstance(original, classmethod) or not source_matches(original, EXPECTED["from_registry"], "registry"):
        return False
    modules = _default_component_modules(path)
    lookup = original.__func__

    def _from_registry(cls: Any, name: str) -> Any:
        registered = cls._registered_components
        if name not in registered and name in modules:
            getattr(importlib.import_module(modules[name]), name)  # its decorator registers it
        if name in registered:
            return registered[name]
        if "." in name:
            clazz = class_from_module_path(name)
            if clazz.__name__ in registered:
                return registered[clazz.__name__]
        return lookup(cls, name)  # Rasa's own: every default component, then its error

    _from_registry.__wrapped__ = lookup  # type: ignore[attr-defined]
    DefaultV1Recipe._from_registry = classmethod(_from_registry)
    return True


# -- 3. a loaded model's train graph is read when first used ---------------------

_DeferredGraphSchema: Any = None  # the class, made at install (it subclasses Rasa's GraphSchema)


def _deferred_schema_class() -> Any:
    global _DeferredGraphSchema
    if _DeferredGraphSchema is not None:
        return _DeferredGraphSchema
    from rasa.engine.graph import GraphSchema

    class Deferred(GraphSchema):
        """A stored graph schema whose classes Rasa's ``GraphSchema.from_dict``
        imports the first time its nodes are read."""

        def __init__(self, serialized: dict[str, Any]) -> None:  # no super().__init__: no nodes yet
            self._serialized = copy.deepcopy(serialized)  # from_dict rewrites the dict it reads

        def __getattr__(self, name: str) -> Any:
            if name == "nodes" and "_serialized" in self.__dict__:
                nodes = GraphSchema.from_dict(copy.deepcopy(self._serialized)).nodes
                self.nodes = nodes
                return nodes
            raise AttributeError(name)

        def __eq__(self, other: object) -> bool:
            return isinstance(other, GraphSchema) and self.nodes == other.nodes

        __hash__ = None  # type: ignore[assignment]  # as GraphSchema's

    Deferred.__module__ = __name__
    Deferred.__name__ = Deferred.__qualname__ = "_DeferredGraphSchema"  # picklable: plugins.lean._DeferredGraphSchema
    _DeferredGraphSchema = Deferred
    return Deferred


def _defer_train_schema() -> bool:
    from rasa.engine.storage.storage import ModelMetadata

    original = ModelMetadata.__dict__.get("from_dict")
    if not isinstance(original, classmethod) or not source_matches(
        original, EXPECTED["metadata_from_dict"], "deferred_train_schema"
    ):
        return False
    deferred = _deferred_schema_class()
    read = original.__func__

    def from_dict(cls: Any, serialized: dict[str, Any]) -> Any:
        # Rasa's own code, with the train schema handed over as it was stored
        # (an empty node list: nothing to import) and put back deferred.
        stored = dict(serialized, train_schema={"nodes": {}})
        metadata = read(cls, stored)
        metadata.train_schema = deferred(serialized["train_schema"])
        return metadata

    from_dict.__wrapped__ = read  # type: ignore[attr-defined]
    ModelMetadata.from_dict = classmethod(from_dict)
    return True
