"""Dataclass ``__init__`` methods written out in the copies of the modules that mypyc compiles.

mypyc compiles the methods a class's source defines. A dataclass's ``__init__`` is not among
them: the ``dataclasses`` module generates it at import, so it runs interpreted, and a frozen
class's sets each field through a generic ``object.__setattr__`` (bench/profiles/README.md, round
19: about 11,500 instructions to build one ``Usage``; building objects this way was a sixth of a
request's instructions). So ``scripts/build_native.py`` compiles copies of the modules in which
every dataclass without an ``__init__`` of its own gets the one ``dataclasses`` would have
generated, written out: the same parameters in the same order (a base class's fields first,
keyword-only ones last), the same defaults, factories called per instance, fields left out of
``__init__`` set to their defaults, then ``__post_init__``. A frozen class sets its fields with
``object.__setattr__``, which mypyc compiles to a plain store. ``dataclasses`` keeps an
``__init__`` the class defines, and mypy's dataclass plugin checks callers against it.

The method is one line, put in place of the blank line after the class's fields, so every other
line keeps its number: compiled code's tracebacks name the source's lines. Where no blank line
follows the fields, it is inserted there. A class this does not cover keeps the generated
``__init__``, and so do its bases (mypyc would build it with theirs); the notes name each, with
the reason: bases that are not one dataclass of the compiled modules, ``InitVar`` or ``KW_ONLY``
fields, a factory for a field that may be ``None`` (the written ``__init__`` takes ``None`` to
mean "call the factory"), a field named like a name the fields' types or defaults use (as a
parameter it would hide that name), or an inherited field whose type or default uses a name its
module does not have.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Mapping
from dataclasses import dataclass

_NOT_FIELDS = ("ClassVar",)
_UNSUPPORTED = ("InitVar", "KW_ONLY")
_FIELD_CALLS = ("field", "dataclasses.field")


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    annotation: str
    default: str | None  # source of the default value
    factory: str | None  # source of a call to the default factory
    init: bool
    kw_only: bool
    names: frozenset[str]  # the names its annotation, default and factory read


@dataclass(slots=True)
class _Class:
    module: str
    node: ast.ClassDef
    frozen: bool
    written: bool  # gets an __init__ written out (it has none, and dataclasses would make one)
    own: list[_Field]
    bases: list[str]  # qualified names
    problem: str | None = None
    fields: list[_Field] | None = None  # with the bases' fields, once resolved
    post_init: bool = False  # it or a base defines __post_init__


class _Unsupported(Exception):
    pass


def written_out(sources: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """``sources`` (module name -> source) with ``__init__`` methods written into their
    top-level dataclasses; and notes naming the dataclasses left as they were, with the reason."""
    trees = {module: ast.parse(source) for module, source in sources.items()}
    classes: dict[str, _Class] = {}
    for module, tree in trees.items():
        for node in tree.body:
            found = _read_class(module, tree, node)
            if found is not None:
                classes[f"{module}.{found.node.name}"] = found
    for name in classes:
        _resolve(name, classes, trees)
    _leave_bases_of_the_left(classes)
    notes = [
        f"{name}: {found.problem}"
        for name, found in classes.items()
        if found.written and found.problem is not None
    ]
    out = {}
    for module, source in sources.items():
        lines = source.splitlines(keepends=True)
        edits = [
            (_anchor(found.node), " " * found.node.body[0].col_offset + _method(found) + "\n")
            for found in classes.values()
            if found.module == module and found.written and found.problem is None
        ]
        for index, text in sorted(edits, reverse=True):
            if index < len(lines) and not lines[index].strip():
                lines[index] = text
            else:
                lines.insert(index, text)
        out[module] = "".join(lines)
    return out, notes


def _read_class(module: str, tree: ast.Module, node: ast.stmt) -> _Class | None:
    if not isinstance(node, ast.ClassDef):
        return None
    options = _dataclass_options(node)
    if options is None:
        return None
    found = _Class(
        module,
        node,
        frozen=bool(options.get("frozen")),
        written=options.get("init") is not False and not _defines(node, "__init__"),
        own=[],
        bases=[],
    )
    try:
        found.bases = [_qualified(module, tree, base) for base in node.bases]
        if node.keywords or len(found.bases) > 1:
            raise _Unsupported("it has more than one base, or class keywords")
        found.own = _own_fields(node, bool(options.get("kw_only")))
    except _Unsupported as exc:
        found.problem = str(exc)
    return found


def _dataclass_options(node: ast.ClassDef) -> dict[str, object] | None:
    """The ``@dataclass(...)`` options of ``node``, or None when it is no dataclass."""
    for decorator in node.decorator_list:
        call = decorator if isinstance(decorator, ast.Call) else None
        target = call.func if call is not None else decorator
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
        if name != "dataclass":
            continue
        if call is None:
            return {}
        return {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg is not None}
    return None


def _defines(node: ast.ClassDef, name: str) -> bool:
    return any(
        isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef) and statement.name == name
        for statement in node.body
    )


def _qualified(module: str, tree: ast.Module, base: ast.expr) -> str:
    """A base class's qualified name, from the module's own classes and ``from`` imports."""
    if not isinstance(base, ast.Name):
        raise _Unsupported(f"its base {ast.unparse(base)} is not a plain name")
    for statement in tree.body:
        if isinstance(statement, ast.ClassDef) and statement.name == base.id:
            return f"{module}.{base.id}"
        if isinstance(statement, ast.ImportFrom) and statement.module and not statement.level:
            for alias in statement.names:
                if (alias.asname or alias.name) == base.id:
                    return f"{statement.module}.{alias.name}"
    raise _Unsupported(f"its base {base.id} is not a class of the compiled modules")


def _own_fields(node: ast.ClassDef, kw_only: bool) -> list[_Field]:
    fields = []
    for statement in node.body:
        if not isinstance(statement, ast.AnnAssign) or not isinstance(statement.target, ast.Name):
            continue
        annotation = ast.unparse(statement.annotation)
        if any(word in annotation for word in _UNSUPPORTED):
            raise _Unsupported(f"field {statement.target.id} is {annotation}")
        if any(annotation.startswith(word) for word in _NOT_FIELDS):
            continue
        fields.append(_field(statement, annotation, kw_only))
    return fields


def _field(statement: ast.AnnAssign, annotation: str, kw_only: bool) -> _Field:
    assert isinstance(statement.target, ast.Name)
    name, value = statement.target.id, statement.value
    names = frozenset(_names(statement.annotation) | _names(value))
    if not (isinstance(value, ast.Call) and ast.unparse(value.func) in _FIELD_CALLS):
        default = None if value is None else ast.unparse(value)
        return _Field(name, annotation, default, None, True, kw_only, names)
    if value.args:
        raise _Unsupported(f"field {name}: field() with positional arguments")
    options = {k.arg: k.value for k in value.keywords if k.arg is not None}
    if "kw_only" in options:
        raise _Unsupported(f"field {name}: field(kw_only=...)")
    init = options.get("init")
    factory = options.get("default_factory")
    if factory is not None and ("None" in annotation or "Optional" in annotation):
        raise _Unsupported(f"field {name}: a factory for an optional field")
    return _Field(
        name,
        annotation,
        ast.unparse(options["default"]) if "default" in options else None,
        f"({ast.unparse(factory)})()" if factory is not None else None,
        init is None or bool(ast.literal_eval(init)),
        kw_only,
        names,
    )


def _names(node: ast.AST | None) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} if node is not None else set()


def _resolve(name: str, classes: dict[str, _Class], trees: Mapping[str, ast.Module]) -> None:
    """Set the class's whole field list (its base's first, as ``dataclasses`` orders them), or
    its problem."""
    found = classes[name]
    if found.fields is not None or found.problem is not None:
        return
    fields: list[_Field] = []
    if found.bases:
        base = classes.get(found.bases[0])
        if base is None:
            found.problem = f"its base {found.bases[0]} is not a dataclass of the compiled modules"
            return
        _resolve(found.bases[0], classes, trees)
        if base.fields is None:
            found.problem = f"its base {found.bases[0]} is left as it is"
            return
        fields = list(base.fields)
        found.post_init = base.post_init
        known = _module_names(trees[found.module])
        for inherited in base.fields:
            if base.module != found.module and not inherited.names <= known:
                missing = ", ".join(sorted(inherited.names - known))
                found.problem = f"its inherited field {inherited.name} uses {missing}"
                return
    for own in found.own:
        same = [i for i, f in enumerate(fields) if f.name == own.name]
        if same:
            fields[same[0]] = own
        else:
            fields.append(own)
    read = set().union(*(f.names for f in fields))
    for f in fields:
        if f.name in read:
            found.problem = f"field {f.name} would hide the name its fields' types or defaults use"
            return
    found.fields = fields
    found.post_init = found.post_init or _defines(found.node, "__post_init__")


def _module_names(tree: ast.Module) -> set[str]:
    """The names a module binds at its top level, and the builtins."""
    names = set(dir(builtins))
    for statement in tree.body:
        if isinstance(statement, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in statement.names)
        elif isinstance(statement, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(statement.name)
        elif isinstance(statement, ast.Assign | ast.AnnAssign):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            for target in targets:
                names.update(_names(target))
    return names


def _leave_bases_of_the_left(classes: dict[str, _Class]) -> None:
    """A class that keeps its generated ``__init__`` needs its bases to keep theirs: mypyc
    compiles its construction with a base's compiled ``__init__`` otherwise."""
    changed = True
    while changed:
        changed = False
        for name, found in classes.items():
            if not found.written or found.fields is not None:
                continue
            for base in found.bases:
                left = classes.get(base)
                if left is not None and left.fields is not None and left.written:
                    left.fields = None
                    left.problem = f"{name} extends it and keeps its generated __init__"
                    changed = True


def _anchor(node: ast.ClassDef) -> int:
    """The 0-based line after the class's fields (and a docstring under the last of them), or
    after the class's first statement when it has no fields."""
    end = node.body[0].end_lineno or node.lineno
    for position, statement in enumerate(node.body):
        if isinstance(statement, ast.AnnAssign):
            end = statement.end_lineno or statement.lineno
            following = node.body[position + 1] if position + 1 < len(node.body) else None
            if _is_docstring(following):
                assert following is not None
                end = following.end_lineno or following.lineno
    return end


def _is_docstring(statement: ast.stmt | None) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def _method(found: _Class) -> str:
    assert found.fields is not None
    positional, keyword, statements = ["self"], list[str](), list[str]()
    for f in found.fields:
        value: str | None
        if not f.init:
            value = f.default if f.default is not None else f.factory
        elif f.factory is not None:
            (keyword if f.kw_only else positional).append(f"{f.name}: {f.annotation} | None = None")
            value = f"{f.factory} if {f.name} is None else {f.name}"
        else:
            default = "" if f.default is None else f" = {f.default}"
            (keyword if f.kw_only else positional).append(f"{f.name}: {f.annotation}{default}")
            value = f.name
        if value is None:  # left out of __init__ with no default: __post_init__ sets it
            continue
        if found.frozen:
            statements.append(f'object.__setattr__(self, "{f.name}", {value})')
        else:
            statements.append(f"self.{f.name} = {value}")
    if found.post_init:
        statements.append("self.__post_init__()")
    parameters = positional + (["*", *keyword] if keyword else [])
    return f"def __init__({', '.join(parameters)}) -> None: {'; '.join(statements) or 'pass'}"
