"""Every user mistake ends in one clear line on stderr, a documented exit code, no traceback, and
no existing file changed. Each case runs through click's CliRunner and through a real subprocess."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHIPPED, wait_until
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

from poetgen.cli import cli
from poetgen.corpus import shipped_corpus_path
from poetgen.errors import BadCorpus, BadInput
from poetgen.request import PoemRequest
from poetgen.importers import import_poems
from poetgen.sampling import SampleOptions

POEM = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"


def digest_tree(paths) -> dict:
    digests = {}
    for root in paths:
        root = Path(root)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def assert_one_line_failure(args, message, code=2, watch=()):
    before = digest_tree(watch)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0] and lines[0].startswith("poetgen: error:")
    assert "Traceback" not in result.output
    process = subprocess.run([sys.executable, "-m", "poetgen", *args], capture_output=True, text=True,
                             stdin=subprocess.DEVNULL)
    assert process.returncode == code, process.stderr
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], process.stderr
    assert digest_tree(watch) == before


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    (root / "empty_dir").mkdir()
    (root / "no_poems_dir").mkdir()
    (root / "no_poems_dir" / "notes.txt").write_text("hello world\n12345\n", encoding="utf-8")
    (root / "empty.txt").write_bytes(b"")
    (root / "binary.txt").write_bytes(bytes(range(256)) * 64)
    (root / "gbk.txt").write_bytes((POEM + "\n").encode("gbk"))
    (root / "punct.txt").write_text("，。！？\n。。。\n", encoding="utf-8")
    (root / "existing.jsonl").write_text('{"text": "old"}\n', encoding="utf-8")
    (root / "a_file").write_text("not a directory", encoding="utf-8")
    (root / "good.txt").write_text(POEM + "\n", encoding="utf-8")
    (root / "u16.txt").write_bytes((POEM + "\n").encode("utf-16-le"))
    return root


CORPUS_CASES = [
    (["missing.txt"], "no such file or directory"),
    (["empty_dir"], "holds no .txt"),
    (["no_poems_dir"], "no usable poem"),
    (["empty.txt"], "no usable poem"),
    (["binary.txt"], "binary data"),
    (["gbk.txt"], "--encoding gbk"),
    (["punct.txt"], "no usable poem"),
    (["u16.txt", "--encoding", "utf-16"], "pass the right --encoding"),   # no byte-order mark
    (["good.txt", "--encoding", "base64"], "not a text encoding"),
]


@pytest.mark.parametrize("paths, message", CORPUS_CASES)
def test_corpus_import_failures(inputs, paths, message):
    out = inputs / "out.jsonl"
    args = [arg if arg.startswith("--") or arg in ("utf-16", "base64") else str(inputs / arg) for arg in paths]
    assert_one_line_failure(["corpus", "import", *args, "--out", str(out)],
                            message, watch=[inputs])
    assert not out.exists()


def test_corpus_stats_failure(inputs):
    assert_one_line_failure(["corpus", "stats", str(inputs / "gbk.txt")], "--encoding gbk", watch=[inputs])
    assert_one_line_failure(["corpus", "stats", str(inputs / "good.txt"), "--encoding", "hex"], "not a text encoding",
                            watch=[inputs])


def damaged_gzip(tmp_path, name: str, how: str) -> Path:
    """A .gz of shipped poems longer than the sniffed head: cut short, its middle overwritten (a CRC
    mismatch at the end) or its first deflate block made invalid (zlib.error at the start)."""
    with gzip.open(SHIPPED, "rb") as handle:
        text = handle.read(400_000)
    data = gzip.compress(text[:text.rindex(b"\n") + 1])
    if name.endswith(".json.gz"):   # a chinese-poetry JSON list
        records = [json.loads(line) for line in text[:text.rindex(b"\n")].decode().splitlines()]
        data = gzip.compress(json.dumps(records, ensure_ascii=False).encode())
    middle = len(data) // 2
    data = {"truncated": data[:middle], "crc": data[:middle] + bytes(4096) + data[middle + 4096:],
            "deflate": data[:10] + b"\xff" * 64 + data[74:]}[how]
    (tmp_path / name).write_bytes(data)
    return tmp_path / name


@pytest.mark.parametrize("name", ["poems.jsonl.gz", "poems.txt.gz", "poems.json.gz"])
@pytest.mark.parametrize("how", ["truncated", "crc", "deflate"])
def test_a_truncated_or_corrupt_gzip_is_one_line_naming_the_file(tmp_path, name, how):
    path = damaged_gzip(tmp_path, name, how)
    out = tmp_path / "out.jsonl"
    assert_one_line_failure(["corpus", "import", str(path), "--out", str(out)], f"{path}: cannot read it",
                            watch=[tmp_path])
    assert not out.exists()
    if name == "poems.jsonl.gz" and how == "truncated":
        assert_one_line_failure(["corpus", "stats", str(path)], f"{path}: cannot read it", watch=[tmp_path])
        assert_one_line_failure(["train", "--corpus", str(path), "--out", str(tmp_path / "m"), "--epochs", "1"],
                                f"{path}: cannot read it", watch=[tmp_path])


def test_a_tune_corpus_of_the_wrong_shape_is_one_line(tmp_path):
    corpus = tmp_path / "ci.jsonl"
    corpus.write_text('{"tune": 5}\n', encoding="utf-8")
    assert_one_line_failure(["tunes", "--corpus", str(corpus)], "a tune that is not text", watch=[tmp_path])


@pytest.mark.parametrize("out, message", [
    ("existing.jsonl", "pass --force"),
    ("a_file/out.jsonl", "is not a directory"),
    ("missing_dir/out.jsonl", "does not exist"),
])
def test_unwritable_or_existing_outputs(inputs, out, message):
    assert_one_line_failure(["corpus", "import", str(inputs / "good.txt"), "--out", str(inputs / out)],
                            message, watch=[inputs])


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only directories")
def test_read_only_directory(inputs, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    assert_one_line_failure(["corpus", "import", str(inputs / "good.txt"), "--out", str(locked / "o.jsonl")],
                            "not writable")


def test_mixed_lines_are_counted_and_a_huge_line_is_dropped(tmp_path):
    path = tmp_path / "mixed.txt"
    path.write_text(f"{POEM}\nabc\n□□□□□\n{'山' * 3_000_000}\n{POEM.replace('白', '红')}\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["corpus", "import", str(path), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 0, result.output
    assert "kept 2 poems, dropped 3" in result.output and "too long" in result.output


def _peak_import_memory_mb(tmp_path, megabytes: int) -> int:
    path = tmp_path / f"big{megabytes}.txt"
    lines = [f"{POEM[:-1]}{chr(0x4e00 + i % 5000)}。\n" for i in range(20_000)]
    block = "".join(lines).encode("utf-8")
    with open(path, "wb") as handle:
        while handle.tell() < megabytes * 1024 * 1024:
            handle.write(block)
    code = ("import resource, sys; from poetgen.cli import cli; "
            "from click.testing import CliRunner; "
            f"r = CliRunner().invoke(cli, ['corpus', 'import', {str(path)!r}, '--out', {str(path) + '.jsonl.gz'!r}]); "
            "print(r.exit_code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    exit_code, peak_mb = map(int, out.stdout.split())
    assert exit_code == 0
    path.unlink()
    return peak_mb


def test_hundred_megabyte_file_streams_in_bounded_memory(tmp_path):
    small = _peak_import_memory_mb(tmp_path, 5)
    large = _peak_import_memory_mb(tmp_path, 100)
    assert large < small + 50, f"peak memory {large} MB for 100 MB of input, {small} MB for 5 MB"


def test_interrupted_write_keeps_the_old_file(tmp_path):
    from poetgen.corpus import Poem, write_corpus

    out = tmp_path / "corpus.jsonl"
    out.write_text("old content\n", encoding="utf-8")

    def poems():
        yield Poem(POEM)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_corpus(poems(), out)
    assert out.read_text(encoding="utf-8") == "old content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["corpus.jsonl"]


def test_kill_9_mid_import_keeps_the_old_file(tmp_path):
    source = tmp_path / "big.txt"
    source.write_text("".join(f"{POEM[:-1]}{chr(0x4e00 + i % 20000)}{chr(0x4e00 + i // 20000)}。\n"
                              for i in range(400_000)), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    out.write_text("old content\n", encoding="utf-8")
    process = subprocess.Popen([sys.executable, "-m", "poetgen", "corpus", "import", str(source), "--out",
                                str(out), "--force"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = []   # whether the temporary file was there when the wait ended

    def writing_or_done() -> bool:
        seen.append(any(p.name.startswith(".out.jsonl.") and p.name.endswith(".tmp") for p in tmp_path.iterdir()))
        return seen[-1] or process.poll() is not None

    wait_until(writing_or_done, "the import writing its temporary file or ending")
    writing = seen[-1]
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert writing, "the import never started writing its temporary file"   # else the kill proves nothing
    assert out.read_text(encoding="utf-8") == "old content\n"


# ---- prompts and options -------------------------------------------------------------------------

PROMPT_CASES = [
    (["床前😀"], "not a Chinese character"),
    (["abc"], "Latin letter"),
    (["龘"], "does not know the character"),
    (["白" * 30], "longer than a wujue"),
    (["--acrostic", "春夏秋"], "3 characters but a wujue poem has 4 lines"),
    (["--temperature", "-0.5"], "temperature"),
    (["--temperature", "nan"], "temperature"),
    (["--top-k", "-3"], "top-k"),
    (["--top-p", "0"], "top-p"),
    (["--top-p", "1.01"], "top-p"),
    (["-n", "0"], "'-n': 0 is not in the range 1<=x<=1000"),
    (["-n", "100000000"], "'-n': 100000000 is not in the range"),
    (["--form", "sonnet"], "unknown form"),
    (["--temperature", "hot"], "not a valid float"),
    (["--seed", "-1"], "'--seed': -1 is not in the range"),
]


@pytest.mark.parametrize("args, message", PROMPT_CASES)
def test_generate_input_failures(tiny_bundle, args, message):
    assert_one_line_failure(["generate", "--model", str(tiny_bundle), *args], message, watch=[tiny_bundle])


def test_empty_and_traditional_prompts_are_fine(tiny_bundle):
    from poetgen.checks import check_poem
    from poetgen.prosody import table

    for prompt in ["", "白日依山盡"]:
        result = CliRunner().invoke(cli, ["generate", prompt, "--model", str(tiny_bundle), "--seed", "1"])
        assert result.exit_code == 0, result.output
        poem = "".join(result.stdout.split())
        assert check_poem(poem, "wujue", table()).layout_ok, result.stdout   # a whole poem either way
        if prompt:
            assert poem.startswith("白日依山尽")


# ---- models --------------------------------------------------------------------------------------

def broken_bundle(tiny_bundle, tmp_path, damage) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy, ignore=shutil.ignore_patterns("resume", "tensorboard"))
    damage(copy)
    return copy


def truncate_model(bundle: Path):
    data = (bundle / "model.keras").read_bytes()
    (bundle / "model.keras").write_bytes(data[:len(data) // 2])


def foreign_tokenizer(bundle: Path):
    from poetgen.tokenizer import Tokenizer

    Tokenizer.build(["春眠不觉晓，处处闻啼鸟。"]).save(bundle / "tokenizer.json")


def newer_format(bundle: Path):
    config = json.loads((bundle / "config.json").read_text(encoding="utf-8"))
    config["format_version"] = 99
    (bundle / "config.json").write_text(json.dumps(config), encoding="utf-8")


def lambda_model(bundle: Path):
    import keras

    from poetgen.model import ModelConfig

    config = ModelConfig(**json.loads((bundle / "config.json").read_text(encoding="utf-8"))["model"])
    ids = keras.Input(shape=(None,), dtype="int32")
    x = keras.layers.Embedding(config.vocab_size, 4)(ids)
    x = keras.layers.Lambda(lambda t: t * 2.0)(x)
    keras.Model(ids, keras.layers.Dense(config.vocab_size, name="logits")(x)).save(bundle / "model.keras")


def corrupt_config(bundle: Path):
    (bundle / "config.json").write_text("{not json", encoding="utf-8")


def corrupt_tokenizer(bundle: Path):
    (bundle / "tokenizer.json").write_text('{"chars": 5}', encoding="utf-8")


def string_format_tokenizer(bundle: Path):
    record = json.loads((bundle / "tokenizer.json").read_text(encoding="utf-8"))
    (bundle / "tokenizer.json").write_text(json.dumps({**record, "format_version": "3"}), encoding="utf-8")


@pytest.mark.parametrize("damage, message", [
    (truncate_model, "truncated or corrupt"),
    (foreign_tokenizer, "belongs to another model"),
    (newer_format, "newer than this poetgen"),
    (lambda_model, "safe mode"),
    (corrupt_config, "corrupt config"),
    (lambda bundle: (bundle / "config.json").write_text("[]", encoding="utf-8"), "not a JSON object"),
    (corrupt_tokenizer, "tokenizer file is corrupt"),
    (string_format_tokenizer, "format_version is not a number"),
    (lambda bundle: (bundle / "model.keras").unlink(), "model file is missing"),
])
def test_broken_models(tiny_bundle, tmp_path, damage, message):
    bundle = broken_bundle(tiny_bundle, tmp_path, damage)
    assert_one_line_failure(["generate", "--model", str(bundle)], message, watch=[bundle])


def test_a_config_that_does_not_describe_the_weights_is_one_line_on_every_loading_path(tiny_bundle, tmp_path):
    def wider(bundle: Path):
        config = json.loads((bundle / "config.json").read_text(encoding="utf-8"))
        config["model"]["units"] = 32
        (bundle / "config.json").write_text(json.dumps(config), encoding="utf-8")

    bundle = broken_bundle(tiny_bundle, tmp_path, wider)
    for args in (["generate"], ["evaluate", "--samples", "1"],
                 ["export", "--format", "keras", "--out", str(tmp_path / "out")]):
        assert_one_line_failure([*args, "--model", str(bundle)], "but config.json describes", watch=[bundle])
    assert not (tmp_path / "out").exists()


def test_missing_bundle(tmp_path):
    assert_one_line_failure(["generate", "--model", str(tmp_path / "nowhere")], "model bundle not found")


# ---- ci tunes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["tunes", "zzqqxx"], "no tune matches 'zzqqxx'"),
    (["generate", "--tune", "浣溪莎"], "closest: 浣溪沙"),
    (["generate", "--tune", "浣溪沙", "--variant", "99"], "the variant must be 1 to 5"),
    (["generate", "--variant", "2"], "a variant needs a tune"),
    (["generate", "--style", "yuan"], "'--style': 'yuan' is not one of"),
])
def test_tune_and_style_failures(tiny_bundle, args, message):
    model = ["--model", str(tiny_bundle)] if args[0] == "generate" else []
    assert_one_line_failure([*args, *model], message)


# ---- fuzzing -------------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400) | st.text(max_size=200).map(lambda s: s.encode("utf-8")))
def test_importer_fuzz_never_crashes(tmp_path, data):
    path = tmp_path / "fuzz.txt"
    path.write_bytes(data)
    try:
        import_poems([path])
    except BadCorpus as error:
        assert "\n" not in str(error)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=30), st.text(max_size=6))
def test_prompt_fuzz_never_crashes(generator, prompt, acrostic):
    try:
        result = generator.generate(PoemRequest(prompt=prompt, acrostic=acrostic, sample=SampleOptions(seed=0)))
    except BadInput as error:
        assert "\n" not in str(error)
    else:
        assert result["poems"][0]["layout_ok"]


# ---- bugs ----------------------------------------------------------------------------------------

def test_internal_error_is_one_line_unless_debug(monkeypatch):
    import poetgen.cli_corpus

    def broken(*args, **kwargs):
        raise RuntimeError("simulated bug\nsecond line")

    monkeypatch.setattr(poetgen.cli_corpus, "corpus_stats", broken)
    tang = str(shipped_corpus_path())   # one shipped file: the whole corpus would take seconds to read
    result = CliRunner().invoke(cli, ["corpus", "stats", tang])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "internal error: RuntimeError: simulated bug second line" in lines[0]
    assert "run with --debug for the traceback" in lines[0] and "Traceback" not in result.output
    for args, env in ((["--debug", "corpus", "stats", tang], {}), (["corpus", "stats", tang], {"POETGEN_DEBUG": "1"})):
        monkeypatch.setenv("POETGEN_DEBUG", env.get("POETGEN_DEBUG", "0"))
        debug = CliRunner().invoke(cli, args)
        assert debug.exit_code == 1 and "Traceback" in debug.stderr


def test_a_logged_warning_reads_as_every_other_warning(tiny_bundle, tmp_path):
    """Warnings logged through `logging` (a reverse/ with no model yet, a stale lock taken over, a run's
    stop) printed `warning: …`, where those the commands echo print `poetgen: warning: …`."""
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    (bundle / "reverse").mkdir()   # a `train --reverse --out bundle/reverse` that has saved nothing yet
    result = CliRunner().invoke(cli, ["generate", "--model", str(bundle), "--seed", "1"])
    assert result.exit_code == 0 and result.stdout, result.output
    assert result.stderr.splitlines() == [f"poetgen: warning: {bundle / 'reverse'} holds no finished model yet (is "
                                          f"it being trained?); the forward model is used alone"], result.stderr


def test_a_reader_that_stops_early_is_not_an_error():
    """`poetgen tunes | head -1`: the pipe closes under poetgen's feet; that is exit 0, silently (click
    itself would exit 1, the code for a bug)."""
    import fcntl

    process = subprocess.Popen([sys.executable, "-m", "poetgen", "tunes"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    fcntl.fcntl(process.stdout.fileno(), 1031, 4096)   # F_SETPIPE_SZ: a small pipe, so the writer meets EPIPE
    first = process.stdout.readline()
    process.stdout.close()
    stderr = process.stderr.read().decode("utf-8")
    assert process.wait(60) == 0, stderr
    assert first.strip() and stderr == ""


def test_a_bare_group_prints_its_help_not_an_error_line():
    for args in ([], ["corpus"]):
        result = subprocess.run([sys.executable, "-m", "poetgen", *args], capture_output=True, text=True)
        assert result.returncode == 2
        assert result.stderr.startswith("Usage: poetgen") and len(result.stderr.splitlines()) > 5
        assert "poetgen: error" not in result.stderr


def test_serve_without_its_extra_is_a_usage_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)   # import uvicorn raises ImportError
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 2 and "pip install 'poetgen[serve]'" in result.output


def test_an_encoding_hint_fits_the_command_and_a_utf16_file_gets_one(tmp_path):
    """train said "pass --encoding gbk", an option it does not have; a UTF-16 file with its byte-order
    mark was "binary data" with no hint at all."""
    gbk, u16 = tmp_path / "gbk.txt", tmp_path / "u16.txt"
    gbk.write_bytes("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。\n".encode("gbk"))
    u16.write_bytes("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。\n".encode("utf-16"))   # with its mark
    assert_one_line_failure(["train", "--corpus", str(gbk), "--out", str(tmp_path / "run")],
                            "train and evaluate read UTF-8: convert the file first with `poetgen corpus import "
                            "FILE --encoding gbk --out corpus.jsonl`", watch=[tmp_path])
    # evaluate has no --encoding either (it was told to pass one)
    assert_one_line_failure(["evaluate", "--corpus", str(gbk)], "train and evaluate read UTF-8", watch=[tmp_path])
    assert_one_line_failure(["corpus", "import", str(u16), "--out", str(tmp_path / "o.jsonl")],
                            "UTF-16 text (it starts with a byte-order mark); pass --encoding utf-16", watch=[tmp_path])
    ok = CliRunner().invoke(cli, ["corpus", "import", str(u16), "--encoding", "utf-16", "--out", str(tmp_path / "o.jsonl")])
    assert ok.exit_code == 0 and "kept 1 poem," in ok.output


def test_a_missing_tensorflow_is_one_line_naming_the_fix(tmp_path):
    """An install with --no-deps runs generation without TensorFlow; train, export and evaluate then
    failed as internal errors (ModuleNotFoundError) in the CLI and raw in the library."""
    import subprocess
    import sys

    script = tmp_path / "without_tf.py"
    script.write_text(
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('tensorflow', 'keras'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import poetgen\n"
        "try:\n"
        f"    poetgen.export(out={str(tmp_path / 'e')!r})\n"
        "except poetgen.BadInput as error:\n"
        "    print('library:', error)\n"
        "from poetgen.cli import cli\n"
        f"cli.main(['export', '--out', {str(tmp_path / 'e2')!r}])\n", encoding="utf-8")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stdout.startswith("library: this needs TensorFlow and Keras") and "pip install tensorflow" in result.stdout
    assert result.stderr.strip().splitlines() == [
        "poetgen: error: this needs TensorFlow and Keras, which generation does not (tensorflow is missing): "
        "pip install tensorflow"]
    assert not (tmp_path / "e").exists() and not (tmp_path / "e2").exists()
