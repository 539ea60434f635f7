"""The Python API, used as a user would: only the names `poetgen` exports (and the CLI for comparison)."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import poetgen
from poetgen.cli import cli
from poetgen.errors import BadInput

REPO = Path(__file__).resolve().parent.parent
LIGHT = "import sys, poetgen; print(sorted(m for m in ('tensorflow', 'keras', 'jieba') if m in sys.modules))"


@pytest.fixture(scope="module")
def poet(tiny_bundle):
    return poetgen.load(tiny_bundle)


def python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_import_poetgen_is_light(tmp_path):
    process = python(LIGHT, tmp_path)
    assert process.returncode == 0, process.stderr
    assert process.stdout.strip() == "[]"
    assert set(poetgen.__all__) <= set(dir(poetgen))
    for stage in ("train", "export", "evaluate"):   # the stage modules of the same names, once imported,
        importlib.import_module(f"poetgen.{stage}")  # do not hide the functions

    assert all(callable(f) and f.__doc__.startswith(word) for f, word in
               ((poetgen.train, "Train"), (poetgen.export, "Export"), (poetgen.evaluate, "Evaluate")))
    assert issubclass(poetgen.TrainConfig, object) and dataclasses.is_dataclass(poetgen.EvalOptions)


def test_every_exported_name_is_visible_to_a_type_checker():
    """mypy and pyright read `__all__` only as a literal list: `[..., *_LAZY]` hid PoemRequest, SampleOptions,
    TrainConfig, ExportOptions, EvalOptions and Scansion, and `from poetgen import SampleOptions` was an
    error under mypy --strict ("does not explicitly export"), though the package ships py.typed."""
    import ast

    tree = ast.parse(Path(poetgen.__file__).read_text(encoding="utf-8"))
    [listed] = [node.value for node in tree.body if isinstance(node, ast.Assign)
                and [getattr(target, "id", None) for target in node.targets] == ["__all__"]]
    assert ast.literal_eval(listed) == poetgen.__all__
    assert {"PoemRequest", "SampleOptions", "TrainConfig", "ExportOptions", "EvalOptions", "Scansion"} <= set(poetgen.__all__)


def readme_api_example() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_generates_with_the_shipped_model_without_tensorflow(tmp_path):
    """Nor the CLI's toolkit: click comes with the command line (cli_options.py), not with the settings."""
    code = readme_api_example() + "\nimport sys\nprint('CLICK', 'click' in sys.modules)\nprint('TF', 'tensorflow' in sys.modules)\n"
    process = python(code, tmp_path)
    assert process.returncode == 0, process.stderr
    assert re.search(r"^[\u4e00-\u9fff]{7}，$", process.stdout, re.M), process.stdout
    assert process.stdout.strip().endswith("CLICK False\nTF False"), process.stdout


@pytest.mark.parametrize("no_stderr", ["sys.stderr = None", "os.close(2)", "os.close(2); sys.stderr = None"])
def test_a_program_without_a_standard_error_loads_and_generates(tmp_path, no_stderr):
    """pythonw, a daemon, `2>&-`: no sys.stderr (None) or no fd 2. Muting it while LiteRT starts (the shipped
    model is int8) raised AttributeError or OSError (EBADF): load() failed, and `poetgen generate 2>&-`
    exited 1 without a word. fd 2 is closed again afterwards, as the program had it."""
    code = (f"import os, sys\n{no_stderr}\nimport poetgen\npoet = poetgen.load()\nassert poet.generator.int8\n"
            f"print(poet.generate(seed=1)[0].text)\ntry:\n    os.fstat(2)\nexcept OSError:\n    print('closed')\n")
    process = python(code, tmp_path)
    assert process.returncode == 0, process.stderr
    first, *rest = process.stdout.splitlines()
    assert re.fullmatch(r"[\u4e00-\u9fff]{5}，[\u4e00-\u9fff]{5}。[\u4e00-\u9fff]{5}，[\u4e00-\u9fff]{5}。", first)
    assert rest == (["closed"] if "os.close" in no_stderr else [])


def test_generate_returns_frozen_checked_poems(poet):
    poems = poet.generate("", form="wulv", n=3, seed=5, tone=True)
    assert isinstance(poems, poetgen.Poems) and len(poems) == 3 and poems.seed == 5 and poems.form == "wulv"
    for poem in poems:
        assert isinstance(poem, poetgen.Poem)
        assert "".join(poem.lines) == poem.text and len(poem.lines) == 8 and poem.form == "wulv"
        assert poem.layout_ok is True and poem.rhyme_ok is True and 0 <= poem.tone_score <= 1
        assert poem.tone_pattern and poem.logprob < 0 and str(poem) == "\n".join(poem.lines)
        with pytest.raises(dataclasses.FrozenInstanceError):
            poem.text = ""
    assert [p.text for p in poet.generate(form="wulv", n=3, seed=5, tone=True)] == [p.text for p in poems]


def test_every_cli_generate_option_is_accepted(poet):
    command = cli.commands["generate"]
    names = [p.name for p in command.params if p.name not in ("prompt", "model_dir", "fmt", "int8", "interactive")]
    assert {"acrostic", "theme", "rhyme", "tone", "no_repeat", "best_of", "max_chars", "temperature", "top_k",
            "top_p", "traditional", "seed", "n", "form"} <= set(names)
    for param in command.params:
        if param.name in names:
            value = param.default if param.default is not None or param.name != "seed" else 1
            assert len(poet.generate(**{param.name: value})) == 1, param.name


def test_generate_defaults_are_the_request_defaults():
    defaults = {f.name: f.default for f in dataclasses.fields(poetgen.PoemRequest) if f.name != "sample"}
    defaults.update({f.name: f.default for f in dataclasses.fields(poetgen.SampleOptions)}, traditional=False)
    signature = inspect.signature(poetgen.Poet.generate).parameters
    named = {name: p.default for name, p in signature.items() if name not in ("self", "more")}
    assert named and all(defaults[name] == value for name, value in named.items()), (named, defaults)


def test_options_reach_the_poems(poet):
    acrostic = poet.generate(acrostic="春夏秋冬", form="qijue", n=4, seed=2)
    for poem in acrostic:
        assert [line[0] for line in poem.lines] == list("春夏秋冬") and poem.acrostic_ok is True
    prompted = poet.generate("白日依山", n=2, seed=2)
    assert all(p.text.startswith("白日依山") for p in prompted)
    simplified = poet.generate(n=6, seed=9)
    traditional = poet.generate(n=6, seed=9, traditional=True)
    assert [len(p.text) for p in traditional] == [len(p.text) for p in simplified]
    assert [p.text for p in traditional] != [p.text for p in simplified]
    free = poet.generate(form="free", max_chars=30, n=3, seed=1)
    assert all(len(p.text) <= 30 and p.rhyme_ok is None for p in free)


def test_result_matches_the_cli_json(poet, tiny_bundle):
    result = CliRunner().invoke(cli, ["generate", "--model", str(tiny_bundle), "--seed", "4", "-n", "2",
                                      "--form", "qijue", "--format", "json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    ours = poet.generate(form="qijue", n=2, seed=4).to_dict()
    for result_dict in (printed, ours):
        result_dict.pop("ms_per_poem")
    assert ours == printed


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert isinstance(error.value, poetgen.PoetgenError) and message and "\n" not in message
    return message


def test_errors_are_the_public_classes_with_one_line(poet, tiny_bundle, tmp_path):
    with pytest.raises(poetgen.BadInput) as error:
        poet.generate(form="sonnet")
    assert "sonnet" in one_line(error)
    with pytest.raises(poetgen.BadInput) as error:
        poet.generate(colour="red")
    assert "colour" in one_line(error)
    with pytest.raises(poetgen.BadInput) as error:
        poet.generate(top_p=2)
    assert "top-p" in one_line(error)
    with pytest.raises(poetgen.BadModel) as error:
        poetgen.load(tmp_path / "nothing")
    assert "nothing" in one_line(error)
    with pytest.raises(poetgen.BadInput) as error:
        poetgen.train(out=str(tmp_path / "run"), epochs=0)
    assert "epochs" in one_line(error)
    with pytest.raises(poetgen.BadInput) as error:
        poetgen.evaluate(model=tiny_bundle, samples=0)
    assert "samples" in one_line(error)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(poetgen.OutputExists) as error:
        poetgen.export(out=tmp_path / "taken", format="keras", model=tiny_bundle)
    assert "taken" in one_line(error) and (tmp_path / "taken" / "keep.txt").read_text(encoding="utf-8") == "mine"


def test_train_export_evaluate(tiny_corpus, tmp_path):
    run = poetgen.train(out=tmp_path / "run", corpus=tiny_corpus, units=16, embedding_dim=16, batch_size=8,
                        seq_len=16, epochs=1, steps_per_epoch=5, warmup_steps=1, min_count=2, dropout=0.0,
                        learning_rate=1e-3)
    assert isinstance(run, poetgen.TrainResult) and run.epochs_done == 1 and run.best_epoch == 1
    assert run.best_val_perplexity > 1 and not run.stopped
    # resume: a keyword given at its default value counts as given, as the CLI's flags do (units=256 on a
    # units=16 run was trained on without a word, learning_rate=3e-3 silently dropped)
    with pytest.raises(poetgen.BadInput, match="cannot resume with different model options") as refused:
        poetgen.train(out=run.path, resume=True, epochs=2, units=256)
    assert refused.value.field == "units"   # the option at fault, as every other BadInput names it
    resumed = poetgen.train(out=run.path, resume=True, epochs=2, learning_rate=3e-3)
    assert resumed.epochs_done == 2
    assert json.loads((run.path / "config.json").read_text(encoding="utf-8"))["train"]["learning_rate"] == 3e-3
    exported = poetgen.export(poetgen.ExportOptions(tmp_path / "exported", "keras"), model=run.path)
    assert exported == tmp_path / "exported"
    assert len(poetgen.load(exported).generate(form="qijue", seed=1)[0].lines) == 4
    small = tmp_path / "small.jsonl"
    with open(tiny_corpus, encoding="utf-8") as handle:
        small.write_text("".join(handle.readlines()[:30]), encoding="utf-8")
    seen = []
    report = poetgen.evaluate(model=exported, corpus=small, samples=2, progress=lambda done, total: seen.append((done, total)))
    assert report["corpus"]["poems"] == 30 and report["perplexity"] > 1
    assert report["form_compliance"] == {"wujue": 1.0, "qijue": 1.0, "wulv": 1.0, "qilv": 1.0}
    assert seen[0][0] == 0 and seen[-1][0] == seen[-1][1] and len({total for _, total in seen}) == 1


@pytest.mark.parametrize("options, field", [
    ({"n": "3"}, "n"), ({"n": 2.5}, "n"), ({"n": True}, "n"), ({"best_of": 1.5}, "best_of"),
    ({"seed": 1.5}, "seed"), ({"top_k": 2.5}, "top_k"), ({"max_chars": 10.5}, "max_chars"),
    ({"prompt": None}, "prompt"), ({"theme": None}, "theme"), ({"tone": "yes"}, "tone"),
    ({"tune": "浣溪沙", "variant": 1.5}, "variant"),
    ({"batch_size": 10**9}, "batch_size"),   # n=1000, best_of=64 would step 64,000 rows at once (~2.4 GB of scores)
])
def test_a_value_of_the_wrong_type_is_one_line_naming_its_field(options, field):
    """Checked where the request is made, not found as a TypeError deep inside sampling."""
    from poetgen.api import poem_request

    with pytest.raises(BadInput) as refused:
        poem_request(**options)
    assert refused.value.field == field


def test_numbers_of_any_numeric_type_are_accepted():
    import numpy as np

    from poetgen.api import poem_request

    request = poem_request(n=np.int64(2), temperature=1, top_p=np.float32(0.9))
    assert request.n == 2 and request.sample.temperature == 1


def test_numpy_numbers_come_back_as_python_ones_and_serialise(poet):
    """What a caller passes ends up in the result's JSON: a numpy.int64 seed or float32 weight broke to_json."""
    import json

    import numpy as np

    poems = poet.generate(seed=np.int64(5), reverse_weight=np.float32(0.3), n=np.uint32(2))
    assert type(poems.seed) is int and json.loads(poems.to_json())["seed"] == 5
    assert all(type(poem.score) is float for poem in poems)


def test_check_takes_a_numpy_variant_as_generate_does():
    """poetgen.check(variant=np.int64(2)) was refused ("variant must be a number from 1"), though generate
    takes NumPy's integers for the same option."""
    import numpy as np

    text = "西塞山前白鹭飞，桃花流水鳜鱼肥。青箬笠，绿蓑衣，斜风细雨不须归。"
    assert poetgen.check(text, tune="渔歌子", variant=np.int64(1)).to_dict() == \
        poetgen.check(text, tune="渔歌子", variant=1).to_dict()


def test_flags_and_paths_of_the_wrong_type_are_one_line(poet, tiny_bundle, tmp_path):
    """int8=0 meant int8 (and could import TensorFlow), traditional="no" printed traditional characters,
    and a path that is not one was a TypeError from pathlib."""
    import numpy as np

    for call, field in ((lambda: poetgen.load(tiny_bundle, int8=0), "int8"),
                        (lambda: poetgen.load(tiny_bundle, int8="no"), "int8"),
                        (lambda: poet.generate(traditional="no"), "traditional"),
                        (lambda: poetgen.load(123), "path"), (lambda: poetgen.load(b"/x"), "path"),
                        (lambda: poetgen.export(out=None), "out"), (lambda: poetgen.export(out=5), "out"),
                        (lambda: poetgen.export(out=str(tmp_path / "e"), model=5), "model"),
                        (lambda: poetgen.evaluate(model=5), "model"),
                        # a required option left out: it was Python's "__init__() missing 1 required …"
                        (lambda: poetgen.export(format="keras", model=tiny_bundle), "out"),
                        (lambda: poetgen.train(epochs=1), "out")):
        with pytest.raises(BadInput) as refused:
            call()
        one_line(refused)
        assert refused.value.field == field and "__init__" not in str(refused.value)
    assert poetgen.load(tiny_bundle, int8=np.False_).generator.int8 is False


def test_an_options_object_of_another_type_is_one_line_and_paths_are_taken_in_either_form(tmp_path):
    for call, takes in ((lambda: poetgen.export("exported"), "ExportOptions"),
                        (lambda: poetgen.train("runs/x"), "TrainConfig"),
                        (lambda: poetgen.export(poetgen.EvalOptions()), "ExportOptions")):
        with pytest.raises(BadInput, match=takes) as refused:
            call()
        one_line(refused)
    from poetgen.api import _options
    from poetgen.train import TrainConfig

    config = _options(TrainConfig, TrainConfig(out=tmp_path / "r"), {"corpus": tmp_path / "c.jsonl"}, "train")
    assert config.out == str(tmp_path / "r") and config.corpus == str(tmp_path / "c.jsonl")


def test_training_leaves_the_callers_global_state_and_runs_off_the_main_thread(tiny_corpus, tmp_path):
    """A run set Keras's dtype policy for good and reseeded the caller's random and NumPy generators; in
    another thread than the main one it failed installing its signal handlers."""
    import random
    import threading

    import keras
    import numpy as np

    options = dict(corpus=tiny_corpus, units=16, embedding_dim=16, batch_size=8, seq_len=16, epochs=1,
                   steps_per_epoch=2, warmup_steps=1, min_count=2, dropout=0.0, precision="mixed_bfloat16")
    random.seed(12345)
    np.random.seed(12345)
    expected = (random.random(), np.random.rand())
    random.seed(12345)
    np.random.seed(12345)
    results = []
    thread = threading.Thread(target=lambda: results.append(poetgen.train(out=tmp_path / "run", **options)))
    thread.start()
    thread.join()
    assert results and results[0].epochs_done == 1
    assert keras.mixed_precision.global_policy().name == "float32"
    assert (random.random(), np.random.rand()) == expected


def test_training_leaves_the_callers_standard_output_alone(tiny_corpus, tmp_path):
    """A run pointed sys.stdout, the process's, at stderr until it ended (for the command's Keras progress
    bar): a host program's prints, from its own callbacks or any other thread, went to its stderr."""
    import keras

    seen = []

    class Watch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(sys.stdout)

    caller = sys.stdout
    poetgen.train(out=tmp_path / "run", corpus=tiny_corpus, units=16, embedding_dim=16, batch_size=8, seq_len=16,
                  epochs=1, steps_per_epoch=2, warmup_steps=1, min_count=2, callbacks=[Watch()])
    assert seen and all(stream is caller for stream in seen)


def test_training_with_progress_shown_in_a_program_without_a_standard_output(tiny_corpus, tmp_path, monkeypatch,
                                                                               caplog):
    """pythonw has no sys.stdout (None), where Keras writes its progress bar: with poetgen's logger at INFO
    the run failed on Keras's first write (AttributeError). Its progress lines are the logger's still."""
    monkeypatch.setattr(sys, "stdout", None)
    caplog.set_level(logging.INFO, logger="poetgen")
    result = poetgen.train(out=tmp_path / "run", corpus=tiny_corpus, units=16, embedding_dim=16, batch_size=8,
                           seq_len=16, epochs=1, steps_per_epoch=2, warmup_steps=1, min_count=2)
    assert result.epochs_done == 1
    assert any(record.getMessage().startswith("epoch 1: ") for record in caplog.records)


def test_training_leaves_a_host_program_s_own_signal_handlers_in_place(tiny_corpus, tmp_path):
    """In the main thread a run put its own SIGINT and SIGTERM handlers over whatever it found: a host
    program's SIGTERM (its graceful shutdown) only stopped the run, and the program never heard of it."""
    import signal

    import keras

    def host(signum, frame):
        pass

    seen = []

    class Watch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append((signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)))

    previous = {sig: signal.signal(sig, host) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        poetgen.train(out=tmp_path / "run", corpus=tiny_corpus, units=16, embedding_dim=16, batch_size=8,
                      seq_len=16, epochs=1, steps_per_epoch=2, warmup_steps=1, min_count=2, callbacks=[Watch()])
        after = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert seen and set(seen) == {(host, host)} and after == (host, host)


def test_int8_where_the_bundle_lacks_its_products_and_tensorflow_is_missing_is_one_line(tiny_bundle, monkeypatch):
    """load(int8=True) converts the products a bundle does not carry, which needs TensorFlow: on an install
    without it (generation needs none) it raised a bare ModuleNotFoundError, not poetgen's one line."""
    import poetgen.quantize

    def missing():
        raise ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")

    assert not (tiny_bundle / "int8.npz").exists()
    monkeypatch.setattr(poetgen.quantize, "import_tensorflow", missing)
    with pytest.raises(BadInput, match=r"^int8=True \(--int8\) converts .*int8\.npz.*needs TensorFlow \(tensorflow is "
                                       r"missing\): pip install tensorflow$"):
        poetgen.load(tiny_bundle, int8=True)


def test_evaluate_reports_tunes_as_the_command_does(poet, tiny_bundle):
    """`poetgen evaluate --tune` had no API equivalent; it takes no TensorFlow either."""
    seen = []
    report = poetgen.evaluate(model=tiny_bundle, samples=2, tunes=["浣溪沙"],
                              progress=lambda done, total: seen.append((done, total)))
    assert list(report["tunes"]) == ["浣溪沙"] and report["samples"] == 2
    assert report["tunes"]["浣溪沙"]["with_rules"]["layout"] == 1.0
    assert seen[0] == (0, 4) and seen[-1] == (4, 4)
    with pytest.raises(BadInput):
        poetgen.evaluate(model=tiny_bundle, tunes="浣溪沙")
    with pytest.raises(BadInput):
        poetgen.evaluate(model=tiny_bundle, tunes=["没有这个调"])
    for call, field in ((lambda: poetgen.evaluate(model=tiny_bundle, tunes=None), "tunes"),   # TypeErrors
                        (lambda: poetgen.evaluate(model=tiny_bundle, tunes=["浣溪沙"], progress=5), "progress")):
        with pytest.raises(BadInput) as refused:
            call()
        assert refused.value.field == field
    generated = poetgen.evaluate(model=tiny_bundle, samples=1, tunes=(t for t in ["浣溪沙"]))   # any iterable
    assert list(generated["tunes"]) == ["浣溪沙"]


def test_an_options_object_of_another_type_names_the_argument_and_a_file_is_not_a_bundle(tmp_path):
    with pytest.raises(BadInput, match="takes an ExportOptions") as refused:
        poetgen.export(poetgen.TrainConfig(out=str(tmp_path / "x")))
    assert refused.value.field == "options"
    (tmp_path / "model").write_text("not a bundle")
    with pytest.raises(poetgen.BadModel, match="a file, not a model bundle"):
        poetgen.load(tmp_path / "model")


def test_an_unknown_option_lists_what_that_call_takes(poet):
    """Poet.generate takes traditional, api.poem_request does not: each listed the other's options."""
    from poetgen.api import poem_request

    with pytest.raises(BadInput, match="traditional, tune") as refused:
        poet.generate(foo=1)
    assert refused.value.field == "foo"
    with pytest.raises(BadInput) as refused:
        poem_request(traditional=True)
    assert "traditional" not in str(refused.value).split("known:")[1]


def test_traditional_output_writes_the_theme_keywords_as_the_user_did(poet):
    """頭髮斑白 printed its keywords simplified (头发) beside a traditional poem."""
    poems = poet.generate(theme="頭髮斑白", traditional=True, seed=1)
    assert "頭髮" in poems.keywords and "头发" not in poems.keywords
    assert "头发" in poet.generate(theme="頭髮斑白", seed=1).keywords


@pytest.mark.parametrize("field", ["form", "acrostic", "theme", "title", "tune"])
def test_a_blank_text_option_is_refused_not_read_as_left_out(poet, field):
    """acrostic="  " wrote a poem without an acrostic (a blank tune was already refused: it wrote a shi)."""
    with pytest.raises(BadInput, match=f"{field} is blank") as refused:
        poet.generate(**{field: " \u3000"})
    assert refused.value.field == field
    result = CliRunner().invoke(cli, ["generate", f"--{field}", ""])
    assert result.exit_code == 2 and f"{field} is blank" in result.output.strip().splitlines()[-1]
    assert poet.generate(seed=1, **({"form": None} if field == "form" else {field: ""})).seed == 1   # left out
    if field == "form":
        with pytest.raises(BadInput, match="form is blank"):
            poet.generate(form="")


def test_an_invisible_character_is_named_by_its_code_point(poet):
    """A variation selector was printed raw: the message named nothing visible."""
    for text, shown in (("春\ufe0f风", "'\\ufe0f'"), ("春\u200b风", "'\\u200b'"), ("春\U000e0101风", "'\\U000e0101'"),
                        ("春😀风", "'😀'")):
        with pytest.raises(BadInput) as refused:
            poet.generate(text)
        assert f"contains {shown}, which" in str(refused.value), text


def test_an_unknown_tune_s_message_stays_short(poet):
    with pytest.raises(BadInput) as refused:
        poet.generate(tune="浣" * 5000)
    assert refused.value.field == "tune" and len(str(refused.value)) < 200


def test_importing_tensorflow_leaves_the_callers_random_generators_alone():
    """The first poetgen.train (or export, evaluate) in a process imported TensorFlow, which draws from
    Python's and NumPy's global generators: the caller's next random numbers changed."""
    script = ("import random, numpy as np\n"
              "random.seed(5); np.random.seed(5); a, b = random.random(), np.random.random()\n"
              "random.seed(5); np.random.seed(5)\n"
              "from poetgen.quiet import import_tensorflow\n"
              "import_tensorflow()\n"
              "print(random.random() == a, np.random.random() == b)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]


def test_a_theme_leaves_the_host_s_jieba_logging_as_it_was(tiny_bundle):
    """The first theme muted jieba's logger for good (jieba.setLogLevel(60)): a program that logs through
    jieba itself lost its messages. Its start is still quiet (no "Building prefix dict" on stderr)."""
    script = ("import logging, poetgen\n"
              f"poet = poetgen.load({str(tiny_bundle)!r})\n"
              "poet.generate(theme='秋天思乡', seed=1)\n"
              "print(logging.getLogger('jieba').level)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(__import__("logging").DEBUG)]   # jieba's own level, as it set it
    assert "prefix dict" not in result.stderr and "Loading model" not in result.stderr, result.stderr


def test_ms_per_poem_leaves_out_the_word_segmenters_one_time_start(monkeypatch):
    """The first theme in a process reported ~2,000 ms a poem: jieba's start, not the writing. A clock
    that only the (patched) keyword finder moves: the time it takes must not reach ms_per_poem."""
    import poetgen.generate as generate_module
    import poetgen.request as request_module

    clock = [0.0]
    original = request_module.theme_keywords

    def slow_start(*args, **kwargs):   # as jieba's first use: seconds before anything is written
        clock[0] += 1000.0
        return original(*args, **kwargs)

    monkeypatch.setattr(request_module, "theme_keywords", slow_start)
    monkeypatch.setattr(generate_module.time, "perf_counter", lambda: clock[0])
    poems = poetgen.load().generate(theme="秋天思乡", seed=1)
    assert poems.keywords and poems.ms_per_poem == 0.0


def test_train_can_log_a_sample_poem_each_epoch_as_the_cli_does(tiny_corpus, tmp_path, caplog):
    """`train --sample` (the CLI's default) had no API: sample= was an unknown option."""
    options = dict(corpus=tiny_corpus, units=16, embedding_dim=16, batch_size=8, seq_len=16, epochs=1,
                   steps_per_epoch=3, warmup_steps=1, min_count=2, dropout=0.0)
    with caplog.at_level("INFO", logger="poetgen.callbacks"):
        poetgen.train(out=tmp_path / "run", sample=True, **options)
    samples = [r.getMessage() for r in caplog.records if r.getMessage().startswith("sample: ")]
    assert len(samples) == 1 and len(samples[0]) > len("sample: ")
    with pytest.raises(poetgen.BadInput, match="sample must be True or False"):
        poetgen.train(out=tmp_path / "other", sample="yes", **options)


def test_arguments_the_library_review_found_unchecked_are_one_line_naming_them(poet, tmp_path):
    """train(callbacks=5) failed inside Keras once the model was built; run("abc") inside the generator;
    an unknown train/export/evaluate option named no field."""
    for callbacks in (5, "x", [5]):
        with pytest.raises(BadInput, match="callbacks must be") as refused:
            poetgen.train(out=tmp_path / "run", corpus=tmp_path / "none.jsonl", callbacks=callbacks)
        assert refused.value.field == "callbacks" and not (tmp_path / "run").exists()
    for request in ("abc", None):
        with pytest.raises(BadInput, match="run takes a PoemRequest") as refused:
            poet.run(request)
        assert refused.value.field == "request"
    for call in (poetgen.train, poetgen.export, poetgen.evaluate):
        with pytest.raises(BadInput, match="unknown .* option 'foo'") as refused:
            call(foo=1)
        assert refused.value.field == "foo"


def overlapping(block) -> None:
    """block() entered in two threads, the second entering while the first holds it, and the first
    leaving first: the order in which each restoring what it found goes wrong."""
    import threading

    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first():
        with block():
            first_in.set()
            second_in.wait(30)
        first_out.set()

    def second():
        first_in.wait(30)
        with block():
            second_in.set()
            first_out.wait(30)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert first_out.is_set() and second_in.is_set()


def test_threads_that_mute_stderr_at_once_leave_it_as_it_was():
    """fd 2 is the process's: two models loaded at once in two threads (each mutes it while LiteRT
    announces itself) left a program's stderr on /dev/null for good, 1 run in 3."""
    import os

    from poetgen.quiet import muted_stderr

    before = os.fstat(2)
    overlapping(muted_stderr)
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)


def test_a_poet_used_from_two_threads_leaves_the_program_s_blas_as_it_was(monkeypatch):
    """An int8 Poet sums rows on one BLAS thread. Two generate calls overlapping in two threads, the first
    in leaving first, lifted the limit under the second and then left NumPy's BLAS on one thread for good
    (threadpoolctl's limit restores the count it found, and the second found the first's)."""
    import threading

    import threadpoolctl

    import poetgen.sampling as sampling

    poet = poetgen.load()   # the shipped model: int8 where LiteRT is installed
    if not poet.generator.int8:
        pytest.skip("LiteRT is not installed: float32 leaves BLAS alone")
    blas = threadpoolctl.ThreadpoolController().select(user_api="blas")
    default = [library.num_threads for library in blas.lib_controllers]
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen, original = [], sampling.row_sums

    def row_sums(x):
        if threading.current_thread().name == "first" and not first_in.is_set():
            first_in.set()
            second_in.wait(30)
        elif threading.current_thread().name == "second":
            if not second_in.is_set():
                second_in.set()
                first_out.wait(30)
            seen.append([library.num_threads for library in blas.lib_controllers])
        return original(x)

    monkeypatch.setattr(sampling, "row_sums", row_sums)

    def first():
        poet.generate(seed=1, best_of=1)
        first_out.set()

    def second():
        first_in.wait(30)
        poet.generate(seed=2, best_of=1)

    threads = [threading.Thread(target=first, name="first"), threading.Thread(target=second, name="second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert first_out.is_set() and seen
    assert all(counts == [1] * len(default) for counts in seen)   # the second's rows too
    assert [library.num_threads for library in blas.lib_controllers] == default


def test_a_request_whose_sampling_options_are_not_sampleoptions_is_one_line():
    """Poet.run(PoemRequest(sample=None)) failed as an AttributeError from inside validate()."""
    poet = poetgen.load()   # the shipped model: no training needed to refuse a request
    for sample in (None, {"seed": 1}, "x"):
        with pytest.raises(BadInput, match="sample must be a SampleOptions") as refused:
            poet.run(poetgen.PoemRequest(sample=sample))
        assert refused.value.field == "sample"


FORKED = """
import multiprocessing, poetgen
from poetgen.quantize import cores
poet = poetgen.load(int8=False)
n = 8 * cores()   # n x best_of 2 rows: 16 a core, so the batch is split across the cores
first = poet.generate(seed=1, n=n)[0].text
def child(queue):
    queue.put(poet.generate(seed=1, n=n)[0].text)
context = multiprocessing.get_context("fork")
queue = context.Queue()
process = context.Process(target=child, args=(queue,))
process.start()
process.join(60)
if process.is_alive():
    process.kill()
    print("HUNG")
else:
    print("SAME" if queue.get(timeout=10) == first else "OTHER")
"""


def test_a_forked_child_writes_the_batches_its_parent_split_across_the_cores(tmp_path):
    """A Poet that had split a batch across the cores, forked (multiprocessing, a server's preloaded
    workers): the child's first such batch waited for ever on its parent's share threads, not in it."""
    import multiprocessing

    from poetgen.quantize import cores

    if cores() < 2 or "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs two cores and fork")
    process = python(FORKED, tmp_path)
    assert process.returncode == 0, process.stderr
    assert process.stdout.strip() == "SAME"


class _PerThreadBlas:
    """A BLAS whose thread count is each thread's own, as OpenBLAS built on OpenMP keeps it
    (threadpoolctl's threading_layer "openmp": omp_set_num_threads sets the calling thread's)."""

    internal_api, threading_layer = "openblas", "openmp"

    def __init__(self, default: int):
        self.default, self._local = default, __import__("threading").local()

    @property
    def num_threads(self) -> int:
        return getattr(self._local, "count", self.default)

    def set_num_threads(self, count: int) -> None:
        self._local.count = count


def test_a_blas_that_counts_threads_per_thread_is_limited_and_restored_in_each(monkeypatch):
    """Under OpenBLAS built on OpenMP the count is each thread's: the shared limit set it in the first
    thread in alone, left the second's BLAS unlimited, and the last out restored its own, leaving the
    first thread's on one thread for good (threadpoolctl's own limit, per thread, had been right there)."""
    import threading
    import types

    from poetgen import blas

    library = _PerThreadBlas(4)
    monkeypatch.setattr(blas, "_blas", lambda: types.SimpleNamespace(lib_controllers=[library]))
    inside, after = {}, {}

    def block():
        @__import__("contextlib").contextmanager
        def seen():
            name = threading.current_thread().name
            with blas.one_blas_thread():
                inside[name] = library.num_threads
                yield
            after[name] = library.num_threads
        return seen()

    overlapping(block)
    assert inside and set(inside.values()) == {1}, inside
    assert after and set(after.values()) == {4}, after


def test_a_batch_split_across_cores_steps_each_share_on_one_blas_thread(generator, monkeypatch):
    """A batch split across the cores limited BLAS in the thread that split it alone: under an OpenBLAS built
    on OpenMP, whose count is each thread's, the share threads stepped with an unlimited one. Each share
    thread now limits (and restores) its own; threadpoolctl, asked inside them, reads one thread too."""
    import threading
    import types

    import threadpoolctl

    import poetgen.sampling as sampling
    from poetgen import blas
    from poetgen.generate import SHARE_ROWS
    from poetgen.quantize import cores
    from poetgen.request import PoemRequest
    from poetgen.sampling import SampleOptions, row_streams

    if cores() < 2:
        pytest.skip("a batch is split across two cores or more")
    library, original, seen = _PerThreadBlas(4), sampling.row_sums, []

    def row_sums(x):   # inside the sampling loop, in the thread that steps the share
        real = threadpoolctl.ThreadpoolController().select(user_api="blas").info()
        seen.append((threading.current_thread().name, library.num_threads, [lib["num_threads"] for lib in real]))
        return original(x)

    real = blas._blas()
    monkeypatch.setattr(sampling, "row_sums", row_sums)
    monkeypatch.setattr(blas, "_blas", lambda: types.SimpleNamespace(lib_controllers=[*real.lib_controllers, library]))
    prepared = generator.prepare(PoemRequest(sample=SampleOptions(seed=1)))
    poems = generator.sample_rows(prepared, row_streams(1, 0, cores() * SHARE_ROWS))
    assert len(poems) == cores() * SHARE_ROWS
    shares = [(fake, counts) for name, fake, counts in seen if name.startswith("poetgen-share")]
    assert shares and {fake for fake, _ in shares} == {1}, seen[:3]
    assert all(set(counts) == {1} for _, counts in shares), shares[:3]
    pool = generator._share_pool()[0]
    assert set(pool.map(lambda _: library.num_threads, range(8))) == {4}   # each share thread's own, restored


FORKED_WHILE_HELD = """
import warnings
warnings.simplefilter("ignore", DeprecationWarning)   # Python 3.12 warns of a fork in a threaded process: the case here
import os, threading
import threadpoolctl
from poetgen.blas import one_blas_thread
from poetgen.quiet import muted_stderr

def counts():
    return [library.num_threads for library in threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers]

default = counts()
entered, leave = threading.Event(), threading.Event()

def hold():   # another thread, loading a model (stderr muted) and stepping in int8 (BLAS on one thread)
    with muted_stderr(), one_blas_thread():
        entered.set()
        leave.wait(60)

thread = threading.Thread(target=hold)
thread.start()
entered.wait(60)
pid = os.fork()
if pid == 0:
    os.write(2, b"child stderr\\n")
    with muted_stderr(), one_blas_thread():
        os.write(2, b"muted\\n")
    os.write(2, b"child stderr after\\n")
    os.write(1, f"child {counts() == default} {counts()} {default}\\n".encode())
    os._exit(0)
os.waitpid(pid, 0)
leave.set()
thread.join(60)
os.write(2, b"parent stderr\\n")
print("parent", counts() == default)
"""


def test_a_process_forked_while_another_thread_mutes_or_limits_gets_its_stderr_and_blas_back(tmp_path):
    """Forked while another thread had stderr muted (a model loading) or BLAS on one thread (an int8 step):
    that thread is not in the child, so no one was left to restore them, and the child's stderr stayed on
    /dev/null (its errors and tracebacks lost) and its BLAS on one thread for good, its own blocks too."""
    import os

    if not hasattr(os, "fork"):
        pytest.skip("needs fork")
    process = python(FORKED_WHILE_HELD, tmp_path)
    assert process.returncode == 0, process.stderr
    assert process.stderr.split("\n")[:3] == ["child stderr", "child stderr after", "parent stderr"], process.stderr
    assert process.stdout.split("\n")[0].startswith("child True"), process.stdout
    assert "parent True" in process.stdout


FORKED_WHILE_CHANGING = """
import warnings
warnings.simplefilter("ignore", DeprecationWarning)   # Python 3.12 warns of a fork in a threaded process: the case here
import os, signal, threading
from poetgen.blas import one_blas_thread
from poetgen.quiet import muted_stderr

with one_blas_thread():   # BLAS found before the threads start: a fork in the middle of an import is another matter
    pass
stop = threading.Event()

def spin():   # a thread muting and limiting over and over: a fork lands while it holds their lock
    while not stop.is_set():
        with muted_stderr(), one_blas_thread():
            pass

thread = threading.Thread(target=spin)
thread.start()
hung = 0
for _ in range(40):
    pid = os.fork()
    if pid == 0:
        signal.alarm(10)
        with muted_stderr(), one_blas_thread():
            pass
        os._exit(0)
    hung += os.waitpid(pid, 0)[1] != 0
    if hung:
        break
stop.set()
thread.join(60)
print("hung", hung)
"""


def test_a_process_forked_while_another_thread_changes_stderr_or_blas_does_not_hang(tmp_path):
    """A fork while another thread held the lock of the shared muting or BLAS limit left it held in the
    child, whose first model load or int8 step then waited for ever (most forks of a busy server)."""
    import os

    if not hasattr(os, "fork"):
        pytest.skip("needs fork")
    process = python(FORKED_WHILE_CHANGING, tmp_path)
    assert process.returncode == 0, process.stderr
    assert process.stdout.strip() == "hung 0"


FORKED_WHILE_JIEBA_STARTS = """
import warnings
warnings.simplefilter("ignore", DeprecationWarning)   # Python 3.12 warns of a fork in a threaded process: the case here
import os, signal, threading
import jieba
import poetgen

started, forking, original = threading.Event(), threading.Event(), jieba.initialize

def held_start(*args, **kwargs):   # the dictionary's load, held until the fork has begun: the fork lands in it
    started.set()
    forking.wait(60)
    return original(*args, **kwargs)

jieba.initialize = held_start
poet = poetgen.load()
poet.generate(seed=1)   # all else it imports on first use, imported: a fork amid an import is another matter
# registered after poetgen's own hooks, so run before them: the fork has begun when the start goes on
os.register_at_fork(before=forking.set)
thread = threading.Thread(target=lambda: poet.generate(theme="秋天的思念", seed=1))
thread.start()
started.wait(60)
pid = os.fork()
if pid == 0:
    signal.alarm(30)
    poet.generate(theme="春天的离别", seed=1)
    os._exit(0)
print("child", os.waitpid(pid, 0)[1])
thread.join(60)
"""


def test_a_process_forked_while_a_theme_starts_jieba_does_not_hang(tmp_path):
    """The first theme loads jieba's dictionary (~1 s) under a lock; a process forked meanwhile (by another
    thread: multiprocessing, a server's workers) found that lock held, and its first theme waited for ever."""
    import os

    if not hasattr(os, "fork"):
        pytest.skip("needs fork")
    process = python(FORKED_WHILE_JIEBA_STARTS, tmp_path)
    assert process.returncode == 0, process.stderr
    assert process.stdout.strip() == "child 0", process.stdout


FIRST_REQUESTS = """
import sys
import poetgen

poet = poetgen.load()   # the shipped model: int8
loaded = set(sys.modules)
poet.generate(prompt="春風", tone=True, seed=1)
poet.generate(tune="浣溪沙", n=40, best_of=1, batch_size=40, seed=1)   # split across the cores where there are two
print(sorted(set(sys.modules) - loaded))
"""


def test_a_loaded_model_imports_nothing_more_to_generate(tmp_path):
    """A first request imported threadpoolctl (an int8 step's BLAS limit), OpenCC, numpy.random and more in
    whichever thread ran it: a process forked meanwhile by another thread (multiprocessing, a server's
    workers) kept that module half made and its lock held, and its own first request waited for ever.
    Loading makes them; a name here is an import made mid-request (add it to generate.import_first_use)."""
    process = python(FIRST_REQUESTS, tmp_path)
    assert process.returncode == 0, process.stderr
    assert process.stdout.strip() == "[]"


def test_an_unknown_form_s_refusal_names_the_traditional_names_it_takes_too(poet):
    """七絕 and 五絕 are taken as form names, but the refusal of an unknown one listed 五绝 七绝 五律 七律 alone."""
    with pytest.raises(BadInput) as refused:
        poet.generate(form="七言")
    assert refused.value.field == "form" and "五絕" in str(refused.value) and "七絕" in str(refused.value)
