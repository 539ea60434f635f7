"""Faults of the machine and the workflow: two runs on one bundle, stale locks, corrupt or torn state,
write errors at every save. Each ends in one line and exit 2, and the last good files stay whole."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

import poetgen.atomic
from conftest import kill_after_save, shipped_records, wait_until
from poetgen.cli import cli
from poetgen.errors import InUse
from poetgen.lock import LOCK_NAME, Lock
from poetgen.resume import read_state, save_state

POEM = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"
# A run with --units 32 (not the default): resuming it must not need the option again.
RUN_ARGS = ["--units", "32", "--embedding-dim", "16", "--batch-size", "16", "--seq-len", "32", "--learning-rate",
            "0.01", "--warmup-steps", "5", "--val-split", "0.05", "--min-count", "2", "--steps-per-epoch", "8",
            "--dropout", "0", "--no-sample"]


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result


def assert_one_line(result, *fragments, code=2):
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()   # a run that fails mid-way logged its progress first
    assert "Traceback" not in result.stderr and lines[-1].startswith("poetgen: error:"), result.stderr
    assert sum(line.startswith("poetgen:") for line in lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    return lines[-1]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def run_dir(tiny_corpus, tmp_path_factory) -> Path:
    """A finished one-epoch run trained through the CLI with --units 32."""
    from poetgen.quiet import import_tensorflow

    import_tensorflow()
    out = tmp_path_factory.mktemp("faults") / "run"
    result = invoke("train", "--corpus", tiny_corpus, "--out", out, "--epochs", 1, *RUN_ARGS)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def run_copy(run_dir, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("tensorboard"))
    return copy


# ---- the lock --------------------------------------------------------------------------------------

def test_second_train_and_export_are_refused_while_a_run_holds_the_bundle(tiny_corpus, tiny_bundle, tmp_path):
    out = tmp_path / "busy"
    process = subprocess.Popen([sys.executable, "-m", "poetgen", "train", "--corpus", str(tiny_corpus), "--out",
                                str(out), "--epochs", "500", *RUN_ARGS], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        lock = out / LOCK_NAME

        def held_by_child():
            try:
                return json.loads(lock.read_text())["pid"] == process.pid
            except (OSError, ValueError, KeyError):
                return False

        wait_until(held_by_child, "the run's lock file", timeout=240, poll=0.1)
        wait_until((out / "resume" / "state.json").exists, "the first saved epoch", timeout=240, poll=0.1)   # training, not starting
        second = invoke("train", "--corpus", tiny_corpus, "--out", out, "--resume", "--epochs", 600)
        line = assert_one_line(second, f"{out} is in use by pid {process.pid} on {socket.gethostname()}",
                               "since", "poetgen train")
        assert "wait for it to finish" in line
        export = invoke("export", "--model", tiny_bundle, "--out", out, "--format", "keras", "--force")
        assert_one_line(export, f"pid {process.pid}")
        assert process.poll() is None
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=240)
    assert process.returncode == 130, stderr        # saved, but interrupted
    assert not lock.exists()                       # released after SIGTERM
    with Lock.directory(out):                      # and free to take
        pass


def test_import_onto_a_file_being_written_is_refused(tmp_path):
    source, out = tmp_path / "poems.txt", tmp_path / "corpus.jsonl"
    source.write_text(POEM + "\n", encoding="utf-8")
    with Lock.file(out):
        result = invoke("corpus", "import", source, "--out", out)
        assert_one_line(result, f"{out} is in use by pid {os.getpid()}")
    assert not out.exists()
    result = invoke("corpus", "import", source, "--out", out)
    assert result.exit_code == 0, result.output
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # no lock left behind


def test_stale_lock_of_a_dead_process_is_taken_over_with_a_notice(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "bundle"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(),
                                             "command": "poetgen train --out x", "since": 0}))
    notices = []
    with Lock.directory(out, notice=notices.append):
        assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()
        with pytest.raises(InUse, match=f"pid {os.getpid()}"):
            Lock.directory(out).acquire()
    assert len(notices) == 1 and f"pid {dead.pid}" in notices[0] and "stale" in notices[0]
    assert not (out / LOCK_NAME).exists()


def test_lock_is_released_when_the_block_raises(tmp_path):
    out = tmp_path / "new"
    with pytest.raises(RuntimeError):
        with Lock.directory(out):
            assert (out / LOCK_NAME).exists()
            raise RuntimeError("boom")
    assert not out.exists()                        # created for the run, left empty: removed again


# ---- --resume takes the run's options --------------------------------------------------------------

def test_resume_continues_with_the_runs_own_options(run_copy):
    (run_copy / "log.csv").write_text((run_copy / "log.csv").read_text() + "1,5.0", encoding="utf-8")  # torn
    result = invoke("train", "--out", run_copy, "--resume", "--epochs", 2)
    assert result.exit_code == 0, result.output
    config = json.loads((run_copy / "config.json").read_text(encoding="utf-8"))
    assert config["model"]["units"] == 32 and config["train"]["steps_per_epoch"] == 8
    assert config["progress"]["epochs_done"] == 2
    rows = (run_copy / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "1"]   # the torn line went, the new one came
    explicit = invoke("train", "--out", run_copy, "--resume", "--epochs", 3, "--units", 256)
    assert_one_line(explicit, "different model options", "--units 32 (not 256)")
    # another held-out split would score poems the run trained on and crown that epoch the best
    split = invoke("train", "--out", run_copy, "--resume", "--epochs", 3, "--val-split", 0.3)
    assert_one_line(split, "held-out split", "--val-split 0.05 (not 0.3)")


def test_a_forced_retrain_on_another_corpus_resumes_with_its_own_vocabulary(run_copy, tmp_path):
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in shipped_records(400)[::-1]),
                     encoding="utf-8")
    old_tokenizer = (run_copy / "resume" / "tokenizer.json").read_bytes()
    result = invoke("train", "--corpus", other, "--out", run_copy, "--force", "--epochs", 1, *RUN_ARGS)
    assert result.exit_code == 0, result.output
    config = json.loads((run_copy / "config.json").read_text(encoding="utf-8"))
    resume_tokenizer = run_copy / "resume" / "tokenizer.json"
    assert resume_tokenizer.read_bytes() == (run_copy / "tokenizer.json").read_bytes() != old_tokenizer
    result = invoke("train", "--out", run_copy, "--resume", "--epochs", 2)
    assert result.exit_code == 0, result.output
    assert json.loads((run_copy / "config.json").read_text(encoding="utf-8"))["tokenizer_hash"] == \
        config["tokenizer_hash"]
    resume_tokenizer.write_bytes(old_tokenizer)   # what an older poetgen left behind: refused, nothing changed
    before = {p: digest(p) for p in run_copy.rglob("*") if p.is_file()}
    line = assert_one_line(invoke("train", "--out", run_copy, "--resume", "--epochs", 3), "belongs to another model")
    assert str(resume_tokenizer) in line
    assert {p: digest(p) for p in run_copy.rglob("*") if p.is_file()} == before


def test_a_forced_retrain_on_another_vocabulary_stopped_in_its_first_epoch_resumes(run_copy, tmp_path):
    """Until its first epoch ends, a --force run has written no bundle file: the old run's tokenizer and
    config are still there, and --resume must not hold them against the new run's own resume state."""
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in shipped_records(400)[::-1]),
                     encoding="utf-8")
    old_tokenizer = (run_copy / "tokenizer.json").read_bytes()
    process = subprocess.Popen([sys.executable, "-m", "poetgen", "train", "--corpus", str(other), "--out",
                                str(run_copy), "--force", "--epochs", "1", *RUN_ARGS, "--steps-per-epoch", "100000",
                                "--checkpoint-minutes", "0.0001"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)

    def saved_step() -> int:   # the new run's own save within its first epoch
        try:
            record = json.loads((run_copy / "resume" / "state.json").read_text())
        except (FileNotFoundError, ValueError):
            return 0
        return record["state"]["step_in_epoch"] if record["train"]["corpus"] == str(other) else 0

    step = kill_after_save(process, saved_step, 2)
    assert step >= 2, process.stderr.read()
    assert (run_copy / "tokenizer.json").read_bytes() == old_tokenizer   # the old run's, until the epoch ends
    assert (run_copy / "resume" / "tokenizer.json").read_bytes() != old_tokenizer
    (run_copy / LOCK_NAME).unlink(missing_ok=True)   # kill -9 leaves the lock; a stale one is taken over anyway
    result = invoke("train", "--out", run_copy, "--resume", "--steps-per-epoch", step + 3, "--checkpoint-minutes", 0)
    assert result.exit_code == 0, result.output
    assert (run_copy / "tokenizer.json").read_bytes() == (run_copy / "resume" / "tokenizer.json").read_bytes()
    assert json.loads((run_copy / "config.json").read_text(encoding="utf-8"))["corpus"]["path"] == str(other)


def test_a_forced_start_that_fails_its_checks_keeps_the_old_runs_progress(run_copy, tiny_corpus):
    events = run_copy / "tensorboard" / "train" / "events.out.tfevents.1.host"   # the old run's curves too
    events.parent.mkdir(parents=True, exist_ok=True)
    events.write_bytes(b"curves")
    kept = {p: digest(p) for p in run_copy.rglob("*") if p.is_file() and p.name != LOCK_NAME}
    assert run_copy / "log.csv" in kept and run_copy / "resume" / "state.json" in kept
    result = invoke("train", "--corpus", tiny_corpus, "--out", run_copy, "--force", "--epochs", 1, *RUN_ARGS,
                    "--seq-len", 4096)
    assert_one_line(result, "corpus too small for --batch-size 16 x --seq-len 4096")
    assert {p: digest(p) for p in run_copy.rglob("*") if p.is_file() and p.name != LOCK_NAME} == kept
    assert invoke("train", "--out", run_copy, "--resume", "--epochs", 2).exit_code == 0


def test_resume_where_only_a_model_is_left_says_to_start_over(run_copy, tmp_path):
    shutil.rmtree(run_copy / "resume")
    assert_one_line(invoke("train", "--out", run_copy, "--resume", "--epochs", 2),
                    "holds a model but no saved progress", "--force instead of --resume")
    own = tmp_path / "mine"   # a user's own config.json is no model: nothing saved, and no --force advised
    own.mkdir()
    (own / "config.json").write_text('{"name": "my settings"}', encoding="utf-8")
    line = assert_one_line(invoke("train", "--out", own, "--resume"), "nothing was saved there yet")
    assert "--force" not in line


# ---- corrupt or partial state ----------------------------------------------------------------------

def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def resume_model(run: Path) -> Path:
    return run / "resume" / json.loads((run / "resume" / "state.json").read_text())["model_file"]


@pytest.mark.parametrize("target, message, way_out", [
    (lambda run: run / "resume" / "state.json", "resume state is truncated or corrupt", "--force"),
    (resume_model, "resume model is truncated or corrupt", "--force"),
    (lambda run: run / "resume" / "tokenizer.json", "tokenizer file is corrupt", "--force"),
    (lambda run: run / "model.keras", "best model is truncated or corrupt", "restore it"),
    (lambda run: run / "tokenizer.json", "tokenizer file is corrupt", "restore it"),
    (lambda run: run / "config.json", "corrupt config", "--force"),
], ids=["state.json", "last.keras", "resume-tokenizer", "model.keras", "tokenizer.json", "config.json"])
def test_truncated_state_is_one_line_naming_the_file(run_copy, target, message, way_out):
    path = target(run_copy)
    truncate(path)
    before = {p: digest(p) for p in run_copy.rglob("*") if p.is_file()}
    line = assert_one_line(invoke("train", "--out", run_copy, "--resume", "--epochs", 2), message, way_out)
    assert str(path) in line
    assert {p: digest(p) for p in run_copy.rglob("*") if p.is_file()} == before


def _edit_json(path: Path, edit) -> None:
    record = json.loads(path.read_text(encoding="utf-8"))
    edit(record)
    path.write_text(json.dumps(record), encoding="utf-8")   # escaped: a lone surrogate is written as \ud800


@pytest.mark.parametrize("file, edit, message", [
    ("config.json", lambda r: r.update(train=[1]), "train is not a JSON object"),
    ("config.json", lambda r: r["train"].update(reverse="yes"), "train.reverse must be true or false"),
    ("config.json", lambda r: r["model"].update(units=16.0), "units must be a whole number"),
    ("tokenizer.json", lambda r: r.update(chars=[1, 2]), "tokenizer file is corrupt"),
    ("resume/tokenizer.json", lambda r: r.update(controls="<tang>"), "tokenizer file is corrupt"),
    ("resume/state.json", lambda r: r.update(model_file=5), "model_file must name a last-N.keras"),
    ("resume/state.json", lambda r: r.update(model_file="../model.keras"), "model_file must name"),
    ("resume/state.json", lambda r: r["state"].update(epochs_done="1"), "state.epochs_done must be a whole number"),
    ("resume/state.json", lambda r: r.update(seed_states=[1]), "seed_states must map"),
    ("resume/state.json", lambda r: r.update(seed_states={"rnn_0/0": [float("inf"), 0]}), "seed_states must map"),
    ("resume/state.json", lambda r: r["state"].update(wall_time_s=float("inf")), "state.wall_time_s must be"),
    ("resume/state.json", lambda r: r["train"].update(units=16.0), f"{Path('resume', 'state.json')}: resume state is "
                                                                   "corrupt (its train options: units must be a whole"),
    ("resume/state.json", lambda r: r["train"].update(corpus=""), "train.corpus must be a file or directory"),
    ("config.json", lambda r: r.update(corpus=[1]), "corpus is not a JSON object"),
    ("config.json", lambda r: r["corpus"].update(path=5), "corpus.path must be text"),
    ("config.json", lambda r: r.update(format_version=True), "no format_version"),
    ("tokenizer.json", lambda r: r.update(chars=r["chars"][:-1] + "\ud800"), "tokenizer file is corrupt"),
], ids=["train-list", "reverse-text", "units-float", "chars-ints", "controls-text", "model-file-int",
        "model-file-path", "epochs-text", "seeds-list", "seeds-infinity", "wall-infinity", "train-units-float",
        "corpus-empty", "config-corpus-list", "config-corpus-path", "format-version-bool", "lone-surrogate"])
def test_wrong_types_in_state_files_are_one_line(run_copy, file, edit, message):
    """Valid JSON of the wrong shape (a hand edit, another tool) is one line too, not an internal error."""
    _edit_json(run_copy / file, edit)
    before = {p: digest(p) for p in run_copy.rglob("*") if p.is_file()}
    line = assert_one_line(invoke("train", "--out", run_copy, "--resume", "--epochs", 2), message)
    assert "internal error" not in line
    if not file.startswith("resume/"):   # the bundle is read by every command
        assert_one_line(invoke("generate", "--model", run_copy, "--seed", 1), message)
    assert {p: digest(p) for p in run_copy.rglob("*") if p.is_file()} == before


def test_garbage_log_is_one_line(run_copy):
    (run_copy / "log.csv").write_bytes(b"\xff\xfe garbage")
    assert_one_line(invoke("train", "--out", run_copy, "--resume", "--epochs", 2), "log.csv",
                    "training log is corrupt", "move it away")


class ZipModel:
    """Stands in for a Keras model: save() writes a small .keras-like archive."""

    def __init__(self, tag: str):
        self.tag = tag

    def save(self, path):
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("weights", self.tag)


def test_a_kill_between_the_model_and_state_json_keeps_the_last_good_state(tmp_path, monkeypatch):
    from poetgen.tokenizer import Tokenizer

    tokenizer = Tokenizer.build([POEM])
    resume_dir = tmp_path / "resume"
    save_state(resume_dir, ZipModel("epoch 1"), tokenizer, {"train": {}, "state": {"epochs_done": 1}})
    original = poetgen.atomic._commit

    def killed_at_state(tmp, path):
        if path.name == "state.json":
            raise KeyboardInterrupt   # the moment between the two renames
        original(tmp, path)

    monkeypatch.setattr(poetgen.atomic, "_commit", killed_at_state)
    with pytest.raises(KeyboardInterrupt):
        save_state(resume_dir, ZipModel("epoch 2"), tokenizer, {"train": {}, "state": {"epochs_done": 2}})
    record = read_state(tmp_path)
    assert record["state"]["epochs_done"] == 1
    with zipfile.ZipFile(record["model_path"]) as archive:
        assert archive.read("weights") == b"epoch 1"


# ---- write errors ----------------------------------------------------------------------------------

def fail_writes_to(monkeypatch, name: str, code: int) -> None:
    """Every atomic save whose file name starts with `name` fails as a full disk (or read-only, quota) would:
    at its commit, or (files staged to be put in place together) when its staged copy is finished."""
    for hook in ("_commit", "_ready"):
        original = getattr(poetgen.atomic, hook)

        def failing(tmp, path, original=original):
            if path.name.startswith(name):
                raise OSError(code, os.strerror(code))
            original(tmp, path)

        monkeypatch.setattr(poetgen.atomic, hook, failing)


@pytest.mark.parametrize("name, kept", [("model.keras", "the previous model.keras is unchanged"),
                                        ("last-", "nothing was written"),   # a new generation's file
                                        ("state.json", "the previous state.json is unchanged"),
                                        ("log.csv", "the previous log.csv is unchanged"),
                                        ("curves.png", "the previous curves.png is unchanged")])
def test_disk_full_at_every_training_save(run_copy, monkeypatch, name, kept):
    from poetgen.bundle import load_bundle

    state_path = run_copy / "resume" / "state.json"
    state = json.loads(state_path.read_text())
    state["state"]["best_val_loss"] = 1e9          # the next epoch improves, so model.keras is written
    state_path.write_text(json.dumps(state))
    before = {p.name: digest(p) for p in run_copy.rglob("*") if p.is_file() and p.name.startswith(name)}
    assert before
    fail_writes_to(monkeypatch, name, errno.ENOSPC)
    result = invoke("train", "--out", run_copy, "--resume", "--epochs", 2)
    assert_one_line(result, "cannot write", name, "No space left on device (ENOSPC)", kept)
    after = {p.name: digest(p) for p in run_copy.rglob("*") if p.is_file() and p.name.startswith(name)}
    assert after == before
    monkeypatch.undo()
    load_bundle(run_copy)                          # the bundle loads
    assert read_state(run_copy)["state"]["epochs_done"] >= 1   # and the run can resume
    assert not (run_copy / LOCK_NAME).exists()
    assert not [p for p in run_copy.rglob("*.tmp")] and not [p for p in run_copy.rglob(".*.keras")]


def test_disk_full_while_a_forced_retrain_saves_keeps_the_old_bundle_whole(run_copy, tmp_path, monkeypatch):
    """A --force run on another corpus (another vocabulary) that cannot write its model.keras leaves the
    old model, tokenizer and config together: the bundle still loads and writes as before."""
    from poetgen.bundle import load_bundle

    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in shipped_records(400)[::-1]),
                     encoding="utf-8")
    before = {name: digest(run_copy / name) for name in ("model.keras", "tokenizer.json", "config.json")}
    fail_writes_to(monkeypatch, "model.keras", errno.EFBIG)
    result = invoke("train", "--corpus", other, "--out", run_copy, "--force", "--epochs", 1, *RUN_ARGS)
    assert_one_line(result, "cannot write", "model.keras", "(EFBIG)")
    monkeypatch.undo()
    assert {name: digest(run_copy / name) for name in before} == before
    load_bundle(run_copy)
    result = invoke("generate", "--model", run_copy, "--seed", 1)
    assert result.exit_code == 0 and len(result.stdout.strip().splitlines()) == 4, result.output
    assert not [p for p in run_copy.rglob("*.tmp")] and not [p for p in run_copy.rglob(".*")]


def test_read_only_export_target_keeps_the_previous_export(tiny_bundle, tmp_path, monkeypatch):
    out = tmp_path / "export"
    assert invoke("export", "--model", tiny_bundle, "--out", out, "--format", "keras").exit_code == 0
    before = {p.name: digest(p) for p in out.iterdir()}
    fail_writes_to(monkeypatch, "export", errno.EROFS)
    result = invoke("export", "--model", tiny_bundle, "--out", out, "--format", "keras", "--force")
    assert_one_line(result, f"cannot write {out}", "Read-only file system (EROFS)")
    assert {p.name: digest(p) for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


def test_quota_at_corpus_import_keeps_the_previous_corpus(tmp_path, monkeypatch):
    source, out = tmp_path / "poems.txt", tmp_path / "corpus.jsonl"
    source.write_text(POEM + "\n", encoding="utf-8")
    out.write_text("old content\n", encoding="utf-8")
    fail_writes_to(monkeypatch, "corpus.jsonl", errno.EDQUOT)
    result = invoke("corpus", "import", source, "--out", out, "--force")
    assert_one_line(result, f"cannot write {out}", "(EDQUOT)", "the previous corpus.jsonl is unchanged")
    assert out.read_text(encoding="utf-8") == "old content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl", "poems.txt"]


@pytest.mark.parametrize("hook", ["on_train_begin", "on_epoch_end"])
def test_tensorboard_write_errors_are_one_warning_and_training_goes_on(run_copy, monkeypatch, hook):
    """TensorBoard's event files are TensorFlow's own writes: a full disk there costs those logs only."""
    import keras

    from poetgen.bundle import load_bundle

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(keras.callbacks.TensorBoard, hook, full)
    result = invoke("train", "--out", run_copy, "--resume", "--epochs", 2)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if "TensorBoard" in line]
    assert len(warnings) == 1 and "No space left on device" in warnings[0] and "goes on" in warnings[0]
    assert "Traceback" not in result.output
    monkeypatch.undo()
    load_bundle(run_copy)
    assert read_state(run_copy)["state"]["epochs_done"] == 2


def test_disk_full_at_quantize_keeps_the_previous_int8_products(tiny_bundle, tmp_path, monkeypatch):
    from poetgen.generate import Generator

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle, ignore=shutil.ignore_patterns("tensorboard", "*.png"))
    assert invoke("quantize", "--model", bundle).exit_code == 0
    before = digest(bundle / "int8.npz")
    fail_writes_to(monkeypatch, "int8.npz", errno.ENOSPC)
    result = invoke("quantize", "--model", bundle)
    assert_one_line(result, f"cannot write {bundle / 'int8.npz'}", "(ENOSPC)", "the previous int8.npz is unchanged")
    assert digest(bundle / "int8.npz") == before
    assert not [p for p in bundle.iterdir() if p.name not in ("config.json", "model.keras", "tokenizer.json",
                                                            "int8.npz", "log.csv", "resume")]
    monkeypatch.undo()
    assert Generator.load(bundle).int8                    # the products kept still fit the weights


def test_a_sigterm_whose_interrupt_was_dropped_still_stops_the_write(tmp_path):
    """The handler's KeyboardInterrupt can land in a gc callback or a __del__, where Python prints and
    drops it: an export then went on and exited 0 (1 in 7 tries). The handler also records the stop,
    so no commit happens, the previous output stays, and the lock's exit raises it again."""
    import contextlib
    import signal

    from poetgen.atomic import atomic_directory, stop_asked
    from poetgen.lock import Lock

    out = tmp_path / "export"
    out.mkdir()
    (out / "keep.txt").write_text("old", encoding="utf-8")
    with pytest.raises(KeyboardInterrupt):
        with Lock.directory(tmp_path / "locked"):
            with atomic_directory(out, force=True) as tmp:
                (tmp / "keep.txt").write_text("new", encoding="utf-8")
                with contextlib.suppress(KeyboardInterrupt):   # where Python dropped it
                    signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
    assert (out / "keep.txt").read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]   # no temporary or swapped-out copy left
    assert not stop_asked() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL

    with pytest.raises(KeyboardInterrupt):   # dropped outside any write: the lock's exit raises it
        with Lock.directory(tmp_path / "locked"):
            with contextlib.suppress(KeyboardInterrupt):
                signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
    assert not stop_asked()


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm dropped"])
def test_an_export_stopped_while_its_files_are_synced_keeps_the_previous_export(tiny_bundle, tmp_path, monkeypatch,
                                                                              stop):
    """The new export's files were synced after the old export had been renamed aside: a Ctrl-C there (or
    a SIGTERM whose interrupt was dropped, raised by the commit's own check) left --out missing, the old
    export hidden in .out.*.old. Now the files are synced before anything moves."""
    out = tmp_path / "out"
    assert invoke("export", "--model", tiny_bundle, "--out", out, "--format", "keras").exit_code == 0
    before = digest(out / "model.keras")
    sync = poetgen.atomic._sync

    def interrupted(path):
        if Path(path).name == "model.keras":   # the finished directory's files, synced before the commit
            if stop == "ctrl-c":
                raise KeyboardInterrupt
            poetgen.atomic.ask_stop()
        sync(path)

    monkeypatch.setattr(poetgen.atomic, "_sync", interrupted)
    try:
        result = invoke("export", "--model", tiny_bundle, "--out", out, "--format", "keras", "--force")
    finally:
        poetgen.atomic.ask_stop(False)
    assert result.exit_code == 130, result.output
    assert digest(out / "model.keras") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]   # nothing swapped out or half-written left


def test_import_force_replaces_only_a_regular_file(tmp_path):
    """`corpus import --out /dev/null --force` replaced the device node with a regular file (as root);
    a symbolic link or a pipe at --out was replaced too, its target left behind."""
    source = tmp_path / "poems.txt"
    source.write_text(POEM + "\n", encoding="utf-8")
    target = tmp_path / "real.jsonl"
    target.write_text("keep\n", encoding="utf-8")
    link, pipe = tmp_path / "link.jsonl", tmp_path / "pipe.jsonl"
    link.symlink_to(target.name)
    os.mkfifo(pipe)
    for out, kind in ((link, "a symbolic link"), (pipe, "not a regular file")):
        for force in ("--force", "--no-force"):   # without --force too: not "pass --force to replace it"
            assert_one_line(invoke("corpus", "import", source, "--out", out, *[force][:force == "--force"]),
                            f"{out} is {kind}")
    assert link.is_symlink() and target.read_text(encoding="utf-8") == "keep\n"
    assert pipe.exists() and not pipe.is_file()
    assert invoke("corpus", "import", source, "--out", target, "--force").exit_code == 0   # a file: replaced
    assert target.read_text(encoding="utf-8") != "keep\n"


def test_paths_that_are_no_utf8_are_written_and_locked(tmp_path, monkeypatch):
    """A corpus or output name with bytes that are no UTF-8 (lone surrogates in Python) was an internal
    error in train, export and corpus import: the lock's record and config.json were written as UTF-8."""
    from poetgen.atomic import write_text

    name = os.fsdecode(b"c\xff.txt")
    source = tmp_path / name
    source.write_text(POEM + "\n", encoding="utf-8")
    monkeypatch.setattr(sys, "argv", ["poetgen", "corpus", "import", str(source)])
    result = invoke("corpus", "import", source, "--out", tmp_path / "out.jsonl")
    assert result.exit_code == 0, result.output
    write_text(tmp_path / "config.json", json.dumps({"corpus": str(source)}, ensure_ascii=False))
    assert json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))["corpus"] == str(source)
    with Lock.directory(tmp_path / os.fsdecode(b"run\xfd")):
        pass


def test_a_lock_whose_directory_another_run_creates_first_is_taken(tmp_path, monkeypatch):
    """Two runs creating the same new --out at once: the second's mkdir raised FileExistsError (an
    internal error) instead of waiting its turn at the lock."""
    out = tmp_path / "run"
    out.mkdir()
    real_exists = Path.exists
    monkeypatch.setattr(Path, "exists", lambda self, *a, **k: False if self == out else real_exists(self, *a, **k))
    with Lock.directory(out):   # it looked absent, then mkdir found it: made by the other run
        assert (out / LOCK_NAME).exists()


@pytest.mark.parametrize("content", [b"\0" * 4096, b"\0" * 200_000, b"epoch,loss\n" + b"x" * 200_000 + b"\n",
                                     b"x" * 300, b"epoch,lo" + b"\0" * 64],
                         ids=["zeros-4k", "zeros-200k", "huge-field", "no-header", "torn-header-zeros"])
def test_a_log_of_zeros_or_huge_fields_is_one_line(run_copy, content):
    """A zero-filled log.csv (a crash's unwritten blocks) was an internal error (csv's field limit), or at
    4 KiB was taken for a torn header, and the next log began with 4,096 zero bytes."""
    (run_copy / "log.csv").write_bytes(content)
    assert_one_line(invoke("train", "--out", run_copy, "--resume", "--epochs", 2), "log.csv",
                    "training log is corrupt", "move it away")
    assert (run_copy / "log.csv").read_bytes() == content


def test_a_log_whose_torn_last_line_is_zeros_is_repaired(run_copy):
    """Zeros after the last newline are a torn last line, as any other: dropped on --resume, not refused."""
    log = run_copy / "log.csv"
    log.write_bytes(log.read_bytes() + b"\0" * 64)
    result = invoke("train", "--out", run_copy, "--resume", "--epochs", 2)
    assert result.exit_code == 0, result.output
    assert b"\0" not in log.read_bytes() and log.read_text().splitlines()[0].startswith("epoch")


def test_taking_over_a_stale_lock_removes_the_temporary_files_its_holder_left(tmp_path):
    """`kill -9` of an export or import left `.esm.8cc9b4ng.tmp/` (tens of MB for the shipped model) or
    `.big.jsonl.gz.….tmp` for good: the run that took the stale lock over kept them."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = json.dumps({"pid": dead.pid, "host": socket.gethostname(), "command": "poetgen export", "since": 0})
    out = tmp_path / "esm"
    out.mkdir()
    (out / LOCK_NAME).write_text(record)
    (tmp_path / ".esm.8cc9b4ng.tmp").mkdir()   # atomic_directory's
    (tmp_path / ".esm.8cc9b4ng.tmp" / "saved_model.pb").write_bytes(b"x")
    (out / ".model.x1b2c3d4.keras").write_bytes(b"x")     # Staged's, as save_bundle writes them
    (out / ".config.k_9m2p0q.json").write_bytes(b"x")
    (out / ".log.csv.abcdefgh.tmp").write_bytes(b"x")     # atomic_write's
    (out / "model.keras").write_bytes(b"kept")
    (out / "resume").mkdir()                               # the resume state, saved at each epoch's end
    (out / "resume" / ".last-3.a1b2c3d4.keras").write_bytes(b"x")
    (out / "resume" / ".state.json.z9y8x7w6.tmp").write_bytes(b"x")
    (out / "resume" / "state.json").write_bytes(b"kept")
    (out / "reverse").mkdir()                              # another run's, under its own lock: left alone
    (out / "reverse" / LOCK_NAME).write_text("{}")
    (out / "reverse" / ".model.q1w2e3r4.keras").write_bytes(b"being written")
    (tmp_path / ".esm.v2.abcdefgh.tmp").mkdir()            # another export's (to esm.v2, under its own lock)
    (tmp_path / ".esm.q1w2e3r4.old").mkdir()               # a replaced output not yet removed: left alone
    (out / ".reverse.q1w2e3r4.old").mkdir()                # the same inside: maybe the only copy of reverse/
    with Lock.directory(out, notice=lambda _: None):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == [".esm.q1w2e3r4.old", ".esm.v2.abcdefgh.tmp", "esm"]
    assert sorted(p.name for p in out.iterdir()) == [".reverse.q1w2e3r4.old", "model.keras", "resume", "reverse"]
    assert (out / "reverse" / ".model.q1w2e3r4.keras").exists()
    assert [p.name for p in (out / "resume").iterdir()] == ["state.json"]
    corpus = tmp_path / "big.jsonl.gz"
    corpus.with_name(".big.jsonl.gz.lock").write_text(record)
    corpus.with_name(".big.jsonl.gz.x1y2z3w4.tmp").write_bytes(b"half")
    with Lock.file(corpus, notice=lambda _: None):
        pass
    assert not corpus.with_name(".big.jsonl.gz.x1y2z3w4.tmp").exists()


def test_a_lock_is_taken_on_the_file_at_its_path_and_its_release_removes_only_its_own(tmp_path, monkeypatch):
    """The holder before us may unlink the lock file between our open and our flock: the lock must then be
    taken again on the file at the path, or two runs hold it at once. And a release whose lock file was
    replaced (a folder swapped under it) must leave the other run's file."""
    import fcntl

    import poetgen.lock

    out = tmp_path / "run"
    real, calls = fcntl.flock, []

    def racing(fd, operation):   # the first flock comes just after the holder unlinked the file
        if not calls:
            os.unlink(out / LOCK_NAME)
        calls.append(fd)
        return real(fd, operation)

    monkeypatch.setattr(poetgen.lock.fcntl, "flock", racing)
    lock = Lock.directory(out)
    lock.acquire()
    try:
        assert len(calls) >= 2 and os.stat(out / LOCK_NAME).st_ino == os.fstat(lock.fd).st_ino
    finally:
        lock.release()
    monkeypatch.setattr(poetgen.lock.fcntl, "flock", real)
    with Lock.directory(out):
        os.unlink(out / LOCK_NAME)
        (out / LOCK_NAME).write_text('{"pid": 1}')   # another run's lock, in a folder swapped in
    assert (out / LOCK_NAME).read_text() == '{"pid": 1}'


def test_no_write_is_committed_once_a_stop_was_asked(tmp_path):
    """A SIGTERM's KeyboardInterrupt can be swallowed where it lands (a gc callback); the stop it asked is
    recorded, and no file write, nor a staged set of files, is then put in place: the old files stay whole
    and no temporary file is left."""
    from poetgen.atomic import ask_stop, staged

    (tmp_path / "a.txt").write_text("old a")
    (tmp_path / "b.txt").write_text("old b")
    ask_stop()
    try:
        with pytest.raises(KeyboardInterrupt):
            poetgen.atomic.write_text(tmp_path / "a.txt", "new a")
        with pytest.raises(KeyboardInterrupt):
            with staged() as stage:
                stage.text(tmp_path / "a.txt", "new a")
                stage.text(tmp_path / "b.txt", "new b")
    finally:
        ask_stop(False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]
    assert ((tmp_path / "a.txt").read_text(), (tmp_path / "b.txt").read_text()) == ("old a", "old b")
    poetgen.atomic.write_text(tmp_path / "a.txt", "new a")   # asked no more: written
    assert (tmp_path / "a.txt").read_text() == "new a"


def test_written_files_take_the_umask_not_mkstemps_private_mode(tmp_path):
    """mkstemp makes 0600 files: an output others share (a corpus, a bundle) would be unreadable to them."""
    old = os.umask(0o022)
    try:
        poetgen.atomic.write_text(tmp_path / "a.txt", "x")
        with poetgen.atomic.atomic_write(tmp_path / "b.bin") as stream:
            stream.write(b"x")
    finally:
        os.umask(old)
    assert {oct(os.stat(tmp_path / name).st_mode & 0o777) for name in ("a.txt", "b.bin")} == {oct(0o644)}


def test_a_write_failure_into_a_new_folder_claims_no_previous_output(tmp_path):
    """A tflite export into a new --out on a full disk said "the previous OUT is unchanged": the folder
    existed only because the run's lock had made it."""
    from poetgen.atomic import write_failed

    out = tmp_path / "export"
    with Lock.directory(out):
        message = str(write_failed(out, OSError(errno.ENOSPC, "No space left on device")))
    assert message.endswith("nothing was written"), message
    out.mkdir()   # (the lock removed the folder it made)
    (out / "model.tflite").write_bytes(b"x")
    assert str(write_failed(out, OSError(errno.ENOSPC, "full"))).endswith("the previous export is unchanged")


def with_stdout(redirect: str, *args, stdin: str | None = None):
    """`poetgen ARGS` run by a shell with its standard output redirected (`>&-` closes it)."""
    command = " ".join(f"'{a}'" for a in [sys.executable, "-m", "poetgen", *args])
    return subprocess.run(["sh", "-c", f"{command} {redirect}"], capture_output=True, text=True, input=stdin)


def test_a_closed_standard_output_is_an_error_not_a_silent_success(tiny_bundle):
    """With fd 1 closed (`>&-`) Python leaves sys.stdout None and print() drops the poems: exit 0, no word."""
    for args in (["tunes", "浣溪沙"], ["generate", "--model", str(tiny_bundle), "--seed", "1"], ["corpus", "stats"]):
        result = with_stdout(">&-", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.strip() == "poetgen: error: standard output is closed: nowhere to write the result"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_standard_output_failing_after_the_files_are_written_says_so(tiny_bundle, tmp_path):
    """A command whose result is files writes them, then says so on stdout: `> /dev/full` read "No space
    left on device", as if the files had failed, and `>&-` was silent, exit 0. Each is now one line naming
    standard output and the files, which are whole."""
    source, out = tmp_path / "poems.txt", tmp_path / "out.jsonl"
    source.write_text(POEM + "\n", encoding="utf-8")
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    for args, written in ((["corpus", "import", source, "--out", out, "--force"], [out]),
                          (["quantize", "--model", bundle], [bundle / "int8.npz"])):
        for redirect, reason in (("> /dev/full", "No space left on device (ENOSPC)"), (">&-", "it is closed")):
            for path in written:
                path.unlink(missing_ok=True)
            result = with_stdout(redirect, *args)
            assert result.returncode == 2, (args, redirect, result.stderr)
            assert result.stderr.strip() == (f"poetgen: error: cannot write standard output: {reason}; "
                                             f"{', '.join(map(str, written))} is written whole"), result.stderr
            assert all(path.stat().st_size for path in written)
    assert json.loads(out.read_text(encoding="utf-8"))["text"] == POEM


def test_corpus_import_s_warnings_reach_stderr_when_standard_output_fails(tmp_path):
    """corpus import's warnings about its data (poems read as Tang, blocks read as one poem) came after the
    summary on stdout: with that closed or full, the error stopped the command first and they were lost."""
    source, out = tmp_path / "poems.jsonl", tmp_path / "out.jsonl"
    source.write_text(json.dumps({"text": POEM, "dynasty": "明"}, ensure_ascii=False) + "\n", encoding="utf-8")
    for redirect in ("> /dev/full", ">&-") if os.path.exists("/dev/full") else (">&-",):
        out.unlink(missing_ok=True)
        result = with_stdout(redirect, "corpus", "import", source, "--out", out)
        assert result.returncode == 2, (redirect, result.stderr)
        warning, error = result.stderr.splitlines()
        assert warning.startswith("poetgen: warning: 1 poems whose dynasty is none of") and "read as Tang" in warning
        assert error.startswith("poetgen: error: cannot write standard output: ") and error.endswith("written whole")


STOPPED_RUN = """
import sys
from pathlib import Path
import poetgen.api as api, poetgen.cli_model as commands
from poetgen.cli import main
commands.import_tensorflow = lambda: None   # a run that Ctrl-C stopped after its first better epoch, saved
api.train = lambda config, **_: api.TrainResult(Path(config.out), 1, 1, 42.0, True)
main()
"""


def test_a_stopped_run_exits_130_whatever_standard_output_does(tmp_path):
    """A stopped run exits 130, which tells a script to resume it; with its standard output closed or full
    the line naming the bundle failed first, and the run exited 2, as a run that failed."""
    for redirect in ("> /dev/full", ">&-") if os.path.exists("/dev/full") else (">&-",):
        command = " ".join(f"'{a}'" for a in [sys.executable, "-c", STOPPED_RUN, "train", "--out", tmp_path / "run"])
        result = subprocess.run(["sh", "-c", f"{command} {redirect}"], capture_output=True, text=True)
        assert result.returncode == 130, (redirect, result.stderr)
        assert result.stderr.startswith("poetgen: warning: cannot write standard output: "), result.stderr
        assert f"{tmp_path / 'run'} is written whole" in result.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_standard_output_failing_under_a_result_says_so(tiny_bundle, tmp_path):
    """A command whose result is its standard output said only "No space left on device" under `> /dev/full`,
    naming nothing; it now names standard output, exit 2, an interactive session included."""
    source = tmp_path / "poems.txt"
    source.write_text(POEM + "\n", encoding="utf-8")
    model = ["--model", tiny_bundle]
    for args, stdin in ((["generate", *model, "--seed", "1"], None),
                        (["generate", *model, "--seed", "1", "--format", "json"], None),
                        (["generate", *model, "--seed", "1", "--interactive"], "春\n秋\n"),
                        (["check", POEM], None), (["check", "--format", "json", POEM], None),
                        (["tunes", "浣溪沙"], None), (["corpus", "stats", source], None),
                        (["-q", "evaluate", *model, "--corpus", source, "--samples", "1"], None)):
        result = with_stdout("> /dev/full", *args, stdin=stdin)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.strip() == "poetgen: error: cannot write standard output: No space left on device (ENOSPC)", \
            (args, result.stderr)


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json"])
def test_a_bundle_file_that_is_no_regular_file_is_named_not_read_whole(tiny_bundle, tmp_path, name):
    """config.json as a link to /dev/zero was read whole: MemoryError or the kernel's OOM killer; a pipe
    blocked the open. Each is now a corrupt file, named in one line."""
    for damage in ("zero", "pipe"):
        bundle = tmp_path / damage
        shutil.copytree(tiny_bundle, bundle)
        (bundle / name).unlink()
        if damage == "zero":
            (bundle / name).symlink_to("/dev/zero")
        else:
            os.mkfifo(bundle / name)
        result = CliRunner().invoke(cli, ["generate", "--model", str(bundle), "--seed", "1"])
        assert result.exit_code == 2 and "not a regular file" in result.output, result.output
        assert result.output.strip().splitlines() == [result.output.strip()]
        assert f"{bundle / name}: corrupt" in result.output and result.output.count(str(bundle / name)) == 1


def test_a_bundle_file_larger_than_any_config_is_refused_before_it_is_read(tiny_bundle, tmp_path, monkeypatch):
    import poetgen.atomic

    monkeypatch.setattr(poetgen.atomic, "MAX_SMALL_FILE", 100)
    result = CliRunner().invoke(cli, ["generate", "--model", str(tiny_bundle), "--seed", "1"])
    assert result.exit_code == 2 and "config.json: corrupt config (larger than" in result.output, result.output


# ---- a reviewer's findings (2026-11-28) -------------------------------------------------------------

def test_a_users_own_config_json_is_never_replaced_and_an_empty_out_is_refused(tiny_corpus, tmp_path):
    """A folder with a config.json that no poetgen run wrote was told to --resume (nothing there) or
    --force, and --force replaced the file; `--out ""` trained into the current directory."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.json").write_text('{"my": "config"}', encoding="utf-8")
    for extra in ((), ("--force",)):
        assert_one_line(invoke("train", "--corpus", tiny_corpus, "--out", folder, "--epochs", 1, *RUN_ARGS, *extra),
                        "is not a poetgen run's", "choose a new or empty --out")
    assert (folder / "config.json").read_text(encoding="utf-8") == '{"my": "config"}'
    assert sorted(p.name for p in folder.iterdir()) == ["config.json"]
    assert_one_line(invoke("train", "--corpus", tiny_corpus, "--out", "", "--epochs", 1, *RUN_ARGS), "--out")


def test_resuming_on_a_changed_corpus_starts_its_held_out_score_afresh(run_copy, tmp_path):
    """The held-out poems of another corpus are others: the old best was no yardstick (the new epochs were
    never kept, and config.json kept the old corpus); the warning says how much of it the vocabulary lacks."""
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in shipped_records(600)[200:]),
                     encoding="utf-8")
    before = json.loads((run_copy / "config.json").read_text(encoding="utf-8"))
    result = invoke("train", "--out", run_copy, "--resume", "--epochs", 2, "--corpus", other)
    assert result.exit_code == 0, result.output
    assert "the corpus changed" in result.stderr
    share = re.search(r"([0-9.]+)% of its training characters unknown to the run's vocabulary", result.stderr)
    assert share and 0 < float(share.group(1)) < 50   # its characters only: not the boundaries and controls
    after = json.loads((run_copy / "config.json").read_text(encoding="utf-8"))
    assert after["corpus"]["hash"] != before["corpus"]["hash"] and after["corpus"]["path"] == str(other)
    assert after["metrics"]["best_epoch"] == 2


def test_a_forced_retrain_sets_aside_a_reverse_model_of_the_old_vocabulary(run_copy, tmp_path):
    """`train --force` with another vocabulary kept reverse/, and every later load refused the bundle."""
    shutil.copytree(run_copy, run_copy / "reverse", ignore=shutil.ignore_patterns("resume", "tensorboard", "log.csv"))
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in shipped_records(400)[::-1]),
                     encoding="utf-8")
    result = invoke("train", "--corpus", other, "--out", run_copy, "--force", "--epochs", 1, *RUN_ARGS)
    assert result.exit_code == 0, result.output
    assert "set aside as reverse.stale" in result.stderr
    assert not (run_copy / "reverse").exists() and (run_copy / "reverse.stale" / "model.keras").is_file()
    assert not (run_copy / "reverse.stale" / LOCK_NAME).exists()   # its lock went with it, and was released there
    assert invoke("generate", "--model", run_copy, "--seed", 1).exit_code == 0
    # one of the same vocabulary stays where it is
    shutil.copytree(run_copy, run_copy / "reverse", ignore=shutil.ignore_patterns("resume", "tensorboard", "log.csv",
                                                                                 "reverse.stale"))
    result = invoke("train", "--corpus", other, "--out", run_copy, "--force", "--epochs", 1, *RUN_ARGS)
    assert result.exit_code == 0 and "set aside" not in result.stderr, result.output
    assert (run_copy / "reverse" / "model.keras").is_file() and not (run_copy / "reverse.stale-2").exists()


def test_a_reverse_model_another_run_holds_is_not_set_aside_and_said_once_a_run(run_copy, tmp_path):
    """A run writing reverse/ (`train --reverse --out B/reverse`) holds its lock: a forced retrain of B
    leaves the folder to it, and says so once, though the bundle is saved at every better epoch (each
    save said it again)."""
    shutil.copytree(run_copy, run_copy / "reverse", ignore=shutil.ignore_patterns("resume", "tensorboard", "log.csv"))
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in shipped_records(400)[::-1]),
                     encoding="utf-8")
    with Lock.directory(run_copy / "reverse"):
        result = invoke("train", "--corpus", other, "--out", run_copy, "--force", "--epochs", 3, *RUN_ARGS)
    assert result.exit_code == 0, result.output
    assert "another run holds it" in result.stderr and "set aside as" not in result.stderr, result.stderr
    assert (run_copy / "reverse" / "model.keras").is_file() and not (run_copy / "reverse.stale").exists()
    saves = [line for line in result.stderr.splitlines()
             if (m := re.match(r"epoch (\d+): .*\(best [0-9.]+ at epoch (\d+)\)", line)) and m[1] == m[2]]
    assert len(saves) >= 2, result.stderr   # the bundle was saved more than once
    assert result.stderr.count("another run holds it") == 1, result.stderr


def test_resume_messages_name_switches_and_a_lost_corpus(run_copy, tmp_path):
    assert_one_line(invoke("train", "--out", run_copy, "--resume", "--epochs", 3, "--conditioned"),
                    "the run used no --conditioned (not --conditioned)")
    state_path = run_copy / "resume" / "state.json"
    state = json.loads(state_path.read_text(encoding="utf-8"))
    state["train"]["corpus"] = str(tmp_path / "gone.jsonl")
    state_path.write_text(json.dumps(state), encoding="utf-8")
    assert_one_line(invoke("train", "--out", run_copy, "--resume", "--epochs", 3), "the run's corpus",
                    "gone.jsonl is gone: pass --corpus")



# ---- the order of an epoch's saves -----------------------------------------------------------------

def test_a_full_disk_at_a_runs_first_resume_save_leaves_no_bundle_it_cannot_resume(tiny_corpus, tmp_path,
                                                                                    monkeypatch):
    """The state is saved before the bundle: a first state that cannot be written leaves no bundle of an
    epoch --resume could not go on from (it held one, and the directory was refused without --force)."""
    out = tmp_path / "run"
    fail_writes_to(monkeypatch, "state.json", errno.ENOSPC)
    result = invoke("train", "--corpus", tiny_corpus, "--out", out, "--epochs", 1, *RUN_ARGS)
    assert_one_line(result, f"cannot write {out / 'resume' / 'state.json'}", "(ENOSPC)")
    monkeypatch.undo()
    assert not (out / "config.json").exists()
    assert_one_line(invoke("train", "--out", out, "--resume"), "nothing was saved there yet")
    result = invoke("train", "--corpus", tiny_corpus, "--out", out, "--epochs", 1, *RUN_ARGS)   # no --force
    assert result.exit_code == 0, result.output
    assert read_state(out)["state"]["epochs_done"] == 1


def test_a_bundle_that_failed_after_its_state_was_saved_is_written_again_on_resume(tiny_corpus, tmp_path,
                                                                                  monkeypatch):
    """A full disk (or a kill) between the state and the bundle of an improved epoch: --resume writes
    the bundle from the resume model, which is that epoch's, also when no epoch is left to train."""
    from poetgen.bundle import load_bundle

    out = tmp_path / "run"
    fail_writes_to(monkeypatch, "model.keras", errno.ENOSPC)
    result = invoke("train", "--corpus", tiny_corpus, "--out", out, "--epochs", 1, *RUN_ARGS)
    assert_one_line(result, f"cannot write {out / 'model.keras'}", "(ENOSPC)")
    monkeypatch.undo()
    assert not (out / "config.json").exists() and read_state(out)["state"]["epochs_done"] == 1
    result = invoke("train", "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    assert "written again" in result.stderr and "best held-out perplexity" in result.stdout
    bundle = load_bundle(out)
    state = read_state(out)["state"]
    assert bundle.config["metrics"]["best_epoch"] == 1 and bundle.config["metrics"]["best_val_loss"] == state["best_val_loss"]
    result = invoke("train", "--out", out, "--resume", "--epochs", 2)   # and goes on as any run
    assert result.exit_code == 0 and "written again" not in result.stderr, result.output
    assert read_state(out)["state"]["epochs_done"] == 2


def test_a_config_that_failed_after_an_unimproved_epochs_state_is_written_again_on_resume(run_copy, monkeypatch):
    fail_writes_to(monkeypatch, "config.json", errno.ENOSPC)
    result = invoke("train", "--out", run_copy, "--resume", "--epochs", 2, "--learning-rate", "1e-12")
    assert_one_line(result, f"cannot write {run_copy / 'config.json'}", "(ENOSPC)")
    monkeypatch.undo()
    metrics = json.loads((run_copy / "config.json").read_text())["metrics"]
    assert read_state(run_copy)["state"]["epochs_done"] == 2
    result = invoke("train", "--out", run_copy, "--resume")
    assert result.exit_code == 0 and "written again" in result.stderr, result.output
    config = json.loads((run_copy / "config.json").read_text())
    assert config["progress"]["epochs_done"] == 2 and config["metrics"] == metrics   # its best model is kept


def test_a_quantized_bundle_trained_on_gets_its_int8_products_converted_again(run_copy):
    state_path = run_copy / "resume" / "state.json"
    state = json.loads(state_path.read_text())
    state["state"]["best_val_loss"] = 1e9          # the next epoch improves, so model.keras is written
    state_path.write_text(json.dumps(state))
    assert invoke("quantize", "--model", run_copy).exit_code == 0
    before = digest(run_copy / "int8.npz")
    result = invoke("train", "--out", run_copy, "--resume", "--epochs", 2)
    assert result.exit_code == 0, result.output
    assert digest(run_copy / "int8.npz") != before
    result = invoke("generate", "--model", run_copy, "--seed", 1)
    assert result.exit_code == 0 and len(result.stdout.strip().splitlines()) == 4, result.output
    assert "int8" not in result.stderr and "quantize" not in result.stderr, result.stderr


@pytest.mark.parametrize("force", [True, False])
def test_a_run_killed_before_its_first_save_leaves_no_events_beside_the_next_runs(tiny_corpus, tmp_path, force):
    out = tmp_path / "run"
    killed = out / "tensorboard" / "train" / "events.out.tfevents.1.killed.v2"   # all such a run leaves
    killed.parent.mkdir(parents=True)
    killed.write_bytes(b"events")
    result = invoke("train", "--corpus", tiny_corpus, "--out", out, "--epochs", 1, *RUN_ARGS,
                    *(["--force"] if force else []))
    assert result.exit_code == 0, result.output
    assert not killed.exists() and list((out / "tensorboard" / "train").glob("events.out.tfevents.*"))
