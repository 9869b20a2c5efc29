"""SSE framing: events end at a blank line whatever the line endings and the network chunking."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orcarouter.wire.sse import (
    SSEError,
    SSEEvent,
    SSESplitter,
    encode_event,
    json_data_line,
    parse_event,
)

ENDINGS = ("\n", "\r\n", "\r")


def _feed_in(chunks: list[bytes], splitter: SSESplitter | None = None) -> list[SSEEvent]:
    splitter = splitter or SSESplitter()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(splitter.feed(chunk))
    return events


def _split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c for c in cuts if 0 < c < len(data)})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def _as_tuples(events: list[SSEEvent]) -> list[tuple[str, str, bytes]]:
    return [(e.event, e.data, e.raw) for e in events]


# --- line endings and fields ---------------------------------------------------------------


@pytest.mark.parametrize("eol", ENDINGS, ids=["lf", "crlf", "cr"])
def test_events_end_at_a_blank_line_with_every_line_ending(eol: str) -> None:
    first = f'data: {{"n":1}}{eol}{eol}'
    second = f"event: ping{eol}data: two{eol}{eol}"
    stream = (first + second).encode()
    splitter = SSESplitter()
    events = splitter.feed(stream)
    assert _as_tuples(events) == [
        ("", '{"n":1}', first.encode()),
        ("ping", "two", second.encode()),
    ]
    assert splitter.close() is None


@pytest.mark.parametrize("eol", ENDINGS, ids=["lf", "crlf", "cr"])
def test_a_single_line_ending_does_not_end_an_event(eol: str) -> None:
    splitter = SSESplitter()
    assert splitter.feed(f"data: a{eol}data: b{eol}".encode()) == []
    (event,) = splitter.feed(eol.encode())
    assert event.data == "a\nb"


def test_crlf_terminator_split_between_cr_and_lf_waits_for_the_lf() -> None:
    splitter = SSESplitter()
    assert splitter.feed(b"data: x\r\n\r") == []
    (event,) = splitter.feed(b"\ndata: next")
    assert event.raw == b"data: x\r\n\r\n"
    assert event.data == "x"
    tail = splitter.close()
    assert tail is not None and tail.data == "next"


def test_mixed_line_endings_lf_line_then_cr_blank_line_end_the_event() -> None:
    # Per the spec each of \n, \r\n, \r ends a line, so "a\n" then a blank line "\r" ends it.
    splitter = SSESplitter()
    events = splitter.feed(b"data: a\n\rdata: b\n\n")
    assert [e.data for e in events] == ["a", "b"]


def test_data_without_a_space_after_the_colon() -> None:
    assert parse_event(b'data:{"a":1}\n\n').data == '{"a":1}'


def test_only_one_leading_space_is_removed_from_a_value() -> None:
    assert parse_event(b"data:  indented\n\n").data == " indented"


def test_trailing_spaces_after_json_are_dropped() -> None:
    event = parse_event(b'data: {"a":1}   \t\r\n\r\n')
    assert json.loads(event.data) == {"a": 1}
    assert event.data == '{"a":1}'


def test_multi_line_data_is_joined_with_newlines() -> None:
    event = parse_event(b"data: first\ndata:second\ndata\ndata: last\n\n")
    assert event.data == "first\nsecond\n\nlast"


def test_event_name_is_read_and_other_fields_are_ignored() -> None:
    event = parse_event(b"id: 7\nretry: 100\nevent:  message_start \ndata: {}\n\n")
    assert event.event == "message_start"
    assert event.data == "{}"
    assert not event.is_comment


def test_comments_carry_no_data() -> None:
    splitter = SSESplitter()
    events = splitter.feed(b": keep-alive\n\ndata: x\n: inline comment\n\n")
    assert [(e.is_comment, e.data) for e in events] == [(True, ""), (False, "x")]
    assert events[0].raw == b": keep-alive\n\n"


def test_an_event_with_only_a_name_is_not_a_comment() -> None:
    event = parse_event(b"event: ping\n\n")
    assert event.event == "ping"
    assert not event.is_comment


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_json_with_unicode_line_separators_survives_intact(separator: str) -> None:
    # JSON may carry U+2028, U+2029 and U+0085 unescaped; SSE lines end only at CR and LF.
    payload = json.dumps({"text": f"a{separator}b"}, ensure_ascii=False)
    event = parse_event(f"data: {payload}\n\n".encode())
    assert event.data == payload
    assert json.loads(event.data) == {"text": f"a{separator}b"}


def test_invalid_utf8_does_not_raise() -> None:
    event = parse_event(b"data: \xff\xfe ok\n\n")
    assert event.data.endswith(" ok")


# --- chunking ------------------------------------------------------------------------------


def test_byte_by_byte_feeding_yields_the_same_events() -> None:
    stream = b'event: a\r\ndata: {"x":1}\r\n\r\n: ping\n\ndata: y\rdata: z\r\r'
    whole = _feed_in([stream])
    split = _feed_in([stream[i : i + 1] for i in range(len(stream))])
    assert _as_tuples(split) == _as_tuples(whole)
    assert [e.data for e in whole] == ['{"x":1}', "", "y\nz"]


def test_multibyte_utf8_split_across_chunks_decodes_cleanly() -> None:
    stream = "data: héllo — 世界\n\n".encode()
    cut = stream.index("世".encode()) + 1
    events = _feed_in([stream[:cut], stream[cut:]])
    assert events[0].data == "héllo — 世界"


def test_extra_blank_lines_between_events_do_not_lose_data() -> None:
    events = _feed_in([b"data: a\n\n\n\ndata: b\n\n"])
    assert [e.data for e in events if not e.is_comment] == ["a", "b"]
    assert b"".join(e.raw for e in events) == b"data: a\n\n\n\ndata: b\n\n"


# --- close ---------------------------------------------------------------------------------


def test_close_returns_the_unterminated_final_event() -> None:
    splitter = SSESplitter()
    assert [e.data for e in splitter.feed(b"data: one\n\nevent: last\ndata: two\n")] == ["one"]
    final = splitter.close()
    assert final is not None
    assert (final.event, final.data, final.raw) == ("last", "two", b"event: last\ndata: two\n")
    assert splitter.close() is None


def test_close_with_only_whitespace_left_returns_nothing() -> None:
    splitter = SSESplitter()
    splitter.feed(b"data: one\n\n\n")
    assert splitter.close() is None


def test_close_returns_a_final_line_without_any_line_ending() -> None:
    splitter = SSESplitter()
    splitter.feed(b"data: [DONE]")
    final = splitter.close()
    assert final is not None and final.data == "[DONE]"


def test_close_on_a_fresh_splitter_returns_nothing() -> None:
    assert SSESplitter().close() is None


# --- size guard ----------------------------------------------------------------------------


def test_an_unterminated_event_over_the_limit_is_refused() -> None:
    splitter = SSESplitter(max_event_bytes=64)
    splitter.feed(b"data: " + b"x" * 58)  # 64 bytes buffered: at the limit, still fine
    with pytest.raises(SSEError, match="64"):
        splitter.feed(b"x")


def test_the_guard_fires_when_the_oversized_event_arrives_in_small_chunks() -> None:
    splitter = SSESplitter(max_event_bytes=100)
    with pytest.raises(SSEError):
        for _ in range(50):
            splitter.feed(b"data: xxxx")


def test_events_within_the_limit_pass_when_fed_byte_by_byte() -> None:
    event = b"data: " + b"y" * 57 + b"\n\n"  # 65 bytes: at most 64 are ever buffered
    splitter = SSESplitter(max_event_bytes=64)
    out = _feed_in([event[i : i + 1] for i in range(len(event))] * 3, splitter)
    assert [e.raw for e in out] == [event] * 3


def test_one_large_read_of_many_small_events_is_not_refused() -> None:
    splitter = SSESplitter(max_event_bytes=32)
    many = b"data: 0123456789\n\n" * 100
    assert len(splitter.feed(many)) == 100


# --- encode --------------------------------------------------------------------------------


def test_encode_event_frames_data_and_name() -> None:
    assert encode_event(b'{"a":1}') == b'data: {"a":1}\n\n'
    framed = encode_event(b"{}", "message_stop")
    assert framed == b"event: message_stop\ndata: {}\n\n"


@given(
    payload=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=8,
    ),
    name=st.none() | st.from_regex(r"[a-z_]{1,20}", fullmatch=True),
)
def test_encode_then_parse_round_trips(payload: object, name: str | None) -> None:
    data = json.dumps(payload)
    framed = encode_event(data.encode(), name)
    (event,) = _feed_in([framed])
    assert event.raw == framed
    assert event.event == (name or "")
    assert json.loads(event.data) == payload


# --- properties ----------------------------------------------------------------------------

_LINE = st.one_of(
    st.builds(lambda v: f"data: {v}", st.from_regex(r"[A-Za-z0-9{}\":, ]{0,12}", fullmatch=True)),
    st.builds(lambda v: f"data:{v}", st.from_regex(r"[a-z0-9]{0,6}", fullmatch=True)),
    st.builds(lambda v: f"event: {v}", st.from_regex(r"[a-z_]{1,10}", fullmatch=True)),
    st.builds(lambda v: f": {v}", st.from_regex(r"[a-z -]{0,10}", fullmatch=True)),
    st.just("id: 1"),
)


@st.composite
def _streams(draw: st.DrawFn) -> tuple[bytes, bytes, list[tuple[str, str]]]:
    """A stream of complete events in one line-ending style, an unterminated tail, and the
    (name, data) each complete event must parse to."""
    eol = draw(st.sampled_from(ENDINGS))
    complete = ""
    expected: list[tuple[str, str]] = []
    for lines in draw(st.lists(st.lists(_LINE, min_size=1, max_size=4), max_size=5)):
        complete += "".join(line + eol for line in lines) + eol
        name = ""
        data: list[str] = []
        for line in lines:
            if line.startswith("event:"):
                name = line[len("event:") :].strip()
            elif line.startswith("data:"):
                value = line[len("data:") :]
                data.append((value[1:] if value.startswith(" ") else value).rstrip())
        expected.append((name, "\n".join(data)))
    tail_lines = draw(st.lists(_LINE, max_size=3))
    tail = eol.join(tail_lines)
    terminated: bool = draw(st.booleans())
    if tail_lines and terminated:
        tail += eol
    return complete.encode(), tail.encode(), expected


@given(stream=_streams(), cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_any_chunking_yields_the_events_of_the_whole_stream(
    stream: tuple[bytes, bytes, list[tuple[str, str]]], cuts: list[int]
) -> None:
    complete, tail, expected = stream
    data = complete + tail
    whole_splitter = SSESplitter()
    whole = whole_splitter.feed(data)
    chunked_splitter = SSESplitter()
    chunked = _feed_in(_split_at(data, cuts), chunked_splitter)

    assert _as_tuples(chunked) == _as_tuples(whole)
    assert [(e.event, e.data) for e in whole] == expected
    assert b"".join(e.raw for e in chunked) == complete

    final_whole, final_chunked = whole_splitter.close(), chunked_splitter.close()
    if tail.strip():
        assert final_chunked is not None and final_whole is not None
        assert final_chunked.raw == final_whole.raw == tail
    else:
        assert final_chunked is None and final_whole is None


@given(
    data=st.lists(
        st.sampled_from([b"\r", b"\n", b"\r\n", b"data:", b" ", b"x", b":", b"event: e", b"{}"]),
        max_size=40,
    ).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=120), max_size=10),
)
def test_chunking_never_changes_the_events_of_arbitrary_bytes(data: bytes, cuts: list[int]) -> None:
    # A CR CR at the end of a read ends the event at once (a CR-only stream must not stall);
    # if the next read starts with LF, that LF becomes an empty event, which SSE clients
    # ignore. So the events with content and every byte are chunking-invariant; the grouping
    # of empty events may differ.
    whole_splitter, chunked_splitter = SSESplitter(), SSESplitter()
    whole = whole_splitter.feed(data)
    chunked = _feed_in(_split_at(data, cuts), chunked_splitter)
    final = chunked_splitter.close()
    final_whole = whole_splitter.close()
    events = [*chunked, *([final] if final else [])]
    events_whole = [*whole, *([final_whole] if final_whole else [])]
    assert _meaningful(events) == _meaningful(events_whole)
    assert b"".join(e.raw for e in events) == b"".join(e.raw for e in events_whole)


def _meaningful(events: list[SSEEvent]) -> list[tuple[str, str]]:
    return [(e.event, e.data) for e in events if not e.is_comment]


# --- reading an event from its bytes -------------------------------------------------------


@given(
    lines=st.lists(
        st.lists(st.sampled_from([*'{}"a :\r\né', "data: ", "event: x"]), max_size=12).map("".join),
        min_size=1,
        max_size=3,
    ),
    ending=st.sampled_from(["\n\n", "\r\n\r\n", "\r\r", "\n\r\n", " \n\n"]),
    name=st.sampled_from(["", "content_block_delta"]),
)
def test_what_is_read_from_an_events_bytes_is_what_parsing_it_gives(
    lines: list[str], ending: str, name: str
) -> None:
    head = (f"event: {name}\n" if name else "") + "data: {"
    stream = (head + "\n".join(lines) + "}" + ending).encode()
    splitter = SSESplitter()
    for raw in [*splitter.split(stream), *([last.raw] if (last := splitter.close()) else [])]:
        event = parse_event(raw)
        data = json_data_line(raw, head.encode())
        if data is not None:
            assert (event.event, event.data) == (name, data)


def test_json_data_lines_are_read_with_either_vendors_line_ends() -> None:
    assert json_data_line(b'data: {"a":1}\n\n') == '{"a":1}'
    assert json_data_line(b'data: {"a":"\xc3\xa9"}\r\n\r\n') == '{"a":"\u00e9"}'
    assert json_data_line(b'data: {"a":1}\r{"b":2}\n\n') is None  # a CR ends the line
    assert json_data_line(b'data: {"a":1}\ndata: {"b":2}\n\n') is None
    assert json_data_line(b'event: x\ndata: {"a":1}\n\n') is None
    assert json_data_line(b"data: [DONE]\n\n") is None
    named = b'event: content_block_delta\ndata: {"a":1}\n\n'
    assert json_data_line(named, b"event: content_block_delta\ndata: {") == '{"a":1}'
    assert json_data_line(named) is None  # another event's fields
