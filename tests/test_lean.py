"""plugins/lean.py: the Rasa server without TensorFlow.

Every check runs in a fresh interpreter (a subprocess): whether TensorFlow was
imported is a property of a whole process. Tests marked ``model`` train small
models in a temporary folder (one with the project's config.yml and the
project's own components on a tiny self-made domain and data, so they do not
depend on data/ being consistent; one with bench/stock_config.yml, DIET) and
use them through ``python -m plugins.launch`` as the Rasa server does.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
PATCHES = ("lazy_train_utils", "thinc_probe", "registry", "deferred_train_schema")


def run_python(code: str, lean: str = "1", timeout: float = 600, **env: str) -> dict[str, Any]:
    """Runs ``code`` in a clean interpreter in the project folder; it prints one
    JSON object as its last line of stdout, returned here."""
    environment = dict(os.environ, WAYPOINT_LEAN=lean, PYTHONPATH=str(ROOT), **env)
    prelude = "import json, sys\nfrom plugins import lean\nINSTALLED = lean.install()\n"
    done = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def launch(
    *args: str, lean: str = "1", stdin: str | None = None, timeout: float = 600, cwd: pathlib.Path = ROOT, **env: str
) -> subprocess.CompletedProcess:
    environment = dict(os.environ, WAYPOINT_LEAN=lean, PYTHONPATH=str(ROOT), **env)
    done = subprocess.run(
        [sys.executable, "-m", "plugins.launch", *args],
        cwd=cwd,
        env=environment,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-4000:])
    return done


def config_names(path: pathlib.Path) -> list:
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [item["name"] for item in config.get("pipeline", []) + config.get("policies", [])]


# -- no model needed --------------------------------------------------------------

LOOKUP = """
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
found = {name: DefaultV1Recipe._from_registry(name).clazz.__module__ for name in NAMES}
print(json.dumps({"installed": INSTALLED, "found": found, "tf": "tensorflow" in sys.modules}))
"""


def test_project_registry_lookup_imports_no_tensorflow():
    names = config_names(ROOT / "config.yml")
    result = run_python(f"NAMES = {names!r}\n" + LOOKUP)
    assert result["installed"] == {name: True for name in PATCHES}
    assert sorted(result["found"]) == sorted(names)
    assert result["found"]["FallbackClassifier"] == "rasa.nlu.classifiers.fallback_classifier"
    assert result["tf"] is False


def test_lean_off_is_stock_rasa():
    names = config_names(ROOT / "config.yml")
    result = run_python(f"NAMES = {names!r}\n" + LOOKUP, lean="0")
    assert result["installed"] == {name: False for name in PATCHES}
    assert sorted(result["found"]) == sorted(names)
    assert result["tf"] is True  # stock: the registry imports every default component


def test_stock_diet_config_resolves_and_imports_tensorflow_when_looked_up():
    names = config_names(ROOT / "bench" / "stock_config.yml")
    before_diet = [name for name in names if name != "DIETClassifier"]
    result = run_python(f"""
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
found = {{name: DefaultV1Recipe._from_registry(name).clazz.__name__ for name in {before_diet!r}}}
tf_before = "tensorflow" in sys.modules
diet = DefaultV1Recipe._from_registry("DIETClassifier")
by_path = DefaultV1Recipe._from_registry("rasa.nlu.classifiers.diet_classifier.DIETClassifier")
import yaml
from rasa.shared.data import TrainingType
config = yaml.safe_load(open("bench/stock_config.yml"))
graph = DefaultV1Recipe().graph_config_for_recipe(config, {{}}, TrainingType.BOTH)
used = sorted({{node.uses.__name__ for node in graph.predict_schema.nodes.values()}})
print(json.dumps({{"found": found, "tf_before": tf_before, "diet": diet.clazz.__module__,
                  "same": by_path is diet, "tf_after": "tensorflow" in sys.modules, "used": used}}))
""")
    assert set(result["found"]) == set(before_diet)
    assert result["tf_before"] is False
    assert result["diet"] == "rasa.nlu.classifiers.diet_classifier"
    assert result["same"] is True
    assert result["tf_after"] is True
    assert "DIETClassifier" in result["used"]


def test_unknown_component_gets_rasas_own_error():
    result = run_python("""
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.shared.exceptions import InvalidConfigException
try:
    DefaultV1Recipe._from_registry("NoSuchClassifier")
    error = None
except InvalidConfigException as e:
    error = str(e)
print(json.dumps({"error": error}))
""")
    assert result["error"] and "NoSuchClassifier" in result["error"]


def test_train_utils_runs_at_first_use():
    result = run_python("""
import rasa.nlu.extractors.extractor
import rasa.utils.train_utils as train_utils
lazy = "tensorflow" not in sys.modules
ranked = train_utils.rank_and_mask  # the first read runs the module (and imports TensorFlow)
try:
    train_utils.no_such_function
    missing = None
except AttributeError as e:
    missing = str(e)
print(json.dumps({"lazy": lazy, "tf": "tensorflow" in sys.modules, "callable": callable(ranked),
                  "missing": missing}))
""")
    assert result == {
        "lazy": True,
        "tf": True,
        "callable": True,
        "missing": "module 'rasa.utils.train_utils' has no attribute 'no_such_function'",
    }


def test_thinc_imports_tensorflow_only_when_it_uses_it():
    result = run_python("""
import spacy
tokens = [t.text for t in spacy.blank("en")("a few words")]
import thinc.compat, thinc.util
tf_after_spacy = "tensorflow" in sys.modules
installed = thinc.compat.has_tensorflow
from thinc.compat import has_tensorflow_gpu  # thinc's own probe, now
import tensorflow as tf
print(json.dumps({"tokens": tokens, "tf_after_spacy": tf_after_spacy, "installed": installed,
                  "gpu": has_tensorflow_gpu, "tensor": thinc.util.is_tensorflow_array(tf.constant(1.0)),
                  "same": thinc.util.tf.Tensor is tf.Tensor}))
""")
    assert result["tokens"] == ["a", "few", "words"]
    assert result["tf_after_spacy"] is False
    assert result["installed"] is True and result["gpu"] is False
    assert result["tensor"] is True and result["same"] is True


def test_each_patch_is_guarded_on_its_own():
    code = """
import json, sys
from plugins import lean
lean.EXPECTED["train_utils"] = "0" * 16
print(json.dumps(lean.install()))
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=dict(os.environ, WAYPOINT_LEAN="1", PYTHONPATH=str(ROOT)),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "lazy_train_utils": False,
        "thinc_probe": True,
        "registry": True,
        "deferred_train_schema": True,
    }
    assert "lazy_train_utils" in done.stderr  # the warning names the patch that stays off


# -- with trained models -----------------------------------------------------------

DOMAIN = """
version: "3.1"
intents:
  - greet
  - goodbye
  - ask_help
  - report_emergency
  - report_self_harm
responses:
  utter_greet:
  - text: "Hello."
  utter_goodbye:
  - text: "Goodbye."
  utter_help:
  - text: "Here is help."
  utter_emergency:
  - text: "Emergency."
  utter_crisis:
  - text: "Crisis."
actions:
  - action_search_topics
"""
EXAMPLES = {
    "greet": ["hi", "hello", "hey there", "good morning", "hello anyone there", "hi friend"],
    "goodbye": ["bye", "see you", "goodbye", "ok bye now", "that is all, bye", "see you later"],
    "ask_help": [
        "where can I get help",
        "I need help with my passport",
        "who can help me",
        "my boss took my passport",
        "how do I get my documents back",
        "I need a lawyer",
    ],
    "report_emergency": [
        "I am in danger now",
        "someone is hurting me",
        "help me they are coming",
        "I am locked in",
        "they beat me now",
        "call police please",
    ],
    "report_self_harm": [
        "I want to die",
        "I want to end my life",
        "I will hurt myself",
        "I do not want to live",
        "kill myself",
        "no reason to live",
    ],
}
RULES = {
    "greet": "utter_greet",
    "goodbye": "utter_goodbye",
    "ask_help": "utter_help",
    "report_emergency": "utter_emergency",
    "report_self_harm": "utter_crisis",
}


def tiny_project(folder: pathlib.Path, config: pathlib.Path) -> pathlib.Path:
    (folder / "data").mkdir(parents=True)
    (folder / "domain.yml").write_text(DOMAIN, encoding="utf-8")
    nlu = {
        "version": "3.1",
        "nlu": [
            {"intent": intent, "metadata": {"language": "en"}, "examples": "".join(f"- {e}\n" for e in examples)}
            for intent, examples in EXAMPLES.items()
        ],
    }
    rules = {
        "version": "3.1",
        "rules": [
            {"rule": intent, "steps": [{"intent": intent}, {"action": action}]} for intent, action in RULES.items()
        ],
    }
    (folder / "data" / "nlu.yml").write_text(yaml.safe_dump(nlu, allow_unicode=True), encoding="utf-8")
    (folder / "data" / "rules.yml").write_text(yaml.safe_dump(rules), encoding="utf-8")
    (folder / "config.yml").write_text(config.read_text(encoding="utf-8"), encoding="utf-8")
    launch(
        "train",
        "--config",
        str(folder / "config.yml"),
        "--domain",
        str(folder / "domain.yml"),
        "--data",
        str(folder / "data"),
        "--out",
        str(folder / "models"),
        "--fixed-model-name",
        "m",
        RASA_CACHE_DIRECTORY=str(folder / "cache"),
    )
    model = folder / "models" / "m.tar.gz"
    assert model.exists()
    return model


@pytest.fixture(scope="module")
def waypoint_model(tmp_path_factory) -> pathlib.Path:
    return tiny_project(tmp_path_factory.mktemp("waypoint"), ROOT / "config.yml")


@pytest.fixture(scope="module")
def diet_model(tmp_path_factory) -> pathlib.Path:
    return tiny_project(tmp_path_factory.mktemp("stock"), ROOT / "bench" / "stock_config.yml")


LOAD_AND_PARSE = """
import asyncio
from rasa.core.agent import Agent
agent = Agent.load(MODEL)
parsed = asyncio.run(agent.parse_message("my boss took my passport, where can I get help"))
rss = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS"))
result = {"intent": parsed["intent"]["name"], "tf": "tensorflow" in sys.modules, "rss_kb": rss}
"""


@pytest.mark.model
def test_waypoint_model_serves_without_tensorflow(waypoint_model):
    lean_on = run_python(
        f"MODEL = {str(waypoint_model)!r}\n"
        + LOAD_AND_PARSE
        + """
metadata = agent.processor.model_metadata
result["train_nodes"] = sorted(metadata.train_schema.nodes)  # read now: Rasa's from_dict, TensorFlow with it
result["uses"] = sorted({n.uses.__name__ for n in metadata.train_schema.nodes.values()})
print(json.dumps(result))
"""
    )
    stock = run_python(
        f"MODEL = {str(waypoint_model)!r}\n"
        + LOAD_AND_PARSE
        + """
metadata = agent.processor.model_metadata
result["train_nodes"] = sorted(metadata.train_schema.nodes)
result["uses"] = sorted({n.uses.__name__ for n in metadata.train_schema.nodes.values()})
print(json.dumps(result))
""",
        lean="0",
    )
    assert lean_on["intent"] == stock["intent"] == "ask_help"
    assert lean_on["tf"] is False
    assert stock["tf"] is True
    assert lean_on["train_nodes"] == stock["train_nodes"] and "DefaultV1RecipeValidator" in lean_on["uses"]
    assert lean_on["uses"] == stock["uses"]
    print(f"\nVmRSS after load and one parse: lean {lean_on['rss_kb'] // 1024} MB, stock {stock['rss_kb'] // 1024} MB")
    assert lean_on["rss_kb"] < stock["rss_kb"] - 200_000  # TensorFlow alone is far more than 200 MB


@pytest.mark.model
def test_rasa_test_and_shell_through_launch(waypoint_model, tmp_path):
    folder = waypoint_model.parent.parent
    launch(
        "test",
        "nlu",
        "--model",
        str(waypoint_model),
        "--nlu",
        str(folder / "data" / "nlu.yml"),
        "--out",
        str(tmp_path / "results"),
        "--no-plot",
    )
    report = json.loads((tmp_path / "results" / "intent_report.json").read_text(encoding="utf-8"))
    assert report["accuracy"] > 0.5
    stories = {
        "version": "3.1",
        "stories": [{"story": "greet", "steps": [{"user": "hello", "intent": "greet"}, {"action": "utter_greet"}]}],
    }
    (tmp_path / "stories.yml").write_text(yaml.safe_dump(stories), encoding="utf-8")
    launch(
        "test",
        "core",
        "--model",
        str(waypoint_model),
        "--stories",
        str(tmp_path / "stories.yml"),
        "--out",
        str(tmp_path / "core"),
        "--no-plot",
    )
    assert json.loads((tmp_path / "core" / "story_report.json").read_text(encoding="utf-8"))["accuracy"] == 1.0
    shell = launch("shell", "nlu", "--model", str(waypoint_model), stdin="hello\n")
    assert '"name": "greet"' in shell.stdout


@pytest.mark.model
def test_stock_diet_model_trains_and_parses_through_launch(diet_model):
    result = run_python(f"MODEL = {str(diet_model)!r}\n" + LOAD_AND_PARSE + "print(json.dumps(result))\n")
    assert result["tf"] is True  # DIET is used: TensorFlow is imported, as it must be
    assert result["intent"] in EXAMPLES
