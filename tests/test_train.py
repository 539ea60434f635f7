"""Training: bundle contents, resume after kill -9 and SIGTERM, refusals, MirroredStrategy."""

import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import TINY_TRAIN, assert_h5py_bundle_steps_like_keras, kill_after_save, wait_until
from poetgen.cli import cli

TRAIN_ARGS = ["--units", "48", "--embedding-dim", "32", "--batch-size", "16", "--seq-len", "32",
              "--learning-rate", "0.01", "--warmup-steps", "10", "--val-split", "0.05", "--no-sample"]


def poetgen(*args, env=None, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "poetgen", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}, **kwargs)


def test_bundle_contents(tiny_bundle):
    names = {p.name for p in tiny_bundle.iterdir()}
    assert {"model.keras", "tokenizer.json", "config.json", "log.csv", "curves.png", "tensorboard",
            "resume"} <= names
    config = json.loads((tiny_bundle / "config.json").read_text(encoding="utf-8"))
    assert config["model"]["units"] == TINY_TRAIN["units"]
    assert config["train"]["epochs"] == 2 and config["train"]["learning_rate"] == TINY_TRAIN["learning_rate"]
    assert config["corpus"]["hash"] and config["tokenizer_hash"]
    assert set(config["versions"]) >= {"keras", "tensorflow", "poetgen"}
    assert config["progress"]["epochs_done"] == 2 and config["progress"]["tokens_seen"] == 2 * 60 * 16 * 32
    assert config["metrics"]["best_val_perplexity"] > 1
    assert len((tiny_bundle / "log.csv").read_text().splitlines()) == 3
    assert (tiny_bundle / "curves.png").read_bytes()[:4] == b"\x89PNG"


def _wait_for(path: Path, timeout=240):
    wait_until(path.exists, f"{path} appearing", timeout, poll=0.2)


def _epochs_done(out: Path) -> int:
    """epochs_done of a run's resume state as it is on disk now (0 before the first is written)."""
    try:
        return json.loads((out / "resume" / "state.json").read_text())["state"]["epochs_done"]
    except (FileNotFoundError, ValueError):   # not written yet (the state is replaced atomically)
        return 0


def test_kill_9_then_resume_continues(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--corpus", str(tiny_corpus), "--out", str(out), "--steps-per-epoch", "40", *TRAIN_ARGS]
    process = poetgen(*args, "--epochs", "500")   # far too long to finish before the kill below
    try:
        # the bundle is saved after the epoch's state (a kill between the two: the resume writes it again,
        # test_faults.py); here the kill comes once both are
        wait_until(lambda: (_epochs_done(out) >= 1 and (out / "model.keras").exists()) or process.poll() is not None,
                   "an epoch finishing", 240, poll=0.2)
    finally:
        process.kill()                           # during epoch 2 or later, whenever the first is saved
        process.wait()
    done = _epochs_done(out)
    assert done >= 1, process.stderr.read()
    model_before = (out / "model.keras").read_bytes()
    assert model_before[:2] == b"PK"       # the best model is whole
    without_corpus = args[:1] + args[3:]            # --resume continues on the run's own corpus
    target = done + 1
    resumed = subprocess.run([sys.executable, "-m", "poetgen", *without_corpus, "--epochs", str(target), "--resume"],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"epochs {done + 1}..{target}" in resumed.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["progress"]["epochs_done"] == target
    assert config["corpus"]["path"] == str(tiny_corpus)
    assert len((out / "log.csv").read_text().splitlines()) == 1 + target


def test_sigterm_stops_cleanly_and_says_how_to_resume(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    process = poetgen("train", "--corpus", str(tiny_corpus), "--out", str(out), "--epochs", "50",
                      "--steps-per-epoch", "40", *TRAIN_ARGS)
    _wait_for(out / "resume" / "state.json")
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr   # saved, but not done: `train && quantize` must not go on
    assert "--resume" in stderr and "Traceback" not in stderr
    assert (out / "model.keras").exists() and stdout.startswith("best held-out perplexity")
    state = json.loads((out / "resume" / "state.json").read_text())["state"]
    # within epoch 2, or at its start when the signal came while epoch 1's end was being saved
    where = (f"step {state['step_in_epoch']} of epoch {state['epochs_done'] + 1}" if state["step_in_epoch"]
             else f"{state['epochs_done']} epochs")
    assert f"stopped at {where}; saved" in stderr
    config = json.loads((out / "config.json").read_text())
    # the epoch the stop cut short is neither measured nor logged: best and log stay with finished epochs
    assert config["metrics"]["best_epoch"] <= state["epochs_done"]
    assert len((out / "log.csv").read_text().splitlines()) == 1 + state["epochs_done"]


def at_batch(n: int, action):
    """A callback that runs `action(model)` once, after the `n`-th batch of a run (counted over its fits)."""
    import keras

    class Callback(keras.callbacks.Callback):
        seen = 0

        def on_train_batch_end(self, batch, logs=None):
            Callback.seen += 1
            if Callback.seen == n:
                action(self.model)

    return Callback()


def StopAtBatch(n: int):
    """SIGTERM to this process after the `n`-th batch of a run: a user's kill at a known step. The signal is
    the run's own stop path; the batch is the observed event."""
    return at_batch(n, lambda model: os.kill(os.getpid(), signal.SIGTERM))


def test_a_run_stopped_within_an_epoch_resumes_at_that_step_exactly(tiny_corpus, tmp_path, caplog, capsys):
    """A stop in epoch 1 saves step, weights, optimizer and dropout seeds; the resumed run finishes the
    epoch's remaining steps on the very windows an unstopped run saw, so held-out losses are identical."""
    import poetgen

    options = dict(corpus=str(tiny_corpus), units=48, embedding_dim=32, batch_size=16, seq_len=32,
                   learning_rate=0.01, warmup_steps=10, val_split=0.05, steps_per_epoch=20, epochs=2,
                   embedding_dropout=0.1)
    straight = poetgen.train(out=str(tmp_path / "straight"), **options)
    assert not straight.stopped and straight.epochs_done == 2
    from poetgen.callbacks import sample_callback

    # with the per-epoch sample too, as `poetgen train` runs by default: the cut epoch has no bundle to sample
    caplog.set_level(logging.INFO, logger="poetgen")   # Keras's progress lines too, as the CLI shows them
    capsys.readouterr()
    stopped = poetgen.train(out=str(tmp_path / "stopped"), callbacks=[sample_callback(tmp_path / "stopped"),
                                                                     StopAtBatch(7)], **options)
    assert stopped.stopped and stopped.epochs_done == 0 and stopped.best_epoch is None
    saved = json.loads((tmp_path / "stopped" / "resume" / "state.json").read_text())
    # the signal lands after batch 7's stop check, so the run stops after batch 8
    assert saved["state"]["step_in_epoch"] == 8 and saved["state"]["tokens_seen"] == 8 * 16 * 32
    assert saved["seed_states"] and not (tmp_path / "stopped" / "model.keras").exists()
    progress = capsys.readouterr().out   # (Keras's, on sys.stdout) the cut epoch's line ends at its step, not 20/20
    assert " 8/20 - " in progress and "20/20" not in progress, progress
    with pytest.raises(poetgen.BadInput, match="saved progress"):   # a plain rerun must not replace it
        poetgen.train(out=str(tmp_path / "stopped"), **options)
    resumed = poetgen.train(out=str(tmp_path / "stopped"), resume=True, epochs=2)
    assert not resumed.stopped and resumed.epochs_done == 2
    progress = capsys.readouterr().out   # the rest of epoch 1, then the whole of epoch 2
    assert "12/12 - " in progress and "20/20 - " in progress, progress
    # headed by the run's epochs: the cut epoch's own fit read "Epoch 1/1" before "Epoch 2/2"
    assert re.findall(r"Epoch \d+/\d+", progress) == ["Epoch 1/2", "Epoch 2/2"], progress

    def held_out(run):
        header, *rows = (tmp_path / run / "log.csv").read_text().splitlines()
        column = header.split(",").index("val_loss")
        return [float(row.split(",")[column]) for row in rows]

    assert held_out("stopped") == pytest.approx(held_out("straight"), rel=1e-6, abs=0)
    config = json.loads((tmp_path / "stopped" / "config.json").read_text())
    assert config["progress"]["tokens_seen"] == 2 * 20 * 16 * 32


def test_a_signal_after_the_last_batch_is_not_a_stop_and_a_callbacks_stop_is_saved(tiny_corpus, tmp_path):
    """A signal while the final epoch is scored and saved changes nothing: the run is complete (it
    exited 130 and offered a --resume that refused). A caller's callback that stops the cut epoch of a
    resumed run (EarlyStopping, TerminateOnNaN) is a stop like a signal: saved at its step, no more fits."""
    import keras

    import poetgen

    options = dict(corpus=str(tiny_corpus), units=32, embedding_dim=16, batch_size=16, seq_len=32,
                   warmup_steps=2, val_split=0.05, steps_per_epoch=6)

    class SignalAtTheEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            os.kill(os.getpid(), signal.SIGTERM)

    done = poetgen.train(out=str(tmp_path / "a"), epochs=1, callbacks=[SignalAtTheEnd()], **options)
    assert not done.stopped and done.epochs_done == 1

    cut = poetgen.train(out=str(tmp_path / "b"), epochs=3, callbacks=[StopAtBatch(2)], **options)
    assert cut.stopped and json.loads((tmp_path / "b" / "resume" / "state.json").read_text())["state"][
        "step_in_epoch"] == 3

    class HaltAfterTwo(keras.callbacks.Callback):
        seen = 0

        def on_train_batch_end(self, batch, logs=None):
            HaltAfterTwo.seen += 1
            if HaltAfterTwo.seen == 2:
                self.model.stop_training = True

    halted = poetgen.train(out=str(tmp_path / "b"), resume=True, epochs=3, callbacks=[HaltAfterTwo()])
    state = json.loads((tmp_path / "b" / "resume" / "state.json").read_text())["state"]
    assert halted.stopped and state["epochs_done"] == 0 and state["step_in_epoch"] == 5
    assert state["tokens_seen"] == 5 * 16 * 32


def test_the_largest_seed_resumes_and_a_seed_out_of_range_is_one_line(tiny_corpus, tmp_path):
    """A resumed run reseeds with seed + steps; numpy takes seeds below 2**32 only (it failed at resume)."""
    import poetgen

    options = dict(corpus=str(tiny_corpus), units=16, embedding_dim=8, batch_size=16, seq_len=32,
                   warmup_steps=1, val_split=0.05, steps_per_epoch=2, seed=2**32 - 1)
    poetgen.train(out=str(tmp_path / "run"), epochs=1, **options)
    assert poetgen.train(out=str(tmp_path / "run"), resume=True, epochs=2).epochs_done == 2
    for seed in ("-1", str(2**32)):
        result = CliRunner().invoke(cli, ["train", "--out", str(tmp_path / "other"), "--seed", seed])
        assert result.exit_code == 2 and "seed" in result.output and "Traceback" not in result.output


def test_every_stride_is_trained_on_and_batches_are_numbered_from_the_start():
    """A pass drops the strides that do not fill a batch: other ones each pass (cutting them before the
    shuffle dropped the corpus's last poems from every pass)."""
    from poetgen.windows import training_dataset

    seq_len, batch = 32, 16
    stream = np.arange(31 * seq_len + 2 * seq_len + 1, dtype=np.int32)   # 31 strides: one batch a pass, 15 left
    dataset, windows = training_dataset(stream, batch, seq_len, seed=5)
    assert windows == 31
    seen = {int(w[0]) // seq_len for inputs, _ in dataset.take(20) for w in inputs.numpy()}
    assert seen == set(range(31))
    later, _ = training_dataset(stream, batch, seq_len, seed=5, start=7)
    first = [inputs.numpy() for inputs, _ in dataset.take(10)]
    assert all((a == b).all() for a, b in zip(first[7:], [x.numpy() for x, _ in later.take(3)]))


def test_seed_states_that_do_not_fit_are_one_line_naming_the_state(tmp_path):
    from poetgen.errors import BadModel
    from poetgen.model import ModelConfig, build_model
    from poetgen.resume import restore_seed_states, seed_states

    model = build_model(ModelConfig(vocab_size=12, units=4, embedding_dim=4, dropout=0.1))
    states = seed_states(model)
    assert states and all(len(v) == 2 for v in states.values())
    restore_seed_states(model, {k: [7, 1] for k in states}, tmp_path / "state.json")
    assert set(map(tuple, seed_states(model).values())) == {(7, 1)}
    for bad in ([1, 2, 3], [2**70, 0]):
        with pytest.raises(BadModel, match="state.json: resume state is corrupt .seed_states"):
            restore_seed_states(model, {k: bad for k in states}, tmp_path / "state.json")


def test_kill_9_within_a_long_epoch_loses_only_the_steps_since_the_last_save(tiny_corpus, tmp_path):
    """--checkpoint-minutes saves within an epoch (here after nearly every step): after kill -9, --resume
    goes on from the saved step of the unfinished epoch, not from its start."""
    out = tmp_path / "run"
    args = ["train", "--corpus", str(tiny_corpus), "--out", str(out), *TRAIN_ARGS]
    process = poetgen(*args, "--steps-per-epoch", "100000", "--epochs", "1", "--checkpoint-minutes", "0.0001")

    def saved_step() -> int:
        try:
            return json.loads((out / "resume" / "state.json").read_text())["state"]["step_in_epoch"]
        except (FileNotFoundError, ValueError):
            return 0

    step = kill_after_save(process, saved_step, 3)
    assert step >= 3, process.stderr.read()
    assert not (out / "model.keras").exists() and not (out / "log.csv").exists()   # no epoch finished
    resumed = subprocess.run([sys.executable, "-m", "poetgen", "train", "--out", str(out), "--resume",
                              "--steps-per-epoch", str(step + 5), "--checkpoint-minutes", "0"],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"epoch 1 from step {step}" in resumed.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["progress"]["epochs_done"] == 1 and config["progress"]["tokens_seen"] == (step + 5) * 16 * 32
    assert len((out / "log.csv").read_text().splitlines()) == 2


def test_interval_is_due_once_its_time_has_passed_since_the_last_restart():
    from poetgen.callbacks import Interval

    now = [100.0]
    interval = Interval(60, clock=lambda: now[0])
    now[0] = 159.9
    assert not interval.due()
    now[0] = 160.0
    assert interval.due()
    interval.restart()
    assert not interval.due()
    assert not Interval(0, clock=lambda: now[0] + 1e9).due()   # 0: only at epoch ends


def test_fit_segments_finish_a_cut_epoch_first():
    from poetgen.train import fit_segments

    assert fit_segments(0, 0, 3, 100) == [(0, 3, 100)]
    assert fit_segments(1, 40, 3, 100) == [(1, 2, 60), (2, 3, 100)]
    assert fit_segments(2, 40, 3, 100) == [(2, 3, 60)]
    assert fit_segments(1, 150, 3, 100) == [(1, 2, 1), (2, 3, 100)]   # --steps-per-epoch lowered on resume


def test_resume_with_other_model_options_is_refused(tiny_bundle):
    result = CliRunner().invoke(cli, ["train", "--out", str(tiny_bundle), "--resume", "--units", "64",
                                      "--epochs", "5", "--embedding-dim", "32"])
    assert result.exit_code == 2
    assert "different model options" in result.output and "--units 48" in result.output


def test_resume_refuses_another_precision(tiny_bundle):
    """The resumed model's layers keep their dtype policy: another --precision is refused in one line."""
    before = (tiny_bundle / "config.json").read_bytes()
    result = CliRunner().invoke(cli, ["train", "--out", str(tiny_bundle), "--resume", "--epochs", "5",
                                      "--precision", "mixed_bfloat16"])
    assert result.exit_code == 2, result.output
    assert "different model options" in result.output and "--precision" in result.output
    assert (tiny_bundle / "config.json").read_bytes() == before


def test_resume_rebuilds_the_schedule_for_more_epochs_and_applies_new_optimizer_options(tiny_bundle, tmp_path):
    """--resume --epochs N stretches the cosine schedule over the N epochs (it used to end where the
    first run's epochs put it, so the added epochs ran at the floor), keeping the optimizer's step count;
    an explicit --learning-rate or --clipnorm applies, and config.json records what ran."""
    import shutil

    import keras

    from poetgen import api
    from poetgen.train import TrainConfig
    from poetgen.train_setup import learning_rate_schedule

    out = tmp_path / "run"
    shutil.copytree(tiny_bundle, out)
    done = json.loads((out / "config.json").read_text())["train"]["epochs"]
    seen = {}

    class Probe(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if not seen:
                optimizer = self.model.optimizer
                seen.update(step=int(optimizer.iterations.numpy()), rate=float(optimizer.learning_rate.numpy()),
                            clipnorm=optimizer.clipnorm)

    result = api.train(out=str(out), resume=True, epochs=done + 4, learning_rate=0.02, clipnorm=0.25,
                       callbacks=[Probe()], explicit={"epochs", "learning_rate", "clipnorm"})
    assert result.epochs_done == done + 4
    recorded = json.loads((out / "config.json").read_text())["train"]
    assert (recorded["learning_rate"], recorded["clipnorm"], recorded["epochs"]) == (0.02, 0.25, done + 4)
    config = TrainConfig(out=str(out), learning_rate=0.02, warmup_steps=recorded["warmup_steps"], clipnorm=0.25)
    steps = seen["step"] // done   # steps per epoch (the first run's, as the resumed run's)
    assert seen["step"] == steps * done > 0 and seen["clipnorm"] == 0.25
    expected = float(learning_rate_schedule(config, steps * (done + 4))(seen["step"]))
    assert seen["rate"] == pytest.approx(expected, rel=1e-5)
    assert seen["rate"] > 10 * 0.05 * 0.02   # four of done + 4 epochs remain: far from the floor (5 %)


def test_resume_and_force_together_are_refused():
    """--force (start over) beside --resume (go on) was ignored: the run resumed."""
    result = CliRunner().invoke(cli, ["train", "--out", "anywhere", "--resume", "--force"])
    assert result.exit_code == 2 and "--resume" in result.output and "--force" in result.output


def test_existing_bundle_needs_resume_or_force(tiny_bundle):
    before = (tiny_bundle / "model.keras").read_bytes()
    result = CliRunner().invoke(cli, ["train", "--out", str(tiny_bundle)])
    assert result.exit_code == 2 and "--resume" in result.output
    assert (tiny_bundle / "model.keras").read_bytes() == before


def test_a_directory_that_holds_no_run_needs_force_and_keeps_its_files(tiny_corpus, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    mine = {"log.csv": "my,own\n1,2\n", "notes.txt": "mine"}
    for name, text in mine.items():
        (out / name).write_text(text, encoding="utf-8")
    args = ["train", "--corpus", str(tiny_corpus), "--out", str(out), "--epochs", "1", "--steps-per-epoch", "2",
            *TRAIN_ARGS]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert "\n" not in line and "not a poetgen run's (log.csv, notes.txt)" in line and "--force" in line
    assert sorted(p.name for p in out.iterdir()) == sorted(mine)
    assert all((out / name).read_text(encoding="utf-8") == text for name, text in mine.items())
    forced = CliRunner().invoke(cli, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert (out / "notes.txt").read_text(encoding="utf-8") == "mine" and (out / "model.keras").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert CliRunner().invoke(cli, [*args[:4], str(empty), *args[5:]]).exit_code == 0   # empty is fine


def test_a_users_config_json_or_resume_folder_is_not_a_run(tiny_corpus, tmp_path):
    """A folder with its own resume/ (a CV, say) was taken for a run, and its log.csv and
    resume/state.json were deleted without --force. A run is a bundle's config.json or a saved model."""
    out = tmp_path / "docs"
    (out / "resume").mkdir(parents=True)
    mine = {"log.csv": "expenses,1\n", "resume/state.json": "cv",
            "resume/tokenizer.json": "cv"}
    for name, text in mine.items():
        (out / name).write_text(text, encoding="utf-8")
    result = CliRunner().invoke(cli, ["train", "--corpus", str(tiny_corpus), "--out", str(out), "--epochs", "1",
                                      "--steps-per-epoch", "2", *TRAIN_ARGS])
    assert result.exit_code == 2 and "--force" in result.stderr and "\n" not in result.stderr.strip()
    assert all((out / name).read_text(encoding="utf-8") == text for name, text in mine.items())


def test_a_relative_corpus_path_is_recorded_absolute_so_resume_works_from_elsewhere(tiny_corpus, tmp_path,
                                                                                  monkeypatch):
    (tmp_path / "start").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "start" / "small.jsonl").write_bytes(tiny_corpus.read_bytes())
    (tmp_path / "elsewhere" / "small.jsonl").write_text('{"text": "not this one"}\n', encoding="utf-8")
    args = ["--steps-per-epoch", "2", *TRAIN_ARGS]
    monkeypatch.chdir(tmp_path / "start")
    result = CliRunner().invoke(cli, ["train", "--corpus", "small.jsonl", "--out", "../run", "--epochs", "1", *args])
    assert result.exit_code == 0, result.output
    monkeypatch.chdir(tmp_path / "elsewhere")
    result = CliRunner().invoke(cli, ["train", "--out", "../run", "--resume", "--epochs", "2"])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text(encoding="utf-8"))
    assert config["corpus"]["path"] == str(tmp_path / "start" / "small.jsonl")
    assert config["progress"]["epochs_done"] == 2


def test_mirrored_strategy_on_two_logical_cpus(tiny_corpus, tmp_path):
    out = tmp_path / "mirrored"
    result = subprocess.run([sys.executable, "-m", "poetgen", "train", "--corpus", str(tiny_corpus), "--out",
                             str(out), "--epochs", "1", "--steps-per-epoch", "10", "--strategy", "mirrored",
                             *TRAIN_ARGS], capture_output=True, text=True, env={**os.environ,
                                                                              "POETGEN_LOGICAL_CPUS": "2"})
    assert result.returncode == 0, result.stderr
    assert "2 replicas" in result.stderr
    assert (out / "model.keras").exists()
    # --batch-size is per replica: each step reads 2 x 16 windows (it used to count half of them)
    progress = json.loads((out / "config.json").read_text())["progress"]
    assert progress["tokens_seen"] == 10 * 2 * 16 * 32


def test_new_model_options_train_resume_and_generate(tiny_corpus, tmp_path):
    """Projection, tying, AWD dropouts and sampled softmax: one epoch, then a resume that switches to
    the full softmax (allowed: the loss is a training choice), then generation from the bundle."""
    from poetgen.generate import Generator, PoemRequest
    from poetgen.sampling import SampleOptions
    from poetgen.train import TrainConfig, train

    options = {**TINY_TRAIN, "epochs": 1, "steps_per_epoch": 30, "projection": 32, "tie_embeddings": True,
               "embedding_dropout": 0.1, "recurrent_dropout": 0.1, "dropout": 0.1}
    out = tmp_path / "run"
    train(TrainConfig(out=str(out), corpus=str(tiny_corpus), sampled_softmax=64, **options))
    run = train(TrainConfig(out=str(out), corpus=str(tiny_corpus), resume=True, **{**options, "epochs": 2}),
                explicit={"epochs", "sampled_softmax"})   # as `--resume --epochs 2 --sampled-softmax 0`
    assert run.config.sampled_softmax == 0 and run.config.tie_embeddings
    config = json.loads((out / "config.json").read_text())
    assert config["progress"]["epochs_done"] == 2 and config["model"]["tie_embeddings"] is True
    assert config["metrics"]["best_val_perplexity"] < run.tokenizer.vocab_size / 2   # it learned
    poem = Generator.load(out).generate(PoemRequest(sample=SampleOptions(seed=0)))["poems"][0]
    assert poem["layout_ok"] and poem["rhyme_ok"]
    h5py_bundle = assert_h5py_bundle_steps_like_keras(out, np.array([[2, 5, 6, 7, 8]], np.int32))
    assert "projection" in h5py_bundle.weights and "logits" not in h5py_bundle.weights   # projection, tied output


def test_make_callbacks_gives_keras_callbacks_only(tmp_path):
    import keras

    from poetgen.model import ModelConfig
    from poetgen.callbacks import StopOnSignal, make_callbacks
    from poetgen.train import Run, TrainConfig

    stopper = StopOnSignal()
    run = Run(TrainConfig(out=str(tmp_path / "run")))
    callbacks = make_callbacks(run, ModelConfig(vocab_size=8), {}, stopper)
    assert all(isinstance(callback, keras.callbacks.Callback) for callback in callbacks)
    assert stopper.callback in callbacks


def test_sample_callback_logs_a_poem_after_each_epoch(tiny_bundle, caplog):
    from poetgen.bundle import load_bundle
    from poetgen.callbacks import sample_callback

    callback = sample_callback(tiny_bundle)
    callback.set_model(load_bundle(tiny_bundle).model)
    with caplog.at_level(logging.INFO, logger="poetgen.callbacks"):
        callback.on_epoch_end(0, {})   # an epoch a stop cut short (no held-out loss): no bundle to read yet
        callback.on_epoch_end(0, {"val_loss": 5.0})
    [sample] = [record.getMessage() for record in caplog.records if record.name == "poetgen.callbacks"]
    assert sample.startswith("sample: ") and len(sample) == len("sample: ") + 24   # a wujue, punctuated


def test_sample_callback_does_not_hide_import_errors(tmp_path, monkeypatch):
    from poetgen.callbacks import sample_callback

    monkeypatch.setitem(sys.modules, "poetgen.generate", None)   # `import poetgen.generate` now fails
    with pytest.raises(ImportError):
        sample_callback(tmp_path)


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_goes_to_stderr_unless_quiet(tiny_corpus, tmp_path, quiet):
    out = tmp_path / "run"
    args = ["-q"] * quiet + ["train", "--corpus", str(tiny_corpus), "--out", str(out), "--epochs", "1",
                             "--steps-per-epoch", "3", *TRAIN_ARGS, "--warmup-steps", "1"]   # no warning
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("best held-out perplexity") and len(result.stdout.splitlines()) == 1
    logged = [line for line in result.stderr.splitlines() if line.startswith(("training ", "epoch 1: "))]
    assert len(logged) == (0 if quiet else 2), result.stderr
    assert not quiet or result.stderr == ""   # Keras's progress lines follow the log level too


def test_the_same_seed_gives_the_same_training_windows():
    """The windows' jitter was a stateful draw inside a parallel map, taken in whatever order the
    threads ran: three builds with one seed gave three different streams of windows."""
    from poetgen.windows import training_dataset

    stream = np.arange(20000, dtype=np.int32) % 97

    def windows(seed):
        dataset, _ = training_dataset(stream, 16, 32, seed)
        return np.concatenate([inputs.numpy() for inputs, _ in dataset.take(40)])

    first = windows(7)
    assert all((windows(7) == first).all() for _ in range(3))
    assert not (windows(8) == first).all()


def test_the_printed_resume_command_is_quoted_for_a_shell():
    import shlex

    from poetgen.train import TrainConfig, resume_command

    command = resume_command(TrainConfig(corpus="/data/my corpus.jsonl", out="my run", epochs=4))
    assert shlex.split(command) == ["poetgen", "train", "--corpus", "/data/my corpus.jsonl", "--out", "my run",
                                    "--resume", "--epochs", "4"]


def test_force_starts_the_tensorboard_logs_over_too(tiny_bundle, tiny_corpus, tmp_path):
    """--force replaced the model, log and resume state but left the old run's TensorBoard events, whose
    curves TensorBoard then drew beside the new run's."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_bundle, run)
    old = {p.name for p in (run / "tensorboard").rglob("*") if p.is_file()}
    assert old
    args = ["train", "--corpus", str(tiny_corpus), "--out", str(run), "--epochs", "1", "--steps-per-epoch", "2",
            *TRAIN_ARGS, "--force"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    new = {p.name for p in (run / "tensorboard").rglob("*") if p.is_file()}
    assert new and not new & old


def test_config_json_records_the_resumed_options_when_the_epoch_does_not_improve(tiny_bundle, tmp_path):
    """config.json took the resumed --epochs and --learning-rate only with a better model: after an epoch
    that did not improve it said epochs 2, learning rate 0.01 beside "epochs_done": 3."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(tiny_bundle, out)
    before = json.loads((out / "config.json").read_text())
    done = before["train"]["epochs"]
    result = CliRunner().invoke(cli, ["train", "--out", str(out), "--resume", "--epochs", str(done + 1),
                                      "--learning-rate", "1e-12", "--no-sample"])
    assert result.exit_code == 0, result.output
    after = json.loads((out / "config.json").read_text())
    assert after["metrics"] == before["metrics"]   # no better model: the epoch did not improve
    assert (after["train"]["epochs"], after["train"]["learning_rate"], after["progress"]["epochs_done"]) == \
        (done + 1, 1e-12, done + 1)


def test_an_epoch_s_log_row_is_written_before_its_resume_state(tiny_corpus, tmp_path, monkeypatch):
    """The state was saved first: a kill between the two left a saved epoch with no log.csv row, and the
    resumed run's log lacked it (the kill-and-resume test failed now and then)."""
    from poetgen import api
    from poetgen.train import Run

    seen = []
    original = Run.save_resume

    def save_resume(self, model, versions):
        if not self.state["step_in_epoch"]:   # an epoch's end, not a save within it
            rows = (self.out / "log.csv").read_text(encoding="utf-8").splitlines()[1:]
            seen.append((self.state["epochs_done"], len(rows)))
        original(self, model, versions)

    monkeypatch.setattr(Run, "save_resume", save_resume)
    api.train(out=str(tmp_path / "run"), corpus=str(tiny_corpus), epochs=2, steps_per_epoch=3, units=16,
              embedding_dim=16, batch_size=8, seq_len=16, min_count=2, dropout=0.0)
    assert seen == [(1, 1), (2, 2)]


def PoisonAt(n: int):
    """Makes the weights NaN after the `n`-th batch of a run: a run that diverges at a known step."""
    def poison(model):
        table = model.get_layer("embedding").embeddings
        table.assign(np.full(table.shape, np.nan, "float32"))

    return at_batch(n, poison)


def test_a_run_that_diverges_stops_in_one_line_and_keeps_its_last_good_state(tiny_corpus, tmp_path):
    from poetgen import api
    from poetgen.errors import BadInput

    out = tmp_path / "run"
    options = dict(out=str(out), corpus=str(tiny_corpus), **{**TINY_TRAIN, "epochs": 3, "steps_per_epoch": 20})
    with pytest.raises(BadInput, match=r"training diverged: the training loss is nan at step \d+ of epoch 2 .*"
                                       r"the resume state \(1 epochs\) is kept.*--resume --learning-rate 0\.001"):
        api.train(**options, callbacks=[PoisonAt(25)])
    # epoch 2's NaN weights were saved nowhere: no log row, no best model, no resume state of them
    state = json.loads((out / "resume" / "state.json").read_text())["state"]
    assert (state["epochs_done"], state["step_in_epoch"]) == (1, 0)
    assert len((out / "log.csv").read_text().splitlines()) == 2
    assert json.loads((out / "config.json").read_text())["metrics"]["best_epoch"] == 1
    # and the run goes on from there at a lower rate, to finite losses
    result = api.train(**{**options, "learning_rate": 1e-3}, resume=True)
    assert result.epochs_done == 3 and np.isfinite(result.best_val_perplexity)
    rows = (out / "log.csv").read_text().splitlines()[1:]
    assert len(rows) == 3 and "nan" not in "".join(rows)


def test_a_held_out_loss_beyond_a_float_s_perplexity_is_a_divergence_not_a_crash(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--corpus", str(tiny_corpus), "--out", str(out), "--epochs", "1",
                                      "--steps-per-epoch", "20", *TRAIN_ARGS, "--learning-rate", "10000",
                                      "--warmup-steps", "0", "--clipnorm", "0"])
    assert result.exit_code == 2, result.output
    # here the held-out loss is ~1e5 nats (its perplexity beyond a float); elsewhere the training loss may turn
    # NaN first: either is a divergence, said in one line
    assert re.search(r"poetgen: error: training diverged: the (held-out loss is [\d.e+]+ at the end|training loss "
                     r"is nan at step \d+) of epoch 1 .*nothing was saved", result.output), result.output
    assert not (out / "model.keras").exists() and not (out / "resume").exists()
    from poetgen.callbacks import perplexity   # what the log and curves show for such a loss

    assert perplexity(1000.0) == float("inf") and perplexity(1.0) == pytest.approx(np.e)


@pytest.mark.parametrize("option, message", [
    (["--min-count", "100000"], "no character occurs --min-count 100000 times in the .* training poems; lower --min-count"),
    (["--val-split", "0.0001"], r"corpus of 1500 poems is too small to hold out --val-split 0.0001 for validation \(0 held out, \d+ left"),
])
def test_a_corpus_too_small_for_an_option_names_that_option(tiny_corpus, tmp_path, option, message):
    result = CliRunner().invoke(cli, ["train", "--corpus", str(tiny_corpus), "--out", str(tmp_path / "run"),
                                      "--epochs", "1", *TRAIN_ARGS, *option])
    assert result.exit_code == 2 and re.search("poetgen: error: " + message, result.output), result.output


def test_a_warm_up_as_long_as_the_run_is_said(tiny_corpus, tmp_path):
    """A small corpus at the default --warmup-steps 200 trains a few dozen steps: all of them warm-up, at a
    fraction of --learning-rate, which the user is told rather than left to find in a poor model."""
    def train(out, warmup):
        return CliRunner().invoke(cli, ["train", "--corpus", str(tiny_corpus), "--out", str(tmp_path / out),
                                        "--epochs", "2", "--steps-per-epoch", "5", *TRAIN_ARGS,
                                        "--warmup-steps", str(warmup)])

    long = train("long", 40)
    assert long.exit_code == 0, long.output
    assert ("poetgen: warning: --warmup-steps 40 is as long as the whole run (10 steps), so the "
            "rate never reaches --learning-rate 0.01 (it stops at 25% of it)") in long.output
    short = train("short", 4)
    assert short.exit_code == 0 and "--warmup-steps" not in short.output, short.output


def test_resume_with_another_epoch_length_schedules_over_the_steps_it_will_take(tiny_bundle, tmp_path):
    """--resume --steps-per-epoch (or --batch-size, or another corpus) changes the epoch's length: the cosine
    spans the steps taken plus those left. It was rebuilt over new length x --epochs, fewer steps than the run
    had taken already, so every added epoch ran at the floor (5 % of the rate)."""
    import shutil

    import keras

    from poetgen import api
    from poetgen.train import TrainConfig
    from poetgen.train_setup import learning_rate_schedule

    out = tmp_path / "run"
    shutil.copytree(tiny_bundle, out)
    recorded = json.loads((out / "config.json").read_text())["train"]
    done, taken = recorded["epochs"], recorded["epochs"] * recorded["steps_per_epoch"]
    rates = []

    class Probe(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            rates.append((int(self.model.optimizer.iterations.numpy()), float(self.model.optimizer.learning_rate.numpy())))

    api.train(out=str(out), resume=True, epochs=done + 2, steps_per_epoch=10, callbacks=[Probe()],
              explicit={"epochs", "steps_per_epoch"})
    config = TrainConfig(out=str(out), learning_rate=recorded["learning_rate"], warmup_steps=recorded["warmup_steps"])
    schedule = learning_rate_schedule(config, taken + 2 * 10)
    assert [step for step, _ in rates] == list(range(taken, taken + 20))
    for step, rate in rates:
        assert rate == pytest.approx(float(schedule(step)), rel=1e-5)
    assert rates[0][1] > 2 * 0.05 * recorded["learning_rate"]   # two epochs to go: not at the floor yet


def test_a_second_ctrl_c_names_the_resume_command_where_a_state_is_saved(tmp_path, monkeypatch):
    """A second Ctrl-C aborts the step at once (StopOnSignal raises KeyboardInterrupt): where the run has a
    saved resume state, the one line says how it goes on, as a first Ctrl-C's stop does; else `interrupted`."""
    from poetgen import api
    from poetgen.resume import RESUME_DIR, RESUME_STATE

    def aborted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "train", aborted)
    out = tmp_path / "my run"
    args = ["train", "--out", str(out), "--resume", "--epochs", "3"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 130 and result.stderr.split() == ["poetgen:", "interrupted"]   # nothing saved
    (out / RESUME_DIR).mkdir(parents=True)
    (out / RESUME_DIR / RESUME_STATE).write_text("{}")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 130, result.output
    assert result.stderr.strip().splitlines() == [f"poetgen: interrupted; the run goes on from its last saved state with: "
                                          f"poetgen train --out '{out}' --resume --epochs 3"]
    os.utime(out / RESUME_DIR / RESUME_STATE, (0, 0))   # an old run's state, which --force was replacing: not named
    result = CliRunner().invoke(cli, ["train", "--out", str(out), "--force"])
    assert result.exit_code == 130 and result.stderr.split() == ["poetgen:", "interrupted"]
