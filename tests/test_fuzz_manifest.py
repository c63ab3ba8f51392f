"""Property-based fuzzing of every manifest reader and of ``genbatch validate``.

The property: a manifest gives parsed rows or problems located as FILE:LINE(:COLUMN) with
exit code 2, never a traceback, and never rows silently merged. Examples are derandomized
and bounded (the "ci" profile) so the suite is deterministic and fast;
benchmarks/fuzz_manifest.py runs the same properties with many more examples.
Parquet is read in a subprocess, since a native abort cannot be caught in-process.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import genbatch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genbatch.errors import GenbatchError, ManifestError
from genbatch.manifest.read import read_manifest

settings.register_profile(
    "ci",
    max_examples=40,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("GENBATCH_FUZZ_EXAMPLES", "2000")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("GENBATCH_FUZZ_PROFILE", "ci"))

TEXT_FORMATS = ("csv", "tsv", "jsonl", "txt")
# characters that matter to the readers, plus ordinary and astral unicode
ALPHABET = st.sampled_from(list(",\"\t\n\r \x00\\{}[]:;'") + ["a", "b", "7", "é", "東", "😀", "\u2028", "\x1b"])
NASTY_TEXT = st.text(alphabet=ALPHABET, max_size=200) | st.text(max_size=100)


def read(tmp: Path, data: bytes, fmt: str):
    """read_manifest on ``data``; returns the Manifest, or the problems it raised. Any
    other exception fails the test (that is the traceback the property forbids)."""
    path = tmp / f"m.{fmt}"
    path.write_bytes(data)
    try:
        manifest = read_manifest(path)
    except ManifestError as err:
        problems = err.problems
        manifest = None
    except GenbatchError as err:  # a whole-file problem with a one-line message
        assert str(err) and "\n" not in str(err).strip()
        return None, []
    else:
        problems = manifest.problems
    for problem in problems:
        assert problem.file == str(path)
        if fmt != "parquet" and problem.file != "--set":
            assert problem.line is not None, str(problem)
        assert "\x1b" not in str(problem) and "\x00" not in str(problem)
    return manifest, problems


@given(data=st.binary(max_size=3000), fmt=st.sampled_from(TEXT_FORMATS))
def test_random_bytes_give_rows_or_located_problems(tmp_path_factory, data, fmt):
    read(tmp_path_factory.mktemp("b"), data, fmt)


@given(
    text=NASTY_TEXT,
    fmt=st.sampled_from(TEXT_FORMATS),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "latin-1"]),
)
def test_text_in_any_encoding(tmp_path_factory, text, fmt, encoding):
    header = {"csv": "prompt,seed\n", "tsv": "prompt\tseed\n", "jsonl": "", "txt": ""}[fmt]
    data = (header + text).encode(encoding, "replace")
    manifest, problems = read(tmp_path_factory.mktemp("t"), data, fmt)
    if encoding == "utf-16" or (encoding == "utf-16-le" and b"\x00" in data):  # a BOM, or ASCII's zero bytes
        assert manifest is None or problems, "UTF-16 must not read as UTF-8 text"


# --- CSV from known rows: the parsed rows are those rows, or a problem says why not ---------

PROMPT = st.text(alphabet=st.sampled_from(list('ab ,"\n\r\t') + ["é", "東", "😀"]), min_size=1, max_size=40).filter(
    lambda s: s.strip()
)
ROWS = st.lists(st.tuples(PROMPT, st.integers(0, 2**64 - 1)), min_size=1, max_size=12)


def write_csv(rows, quoting: int, terminator: str) -> str:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, quoting=quoting, lineterminator=terminator)
    writer.writerow(["prompt", "seed"])
    writer.writerows(rows)
    return buffer.getvalue()


def looks_like_rows(prompt: str) -> bool:
    """A prompt with two lines that each read as a ``text,number`` row: the one legitimate
    input the swallowed-row rule rejects (see csv_reader._swallowed_rows)."""
    return any(
        line.replace('"', "").count(",") == 1 for line in prompt.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    )


@given(
    rows=ROWS,
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]),
    terminator=st.sampled_from(["\n", "\r\n"]),
)
def test_csv_round_trip(tmp_path_factory, rows, quoting, terminator):
    if quoting == csv.QUOTE_MINIMAL:
        terminator = "\r\n"  # with "\n" the writer leaves a lone "\r" unquoted: a line break to every reader
    text = write_csv(rows, quoting, terminator)
    manifest, problems = read(tmp_path_factory.mktemp("c"), text.encode(), "csv")
    if problems:
        assert all("swallowed rows" in p.message for p in problems), [str(p) for p in problems]
        assert any(looks_like_rows(prompt) for prompt, _ in rows)
        return
    assert [(r.prompt, r.seed) for r in manifest.rows] == [(p.strip(), s) for p, s in rows]


SIMPLE_ROWS = st.lists(
    st.tuples(st.text(alphabet="abc xyz", min_size=1, max_size=8).filter(str.strip), st.integers(0, 999)),
    min_size=2,
    max_size=10,
)


@given(
    rows=SIMPLE_ROWS,
    positions=st.lists(st.integers(0, 10_000), min_size=1, max_size=2),
    terminator=st.sampled_from(["\n", "\r\n"]),
)
def test_stray_quotes_never_merge_rows_silently(tmp_path_factory, rows, positions, terminator):
    """One or two stray quotes anywhere in a quote-free CSV: every row is read, or there is
    a problem. Never fewer rows and no word about it."""
    text = write_csv(rows, csv.QUOTE_MINIMAL, terminator)
    body_start = text.index(terminator) + len(terminator)
    for position in sorted(positions, reverse=True):
        at = body_start + position % (len(text) - body_start + 1)
        text = text[:at] + '"' + text[at:]
    manifest, problems = read(tmp_path_factory.mktemp("q"), text.encode(), "csv")
    if not problems:
        assert len(manifest.rows) == len(rows), text


@given(text=st.text(alphabet=st.sampled_from(list(',"\n\r ab7') + ["é"]), max_size=120))
def test_the_fast_and_the_exact_csv_reader_agree(text):
    """Most files go through the standard library's reader; where it accepts a file, the
    exact reader (the one that locates problems) must read the same cells."""
    from genbatch.manifest.csv_reader import split_csv_exact as _split_csv_exact
    from genbatch.manifest.csv_reader import split_csv_simple as _split_csv_simple

    fast = _split_csv_simple(text, ",")
    if fast is not None:
        problems: list = []
        exact = _split_csv_exact(text, "m.csv", ",", problems)
        strip = lambda records: [[c for c in r.cells] for r in records if any(c for c in r.cells)]  # noqa: E731
        assert not problems and strip(fast) == strip(exact)
        assert [r.line for r in fast if any(r.cells)] == [r.line for r in exact if any(r.cells)]


# --- JSONL: huge, nested and odd values ---------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


@given(
    objects=st.lists(
        st.dictionaries(
            st.sampled_from(["prompt", "seed", "n", "id", "x", "Prompt", "width"]), JSON_VALUES, max_size=5
        ),
        max_size=5,
    ),
    digits=st.integers(1, 6000),
    depth=st.integers(1, 5000),
    surrogate=st.sampled_from(["\\ud800", "\\udfff", "\\ud83d\\ude00"]),
)
def test_jsonl_values(tmp_path_factory, objects, digits, depth, surrogate):
    lines = [json.dumps(o) for o in objects]
    lines.append('{"prompt": "big", "seed": %s}' % ("9" * digits))
    lines.append('{{"prompt": "deep", "x": {}{}}}'.format("[" * depth, "]" * depth))
    lines.append(f'{{"prompt": "s{surrogate}"}}')
    manifest, problems = read(tmp_path_factory.mktemp("j"), ("\n".join(lines) + "\n").encode(), "jsonl")
    for row in manifest.rows if manifest else []:
        row.prompt.encode("utf-8")  # no lone surrogate gets through
        json.dumps(row.fields)  # and the metadata can be written to the ledger


@given(
    header=st.lists(st.sampled_from(["prompt", "seed", "Prompt", "x", "", "seed "]), min_size=1, max_size=6),
    body=st.lists(st.lists(st.sampled_from(["a", "1", "", "b c"]), max_size=6), max_size=4),
    delimiter=st.sampled_from([",", "\t"]),
)
def test_duplicate_empty_and_header_only(tmp_path_factory, header, body, delimiter):
    text = "\n".join(delimiter.join(cells) for cells in [header, *body])
    fmt = "csv" if delimiter == "," else "tsv"
    manifest, problems = read(tmp_path_factory.mktemp("h"), text.encode(), fmt)
    names = [h.strip() for h in header]
    if len(set(names)) != len(names) and any(names):
        assert problems, "a repeated column name is a problem, not a silently dropped column"


@given(text=NASTY_TEXT, fmt=st.sampled_from(TEXT_FORMATS))
@settings(max_examples=max(15, settings.default.max_examples // 4))
def test_validate_command(tmp_path_factory, text, fmt):
    path = tmp_path_factory.mktemp("v") / f"m.{fmt}"
    path.write_text(("prompt,seed\n" if fmt == "csv" else "") + text, encoding="utf-8", errors="surrogatepass")
    result = genbatch("validate", path)
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output and "\x1b" not in result.output


def test_megabyte_fields(tmp_path):
    big = "x" * (1 << 20)
    for fmt, text in (
        ("csv", f'prompt,seed\n"{big}",1\n{big},2\n'),
        ("tsv", f"prompt\tseed\n{big}\t1\n"),
        ("jsonl", json.dumps({"prompt": big}) + "\n"),
        ("txt", big + "\n"),
    ):
        manifest, problems = read(tmp_path, text.encode(), fmt)
        assert not problems and all(row.prompt == big for row in manifest.rows), fmt


# --- Parquet with odd types, read in a subprocess -------------------------------------------

READ_ALL = """
import json, sys
from genbatch.errors import GenbatchError, ManifestError
from genbatch.manifest.read import read_manifest
for path in sys.argv[1:]:
    try:
        m = read_manifest(path)
        print(json.dumps({"rows": len(m.rows), "problems": [str(p) for p in m.problems]}))
    except (ManifestError, GenbatchError) as err:
        print(json.dumps({"rows": 0, "problems": [str(err)]}))
"""


def odd_parquet_tables():
    import datetime
    import decimal

    import pyarrow as pa

    prompts = pa.array(["a cat", None, "a dog"])
    odd = {
        "struct": pa.array([{"x": 1, "y": "s"}, None, {"x": None, "y": "t"}]),
        "list": pa.array([[1, 2], [], None]),
        "list_of_struct": pa.array([[{"a": [1.5]}], None, [{"a": None}]]),
        "map": pa.array([[("k", 1)], None, []], type=pa.map_(pa.string(), pa.int64())),
        "dictionary": pa.array(["u", "v", "u"]).dictionary_encode(),
        "decimal": pa.array([decimal.Decimal("1.50"), None, decimal.Decimal("-2")]),
        "timestamp": pa.array([datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc), None, None]),
        "date": pa.array([datetime.date(2024, 1, 1), None, datetime.date(1970, 1, 1)]),
        "binary": pa.array([b"\xff\x00", None, b"ok"]),
        "null": pa.array([None, None, None]),
        "large_string": pa.array(["x", "\x1b[31m", None], type=pa.large_string()),
        "float_nan": pa.array([float("nan"), 1.0, None]),
    }
    yield "all", pa.table({"prompt": prompts, **odd})
    yield "struct_prompt", pa.table({"prompt": odd["struct"]})
    yield "list_seed", pa.table({"prompt": prompts, "seed": odd["list"]})
    yield "binary_prompt", pa.table({"prompt": odd["binary"]})
    yield "no_rows", pa.table({"prompt": pa.array([], pa.string())})
    yield "duplicates", pa.Table.from_arrays([prompts, prompts], names=["prompt", "prompt"])


def test_parquet_with_odd_types_in_a_subprocess(tmp_path):
    import pyarrow.parquet as pq

    paths = []
    for name, table in odd_parquet_tables():
        path = tmp_path / f"{name}.parquet"
        pq.write_table(table, path)
        paths.append(path)
    (tmp_path / "garbage.parquet").write_bytes(b"PAR1" + os.urandom(200) + b"PAR1")
    paths.append(tmp_path / "garbage.parquet")
    # several readers at once: the reported abort came under load
    runs = [
        subprocess.run(
            [sys.executable, "-c", READ_ALL, *map(str, paths)],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
        results = dict(zip((p.stem for p in paths), map(json.loads, run.stdout.splitlines())))
        assert results["all"] == {"rows": 2, "problems": [f"{tmp_path / 'all.parquet'}:2:prompt: the prompt is empty"]}
        assert results["struct_prompt"]["rows"] == 0 and results["struct_prompt"]["problems"]
        assert results["duplicates"]["problems"] and results["garbage"]["problems"]
        assert "\x1b" not in run.stdout
    cli = subprocess.run(
        [sys.executable, "-m", "genbatch", "validate", str(tmp_path / "all.parquet")],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert cli.returncode == 2 and "Traceback" not in cli.stderr and ":2:prompt: the prompt is empty" in cli.stdout


@pytest.mark.parametrize("fmt", TEXT_FORMATS)
def test_empty_file(tmp_path, fmt):
    manifest, problems = read(tmp_path, b"", fmt)
    assert manifest is None or problems or not manifest.rows


def _parquet_columns():
    """(arrow type, hypothesis strategy for one value) pairs, odd ones included."""
    import datetime
    import decimal

    import pyarrow as pa

    text = st.text(max_size=20)
    return [
        (pa.string(), text),
        (pa.large_string(), text),
        (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
        (pa.uint64(), st.integers(0, 2**64 - 1)),
        (pa.float64(), st.floats()),
        (pa.bool_(), st.booleans()),
        (pa.binary(), st.binary(max_size=20)),
        (
            pa.struct([("a", pa.int64()), ("b", pa.string())]),
            st.fixed_dictionaries({"a": st.integers(0, 9), "b": text}),
        ),
        (pa.list_(pa.int64()), st.lists(st.integers(-9, 9), max_size=4)),
        (
            pa.list_(pa.struct([("x", pa.list_(pa.float64()))])),
            st.lists(st.fixed_dictionaries({"x": st.lists(st.floats(), max_size=3)}), max_size=3),
        ),
        (pa.map_(pa.string(), pa.int64()), st.lists(st.tuples(text, st.integers(0, 9)), max_size=3)),
        (pa.decimal128(10, 2), st.decimals(min_value=-999, max_value=999, places=2).map(decimal.Decimal)),
        (pa.timestamp("us", tz="UTC"), st.datetimes(timezones=st.just(datetime.timezone.utc))),
        (pa.date32(), st.dates()),
        (pa.null(), st.none()),
    ]


def test_random_parquet_tables_in_a_subprocess(tmp_path):
    """Random tables of every column type above (a prompt column of any of them), written
    here, all read in one subprocess: rows or problems, never an abort or a traceback."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pool = _parquet_columns()
    paths: list[Path] = []

    @given(data=st.data())
    @settings(max_examples=max(10, settings.default.max_examples // 2))
    def write_one(data):
        names = data.draw(
            st.lists(st.sampled_from(["prompt", "seed", "n", "x", "y"]), min_size=1, max_size=4, unique=True)
        )
        rows = data.draw(st.integers(0, 5))
        columns = {}
        for name in names:
            kind, values = pool[data.draw(st.integers(0, len(pool) - 1))]
            columns[name] = pa.array(data.draw(st.lists(st.none() | values, min_size=rows, max_size=rows)), type=kind)
        path = tmp_path / f"t{len(paths)}.parquet"
        pq.write_table(pa.table(columns), path)
        paths.append(path)

    write_one()
    run = subprocess.run(
        [sys.executable, "-c", READ_ALL, *map(str, paths)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(results) == len(paths)
    for path, result in zip(paths, results):
        for problem in result["problems"]:
            assert problem.startswith(str(path)) and "Traceback" not in problem
