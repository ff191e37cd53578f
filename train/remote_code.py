#!/usr/bin/env python
"""Generate the remote code of a published InDI repo from the installed `indi_pipeline` sources.

A published repo must also serve a user who has only diffusers installed::

    DiffusionPipeline.from_pretrained("org/indi-denoise", trust_remote_code=True)

diffusers loads a custom pipeline when model_index.json's ``_class_name`` is a list ``[file stem, class]`` and that
``<file stem>.py`` lies at the repo root, and a custom component when the component's folder holds a file named after
its library name in model_index.json (``unet/indi_pipeline.network.py`` for ``["indi_pipeline.network", "InDINet"]``).
So the repo keeps the library names of the installed package (design.md §3: module paths are a public contract) and
gains three generated files:

    pipeline_indi.py                             InDIPipeline, with the helpers it imports inlined
    unet/indi_pipeline.network.py                InDINet
    scheduler/indi_pipeline.scheduling_indi.py   InDIScheduler

Each one is self-contained: only torch, numpy, PIL, diffusers and the standard library are imported. What a module
takes from its sibling modules (``from .image_io import merge``) is inlined: the named definitions and, transitively,
the top-level definitions and imports they use, in source order. Nothing here is committed as a copy: the files are
written at publish time (``train/publish.py``) with a header that names the indi_pipeline version they came from.

With indi_pipeline installed, ``InDIPipeline.from_pretrained(repo)`` loads the installed classes and runs none of these
files: from the Hub it downloads configs and safetensors only, and on a folder that holds them its ``load_config``
reads ``_class_name`` and the component entries as the installed package's.

    python -m train.remote_code /tmp/indi-denoise-copy   # add the code to a COPY of a repo folder (modified in place)
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "indi_pipeline"
PIPELINE_MODULE = f"{PACKAGE}.pipeline_indi"
PIPELINE_CLASS = "InDIPipeline"
# Imports a generated module may keep (plus the standard library): diffusers and what every diffusers install has.
ALLOWED_IMPORT_ROOTS = frozenset({"torch", "numpy", "PIL", "diffusers", "huggingface_hub", "safetensors"})


class RemoteCodeError(RuntimeError):
    """The sources cannot be turned into self-contained remote code (a generator bug or a library change)."""


# ------------------------------------------------------------------------------------------------- source lookup
def package_dir() -> Path:
    """The indi_pipeline package folder, found without importing it (that would import torch)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RemoteCodeError(f"cannot find the {PACKAGE} package: install it (pip install -e .)")
    return Path(list(spec.submodule_search_locations)[0])


def module_path(module_name: str) -> Path:
    """Source file of an indi_pipeline module, e.g. indi_pipeline.network -> .../indi_pipeline/network.py."""
    parts = module_name.split(".")
    if parts[0] != PACKAGE:
        raise RemoteCodeError(f"{module_name} is not a module of {PACKAGE}")
    base = package_dir().joinpath(*parts[1:])
    path = base / "__init__.py" if len(parts) == 1 else base.with_suffix(".py")
    if not path.is_file():
        raise RemoteCodeError(f"{module_name}: no source file {path}")
    return path


def package_version() -> str:
    """indi_pipeline.__version__, read from the package's __init__.py source."""
    for node in ast.parse(module_path(PACKAGE).read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
            return ast.literal_eval(node.value)
    raise RemoteCodeError(f"{PACKAGE}/__init__.py defines no __version__")


# --------------------------------------------------------------------------------------------------- AST helpers
def _bound_names(node: ast.stmt) -> list[str]:
    """Top-level names a statement binds (a def, a class, an assignment target, an import alias)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return [(alias.asname or alias.name).split(".")[0] for alias in node.names]
    targets = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        targets = [node.target]
    return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]


def _used_names(node: ast.AST) -> set[str]:
    """Every plain name a statement mentions (over-approximates: a local that shadows a global counts too)."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _is_future(node: ast.stmt) -> bool:
    return isinstance(node, ast.ImportFrom) and node.module == "__future__"


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


@dataclass
class _Module:
    """One indi_pipeline module, parsed: which statement binds each top-level name."""

    name: str
    path: Path
    tree: ast.Module
    source: str
    binders: dict[str, list[int]] = field(default_factory=dict)  # name -> indices of statements that bind it

    @classmethod
    def load(cls, module_name: str) -> _Module:
        path = module_path(module_name)
        source = path.read_text(encoding="utf-8")
        module = cls(module_name, path, ast.parse(source, filename=str(path)), source)
        for index, node in enumerate(module.tree.body):
            for name in _bound_names(node):
                module.binders.setdefault(name, []).append(index)
        return module

    def resolve_relative(self, node: ast.ImportFrom) -> str:
        package = self.name.rsplit(".", node.level)[0] if node.level else ""
        return f"{package}.{node.module}" if node.module else package


class _Bundler:
    """Collects, for an entry module, every definition it needs from its sibling modules."""

    def __init__(self):
        self.modules: dict[str, _Module] = {}
        self.needed: dict[str, set[int]] = {}  # module -> indices of statements to inline
        self.deps: dict[str, set[str]] = {}  # module -> sibling modules it takes definitions from

    def module(self, name: str) -> _Module:
        if name not in self.modules:
            self.modules[name] = _Module.load(name)
        return self.modules[name]

    def require(self, module_name: str, names: set[str], stack: tuple[str, ...] = ()) -> None:
        """Marks the statements of ``module_name`` that bind ``names``, and everything they use, as needed."""
        if module_name in stack:
            raise RemoteCodeError(f"circular relative imports: {' -> '.join(stack + (module_name,))}")
        module = self.module(module_name)
        needed = self.needed.setdefault(module_name, set())
        todo = list(names)
        while todo:
            name = todo.pop()
            if name not in module.binders:
                raise RemoteCodeError(f"{module_name} has no top-level {name!r} (needed by the generated code)")
            for index in module.binders[name]:
                if index in needed:
                    continue
                needed.add(index)
                node = module.tree.body[index]
                if isinstance(node, ast.ImportFrom) and node.level:
                    self.require_import(module, node, {name}, stack + (module_name,))
                    continue
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                todo.extend(n for n in _used_names(node) if n in module.binders)

    @property
    def order(self) -> list[str]:
        """Every module involved, each after the modules it takes definitions from."""
        order: list[str] = []

        def visit(name: str) -> None:
            if name not in order:
                for dependency in sorted(self.deps.get(name, ())):
                    visit(dependency)
                order.append(name)

        for name in sorted(self.needed):
            visit(name)
        return order

    def require_import(self, module: _Module, node: ast.ImportFrom, names: set[str], stack) -> None:
        source = module.resolve_relative(node)
        if not source.startswith(PACKAGE):
            raise RemoteCodeError(f"{module.name}: relative import of {source} leaves the {PACKAGE} package")
        originals = {alias.name for alias in node.names if (alias.asname or alias.name) in names}
        if any(alias.asname and alias.asname != alias.name for alias in node.names):
            raise RemoteCodeError(f"{module.name}: renamed relative imports are not supported by the generator")
        self.deps.setdefault(module.name, set()).add(source)
        self.require(source, originals, stack)

    def statements(self, module_name: str, entry: bool) -> list[ast.stmt]:
        """The statements to emit for a module (all of them for the entry module), relative imports dropped."""
        module = self.module(module_name)
        keep = range(len(module.tree.body)) if entry else sorted(self.needed.get(module_name, ()))
        out = []
        for index in keep:
            node = module.tree.body[index]
            if _is_future(node) or (isinstance(node, ast.ImportFrom) and node.level):
                continue
            if index == 0 and _is_docstring(node):
                continue
            if not entry and isinstance(node, ast.ImportFrom) and not node.level:
                # Keep only the aliases this module's needed statements use.
                node = self._trim_import(module, node)
            out.append(node)
        return out

    def _trim_import(self, module: _Module, node: ast.ImportFrom) -> ast.ImportFrom:
        used = set()
        for index in self.needed[module.name]:
            stmt = module.tree.body[index]
            if not isinstance(stmt, (ast.Import, ast.ImportFrom)):
                used |= _used_names(stmt)
        aliases = [a for a in node.names if (a.asname or a.name) in used] or node.names
        return ast.ImportFrom(module=node.module, names=aliases, level=0)


def _check_imports(text: str, what: str) -> None:
    """Refuses any import a plain diffusers install cannot satisfy (relative ones, indi_pipeline, other packages).

    Checks the syntax tree, and the text the way diffusers' ``check_imports`` reads it (line regexes that also match
    inside strings): a relative-import line would make diffusers look for a sibling file that is not there.
    """
    for line in re.findall(r"^\s*(?:from\s+\.\S*\s+import|import\s+\.)\S*.*$", text, flags=re.MULTILINE):
        raise RemoteCodeError(f"{what}: a line diffusers reads as a relative import: {line.strip()!r}")
    roots = re.findall(r"^\s*import\s+(\S+)\s*$", text, flags=re.MULTILINE)
    roots += re.findall(r"^\s*from\s+(\S+)\s+import", text, flags=re.MULTILINE)
    for root in {r.split(".")[0] for r in roots}:
        if root != "__future__" and root not in ALLOWED_IMPORT_ROOTS and root not in sys.stdlib_module_names:
            raise RemoteCodeError(f"{what}: diffusers would look for a package {root!r} (an import line in the text)")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                raise RemoteCodeError(f"{what}: relative import left in generated code: {ast.unparse(node)}")
            roots = [node.module.split(".")[0]]
        elif isinstance(node, ast.Import):
            roots = [alias.name.split(".")[0] for alias in node.names]
        else:
            continue
        for root in roots:
            if root == "__future__":
                continue
            if root not in ALLOWED_IMPORT_ROOTS and root not in sys.stdlib_module_names:
                raise RemoteCodeError(
                    f"{what}: imports {root!r}; generated remote code may only import "
                    f"{', '.join(sorted(ALLOWED_IMPORT_ROOTS))} and the standard library"
                )


def _check_unique_bindings(statements: list[tuple[str, ast.stmt]], what: str) -> None:
    """Two inlined modules must not bind the same top-level name differently (equal imports may repeat)."""
    seen: dict[str, tuple[str, str | None]] = {}
    for module_name, node in statements:
        for name in _bound_names(node):
            target = _import_target(node, name) if isinstance(node, (ast.Import, ast.ImportFrom)) else None
            if name in seen and seen[name][0] != module_name and (target is None or seen[name][1] != target):
                raise RemoteCodeError(
                    f"{what}: {name!r} is bound both in {seen[name][0]} and in {module_name}; "
                    "rename one so that the generated module can hold both"
                )
            seen[name] = (module_name, target)


def _import_target(node: ast.Import | ast.ImportFrom, name: str) -> str:
    """What an import binds ``name`` to, e.g. 'torch.nn.functional' for ``import torch.nn.functional as F``."""
    for alias in node.names:
        if (alias.asname or alias.name).split(".")[0] == name:
            if isinstance(node, ast.ImportFrom):
                return f"{node.module}.{alias.name}"
            return alias.name if alias.asname else name
    return ""


def _format_imports(nodes: list[ast.Import | ast.ImportFrom]) -> str:
    """One import block, standard library first, ``from`` imports of one module merged, duplicates dropped."""
    plain: dict[str, set[str]] = {}  # root -> "import x" lines
    froms: dict[str, dict[str, None]] = {}  # module -> ordered aliases
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                line = f"import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
                plain.setdefault(line, set())
        else:
            names = froms.setdefault(node.module, {})
            for alias in node.names:
                names[alias.name + (f" as {alias.asname}" if alias.asname else "")] = None

    def group(name: str) -> int:
        return 0 if name.split(".")[0] in sys.stdlib_module_names else 1

    lines = [(group(line.split()[1]), line.split()[1], line) for line in plain]
    for module, names in froms.items():
        lines.append((group(module), module, f"from {module} import {', '.join(sorted(names))}"))
    out, last_group = [], None
    for key, _, line in sorted(lines, key=lambda item: (item[0], item[1].lower(), item[2])):
        if last_group is not None and key != last_group:
            out.append("")
        out.append(line)
        last_group = key
    return "\n".join(out) + "\n"


def _header(sources: list[str]) -> str:
    return (
        f"# Generated by train/remote_code.py from indi_pipeline {package_version()} ({', '.join(sources)}).\n"
        "# DO NOT EDIT: change indi_pipeline and republish. This file lets a plain diffusers install load the\n"
        "# repo with DiffusionPipeline.from_pretrained(..., trust_remote_code=True). With indi_pipeline installed,\n"
        "# use indi_pipeline.InDIPipeline.from_pretrained(...) instead.\n"
    )


def generate_module(module_name: str) -> str:
    """Source of a self-contained copy of an indi_pipeline module: its sibling imports replaced by the code used."""
    bundler = _Bundler()
    entry = bundler.module(module_name)
    for node in entry.tree.body:
        if isinstance(node, ast.ImportFrom) and node.level:
            bundler.require_import(entry, node, {alias.name for alias in node.names}, (module_name,))
    modules = [name for name in bundler.order if name != module_name] + [module_name]
    tagged = [(name, node) for name in modules for node in bundler.statements(name, entry=name == module_name)]
    _check_unique_bindings(tagged, module_name)

    text = _header([module_path(name).relative_to(package_dir().parent).as_posix() for name in modules])
    if entry.tree.body and _is_docstring(entry.tree.body[0]):
        text += ast.get_source_segment(entry.source, entry.tree.body[0]) + "\n"
    if any(_is_future(node) for name in modules for node in bundler.module(name).tree.body):
        text += "\nfrom __future__ import annotations\n"
    text += "\n" + _format_imports([node for _, node in tagged if isinstance(node, (ast.Import, ast.ImportFrom))])
    # Inlined definitions keep their source text (decorators, comments and docstrings inside them included).
    previous_def = None
    for name, node in tagged:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        lines = bundler.module(name).source.splitlines()
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        is_def = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        separator = "\n\n" if previous_def is None else "\n\n\n" if is_def or previous_def else "\n"
        text += separator + "\n".join(lines[start - 1 : node.end_lineno])
        previous_def = is_def
    text += "\n"
    _check_imports(text, module_name)
    compile(text, f"<generated {module_name}>", "exec")
    return text


# -------------------------------------------------------------------------------------------------- repo layout
@dataclass
class RemoteFile:
    """A generated file: its path in the repo and the indi_pipeline module it came from."""

    path: str
    module: str
    text: str


def remote_files(model_index: dict) -> list[RemoteFile]:
    """The files to add to a repo with this model_index.json (component files only for indi_pipeline components)."""
    files = [RemoteFile(f"{PIPELINE_MODULE.rsplit('.', 1)[1]}.py", PIPELINE_MODULE, generate_module(PIPELINE_MODULE))]
    for component, entry in sorted(model_index.items()):
        if component.startswith("_") or not isinstance(entry, list) or len(entry) != 2 or entry[0] is None:
            continue
        library, class_name = entry
        if library == PACKAGE or not str(library).startswith(PACKAGE + "."):
            if library == PACKAGE:
                raise RemoteCodeError(
                    f"model_index.json names component {component!r} as [{library!r}, {class_name!r}]; "
                    f"save_pretrained writes the defining module ({PACKAGE}.network, ...), which remote code needs"
                )
            continue  # a diffusers / transformers component: plain diffusers loads it already
        if class_name not in _Module.load(library).binders:
            raise RemoteCodeError(f"model_index.json: {library} has no class {class_name} (component {component!r})")
        # diffusers looks for <component>/<library name>.py (dots and all) in the component's folder.
        files.append(RemoteFile(f"{component}/{library}.py", library, generate_module(library)))
    return files


def remote_model_index(model_index: dict) -> dict:
    """model_index.json for the published repo: ``_class_name`` becomes ``[file stem, class]`` (diffusers' custom
    pipeline convention); every component entry keeps its indi_pipeline library name."""
    if model_index.get("_class_name") not in (PIPELINE_CLASS, [PIPELINE_MODULE.rsplit(".", 1)[1], PIPELINE_CLASS]):
        raise RemoteCodeError(
            f"model_index.json _class_name is {model_index.get('_class_name')!r}; expected {PIPELINE_CLASS!r}"
        )
    index = dict(model_index)
    index["_class_name"] = [PIPELINE_MODULE.rsplit(".", 1)[1], PIPELINE_CLASS]
    return index


def add_remote_code(folder: str | Path) -> list[Path]:
    """Writes the remote code into a repo folder (a staging copy, never a model_cards/ folder) and points its
    model_index.json at it; returns the paths written."""
    folder = Path(folder)
    committed = Path(__file__).resolve().parent.parent / "model_cards"
    if committed == folder.resolve() or committed in folder.resolve().parents:
        raise RemoteCodeError(f"{folder}: generated code is never written into model_cards/; use a staging copy")
    index_path = folder / "model_index.json"
    model_index = json.loads(index_path.read_text())
    written = []
    for remote in remote_files(model_index):
        target = folder / remote.path
        if not target.parent.is_dir():
            raise RemoteCodeError(f"{folder}: no {target.parent.name}/ folder for {remote.path}")
        target.write_text(remote.text, encoding="utf-8")
        written.append(target)
    index_path.write_text(json.dumps(remote_model_index(model_index), indent=2, sort_keys=True) + "\n")
    written.append(index_path)
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Write InDI remote code into a copy of a model repo folder.")
    parser.add_argument("folder", help="Repo folder to add the code to (a staging copy: it is modified in place).")
    args = parser.parse_args(argv)
    for path in add_remote_code(args.folder):
        print(path)


if __name__ == "__main__":
    main()
