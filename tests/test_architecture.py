"""The shape of the house (docs/architecture.md), measured on the source with ``ast`` (tests/architecture.py).

* no import cycle between the files of ``eekit/``, nor between its top-level files and subpackages, counting every
  import wherever it sits (a late import inside a function still closes a cycle);
* fewer than 20 function-level imports of eekit modules, each with a one-line ``# why`` comment;
* no module outside ``eekit/models/`` switches on a concrete model class (``isinstance``) or on ``task ==``: what a
  model accepts, and its loss, belong to the model kind (the ``ExitModel`` protocol).
"""

import ast

import architecture as arch

MAX_LATE_IMPORTS = 20


def _outside_models():
    return {m: p for m, p in arch.modules().items() if not m.startswith("eekit.models")}


def _model_classes() -> set[str]:
    """The model kinds of eekit/models/: the classes that implement the contract (they define ``begin``), and the SSL
    encoder. (Layers such as ``Normalize`` are building blocks a compiler may match, e.g. compress' lowering.)"""
    names = {"MaskedUnitEncoder"}
    for module, path in arch.modules().items():
        if module.startswith("eekit.models"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef) and any(isinstance(f, ast.FunctionDef) and f.name == "begin"
                                                          for f in node.body):
                    if not any(getattr(b, "id", getattr(b, "attr", "")) == "Protocol" for b in node.bases):
                        names.add(node.name)
    return names


def test_the_analysis_sees_a_cycle():
    assert arch.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert arch.cycles({"a": {"b"}, "b": {"c"}}) == []


def test_no_import_cycle_between_files():
    assert arch.cycles(arch.graph(arch.arrows())) == []


def test_no_import_cycle_between_files_and_subpackages():
    assert arch.cycles(arch.graph(arch.arrows(), collapse=True)) == []


def test_few_function_level_imports_each_with_a_reason():
    late = {(a.source, a.line): a.text for a in arch.arrows() if a.late}
    assert len(late) < MAX_LATE_IMPORTS, sorted(late)
    unexplained = [f"{m}:{line}" for (m, line), text in late.items() if "# why" not in text]
    assert unexplained == []


def test_no_isinstance_on_a_concrete_model_class_outside_models():
    classes = _model_classes()
    assert {"EarlyExitNet", "SpeechEarlyExit", "MaskedUnitEncoder"} <= classes
    found = []
    for module, path in _outside_models().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance" and len(node.args) == 2:
                kinds = node.args[1].elts if isinstance(node.args[1], ast.Tuple) else [node.args[1]]
                named = {getattr(k, "id", getattr(k, "attr", None)) for k in kinds}
                if named & classes:
                    found.append(f"{module}:{node.lineno} {sorted(named & classes)}")
    assert found == []


def test_no_task_switch_outside_models():
    """No comparison on a model's ``task`` (``model.task == ...``, ``getattr(model, "task") ...``): switch on the
    contract's ``output_kind``/``input_kind`` or call the kind's own method. (A local ``task`` naming a downstream
    probe task, as in eekit.ssl.probes, is data, not a model kind.)"""
    def is_model_task(node):
        return (isinstance(node, ast.Attribute) and node.attr == "task") or (
            isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr" and len(node.args) >= 2
            and getattr(node.args[1], "value", None) == "task")

    found = []
    for module, path in _outside_models().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and any(is_model_task(s) for s in [node.left, *node.comparators]):
                found.append(f"{module}:{node.lineno}")
    assert found == []


# docs/architecture.md's floors; inside floor 4 the orchestrators are ordered (zoo may use ssl, compress may use zoo)
FLOORS = {"validate": 0, "files": 0, "memory": 0, "report_format": 0, "cli": 0, "data": 0.5, "librispeech": 0.6, "models": 1,
          "criteria": 2, "profile": 2.5, "costs": 2, "runtime": 2.5, "train": 2, "intervals": 2, "evaluate": 3,
          "ssl": 4, "speech_encoders": 4.1, "zoo": 4.2, "energy": 4.3, "compress": 4.4, "sentences": 4.5,
          "recipes": 4.9, "speech_recipes": 4.9, "units": 4.9, "daisy": 4.9, "probes": 4.9, "adaptivity": 4.9,
          "widgets": 5, "onnx_export": 5.5, "bench": 5.5, "exercises": 5.5, "lessons": 5.5, "__main__": 6}


def test_every_import_goes_down_the_floors_of_docs_architecture():
    edges = arch.graph(arch.arrows(), collapse=True)
    nodes = {n.split(".")[1] for n in set(edges) | {t for ts in edges.values() for t in ts}}
    assert nodes <= set(FLOORS), f"a new module needs its floor in docs/architecture.md: {nodes - set(FLOORS)}"
    upward = [f"{s} -> {t}" for s, ts in edges.items() for t in ts
              if FLOORS[t.split(".")[1]] > FLOORS[s.split(".")[1]]]
    assert upward == []
