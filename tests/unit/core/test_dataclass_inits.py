"""The build's written-out dataclass ``__init__`` methods (``scripts/dataclass_inits.py``): each
must construct exactly what the ``dataclasses`` one does, keep every other line where it was, and
leave alone, with a note, what it cannot write."""

from __future__ import annotations

import dataclasses
import sys
import textwrap
import types
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.scripts import load_script

dataclass_inits = load_script("dataclass_inits")

HEAD = """\
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar, Mapping

"""

SHAPES = HEAD + textwrap.dedent('''\
    LIMIT = 7


    @dataclass(frozen=True, slots=True, kw_only=True)
    class Counts:
        """Frozen, keyword-only, with factories."""

        fresh: int = 0
        cached: int | None = None
        tags: list[str] = field(default_factory=list)
        extra: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
        VERSION: ClassVar[int] = 2

        @property
        def total(self) -> int:
            return self.fresh + (self.cached or 0)


    @dataclass(slots=True)
    class Record:
        request_id: str
        stream: bool
        limit: int = LIMIT
        seen: set[str] = field(default_factory=set)
        """The ids seen."""
        _text: str | None = field(default=None, init=False, repr=False, compare=False)
        def describe(self) -> str:
            return self.request_id


    @dataclass(frozen=True, slots=True)
    class Target:
        provider: str
        model: str
        model_id: str = field(init=False, repr=False, compare=False)

        def __post_init__(self) -> None:
            object.__setattr__(self, "model_id", f"{self.provider}/{self.model}")


    @dataclass(slots=True)
    class Lease:
        scopes: tuple[str, ...]
        tokens: int
        finished: bool = False


    @dataclass(slots=True)
    class Shared(Lease):
        """A lease with more."""

        lease_id: str = ""
        keys: list[str] = field(default_factory=list)


    @dataclass(frozen=True)
    class Empty:
        """No fields at all."""


    @dataclass
    class Written:
        value: int

        def __init__(self, text: str) -> None:
            self.value = int(text)


    @dataclass(slots=True)
    class Last:
        name: str = "last"
''')


def load(name: str, source: str) -> Iterator[types.ModuleType]:
    module = types.ModuleType(name)
    sys.modules[name] = module
    try:
        exec(compile(source, f"<{name}>", "exec"), module.__dict__)  # noqa: S102 (our test text)
        yield module
    finally:
        del sys.modules[name]


@pytest.fixture
def both() -> Iterator[tuple[types.ModuleType, types.ModuleType, list[str]]]:
    written, notes = dataclass_inits.written_out({"shapes_written": SHAPES})
    for generated in load("shapes_generated", SHAPES):
        for mine in load("shapes_written", written["shapes_written"]):
            yield generated, mine, notes


CASES: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("Counts", (), {}),
    ("Counts", (), {"fresh": 3, "cached": 2, "tags": ["a"], "extra": {"x": 1}}),
    ("Record", ("r1", True), {}),
    ("Record", ("r1",), {"stream": False, "limit": 3, "seen": {"a"}}),
    ("Target", ("openai", "gpt-4o"), {}),
    ("Target", (), {"provider": "p", "model": "m"}),
    ("Lease", ((), 5), {}),
    ("Shared", (("k",), 5, True, "id"), {"keys": ["x"]}),
    ("Shared", (("k",), 5), {}),
    ("Empty", (), {}),
    ("Written", ("41",), {}),
    ("Last", (), {}),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), CASES)
def test_the_written_init_builds_what_the_generated_one_does(
    both: tuple[types.ModuleType, types.ModuleType, list[str]],
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    generated, mine, _ = both
    theirs, ours = getattr(generated, name)(*args, **kwargs), getattr(mine, name)(*args, **kwargs)
    fields = [f.name for f in dataclasses.fields(ours)]
    assert fields == [f.name for f in dataclasses.fields(theirs)]
    for attribute in fields:
        assert getattr(ours, attribute, "unset") == getattr(theirs, attribute, "unset"), attribute
    assert repr(ours).replace("shapes_written", "") == repr(theirs).replace("shapes_generated", "")


@pytest.mark.parametrize(
    ("name", "args", "kwargs"),
    [
        ("Counts", (1,), {}),  # keyword-only
        ("Counts", (), {"unknown": 1}),
        ("Record", ("r1",), {}),  # a field without a default left out
        ("Record", ("r1", True), {"_text": "x"}),  # not a parameter
        ("Target", ("p", "m"), {"model_id": "x"}),
        ("Shared", (), {"lease_id": "x"}),
    ],
)
def test_the_written_init_refuses_what_the_generated_one_refuses(
    both: tuple[types.ModuleType, types.ModuleType, list[str]],
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    generated, mine, _ = both
    with pytest.raises(TypeError):
        getattr(generated, name)(*args, **kwargs)
    with pytest.raises(TypeError):
        getattr(mine, name)(*args, **kwargs)


def test_every_dataclass_without_an_init_of_its_own_gets_one_written(
    both: tuple[types.ModuleType, types.ModuleType, list[str]],
) -> None:
    generated, mine, notes = both
    assert notes == []
    for name in ("Counts", "Record", "Target", "Lease", "Shared", "Empty", "Last"):
        # dataclasses' generated methods are compiled from text named "<string>"
        assert getattr(generated, name).__init__.__code__.co_filename == "<string>"
        assert getattr(mine, name).__init__.__code__.co_filename == "<shapes_written>", name
    assert mine.Written("5").value == 5


def test_factories_give_each_instance_its_own_value_and_frozen_stays_frozen(
    both: tuple[types.ModuleType, types.ModuleType, list[str]],
) -> None:
    _, mine, _ = both
    first, second = mine.Counts(), mine.Counts()
    assert first.tags == [] and first.tags is not second.tags
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.fresh = 1
    assert mine.Counts(fresh=2, cached=3).total == 5
    assert mine.Record("a", False).seen is not mine.Record("b", False).seen
    assert dataclasses.replace(mine.Counts(fresh=1), cached=4) == mine.Counts(fresh=1, cached=4)
    assert dataclasses.replace(mine.Target("p", "m"), model="n").model_id == "p/n"


def test_every_other_line_keeps_its_number() -> None:
    written, _ = dataclass_inits.written_out({"shapes": SHAPES})
    before, after = SHAPES.splitlines(), written["shapes"].splitlines()
    methods = [
        i
        for i, line in enumerate(after)
        if line.lstrip().startswith("def __init__(self") and line not in before
    ]
    assert len(methods) == 7
    # Record's fields are followed at once by a method (its __init__ is inserted there), Last's
    # by the end of the file (appended); every other one takes a blank line's place.
    record = next(i for i in methods if "request_id" in after[i])
    assert len(after) == len(before) + 2
    for i, line in enumerate(before):
        j = i if i < record else i + 1
        assert after[j] == line or (line == "" and j in methods), i


def test_what_it_cannot_write_keeps_the_generated_init_and_so_do_its_bases() -> None:
    source = HEAD + textwrap.dedent("""\
        from dataclasses import InitVar


        @dataclass(slots=True)
        class Base:
            tokens: int


        @dataclass(slots=True)
        class Child(Base):
            secret: InitVar[str]


        @dataclass
        class Optional:
            items: list[str] | None = field(default_factory=list)


        @dataclass
        class Hiding:
            gemini: gemini.Target = field(default_factory=gemini.Target)


        @dataclass
        class Error(ValueError):
            code: str = "x"


        @dataclass
        class Fine:
            code: str = "x"
    """)
    written, notes = dataclass_inits.written_out({"odd": source})
    assert sorted(note.split(":")[0] for note in notes) == [
        "odd.Base",
        "odd.Child",
        "odd.Error",
        "odd.Hiding",
        "odd.Optional",
    ]
    assert "extends it" in next(note for note in notes if note.startswith("odd.Base"))
    assert written["odd"].count("def __init__(") == 1  # Fine's


def test_a_base_in_another_module_gives_its_fields_first() -> None:
    base = HEAD + textwrap.dedent("""\
        @dataclass(slots=True)
        class Quota:
            limit: int


        @dataclass(slots=True)
        class Lease:
            quota: Quota | None = None
            finished: bool = False
    """)
    child = HEAD + textwrap.dedent("""\
        from leases_base import Lease, Quota


        @dataclass(slots=True)
        class Shared(Lease):
            lease_id: str = ""
    """)
    elsewhere = child.replace(
        "from leases_base import Lease, Quota", "from leases_base import Lease"
    )
    written, notes = dataclass_inits.written_out({"leases_base": base, "leases_child": child})
    assert notes == []
    assert (
        "def __init__(self, quota: Quota | None = None, finished: bool = False, "
        in (written["leases_child"])
    )
    for base_module in load("leases_base", written["leases_base"]):
        for child_module in load("leases_child", written["leases_child"]):
            made = child_module.Shared(base_module.Quota(3), True, "id")
            assert (made.quota.limit, made.finished, made.lease_id) == (3, True, "id")
    # Quota is not a name the child's module has: its annotation would not resolve there.
    _, notes = dataclass_inits.written_out({"leases_base": base, "leases_child": elsewhere})
    assert sorted(note.split(":")[0] for note in notes) == [
        "leases_base.Lease",
        "leases_child.Shared",
    ]
