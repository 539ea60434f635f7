"""Shell habits: `poetgen generate --interactive` (a prompt loop on stdin) and shell completion."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import poetgen
import poetgen.api
from poetgen.cli import cli

LINE = re.compile(r"^[\u4e00-\u9fff]+[，。？！；：]$")


def poems_in(stdout: str) -> list[list[str]]:
    return [block.splitlines() for block in stdout.strip().split("\n\n") if block.strip()]


@pytest.fixture
def loads(monkeypatch):
    """Counts model loads through the API."""
    calls = []
    real = poetgen.api.load

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(poetgen.api, "load", counting)
    return calls


def test_interactive_writes_a_poem_per_line_with_options_set_on_the_way(tiny_bundle, loads):
    session = "白日\n/form qijue\n/seed 3\n/tone on\n\n/bogus 1\n/top-p 7\n/tone maybe\n/n\n/quit\n明月\n"
    result = CliRunner().invoke(cli, ["generate", "--interactive", "--model", str(tiny_bundle), "--seed", "1"],
                                input=session)
    assert result.exit_code == 0, result.output
    assert len(loads) == 1
    first, second = poems_in(result.stdout)   # nothing after /quit
    assert first[0].startswith("白日") and [len(line) for line in first] == [6] * 4
    assert [len(line) for line in second] == [8] * 4 and all(LINE.match(line) for line in second)
    poet = poetgen.load(tiny_bundle)
    assert first == list(poet.generate("白日", seed=1)[0].lines)
    assert second == list(poet.generate(form="qijue", seed=3, tone=True)[0].lines)
    errors = [line for line in result.stderr.splitlines() if line.startswith("poetgen: error:")]
    assert len(errors) == 4 and "/bogus" in errors[0] and "top-p" in errors[1] and "/n needs a value" in errors[3]
    assert "/tone takes on or off, not 'maybe'" in errors[2]
    assert "Traceback" not in result.output


def test_interactive_errors_name_the_sessions_own_commands(tiny_bundle):
    """A bad value was answered in click's words for the command line: "Invalid value for '--seed': 'abc'
    is not a valid integer range", "Invalid value for '-n'"; a request's own errors said --max-chars. The
    session names its commands (/seed, /n, /max-chars) and what they take."""
    session = "/seed abc\n/n 0\n/top-p 2\n/format xml\n/form free\n/max-chars 5\n白日依山尽黄河\n/form --seed\n"
    result = CliRunner().invoke(cli, ["generate", "--interactive", "--model", str(tiny_bundle), "--seed", "1"],
                                input=session)
    assert result.exit_code == 0, result.output
    errors = [line[len("poetgen: error: "):] for line in result.stderr.splitlines() if line.startswith("poetgen: error:")]
    assert errors[:4] == ["/seed takes a whole number, 0 or more, not 'abc'",
                          "/n takes a whole number from 1 to 1000, not '0'",
                          "/top-p takes a number, above 0 and at most 1, not '2'",
                          "/format takes one of text, json, not 'xml'"]
    assert "raise /max-chars (max_chars)" in errors[4] and "'--seed'" in errors[5], errors
    assert not any("--" in error or "-n" in error or "integer range" in error for error in errors[:5]), errors



    session = "/format json\n/traditional on\n/no-repeat off\n/allow-repeat\n/help\n/options\n秋\n"
    result = CliRunner().invoke(cli, ["generate", "--interactive", "--model", str(tiny_bundle), "--seed", "2",
                                      "--form", "wulv"], input=session)
    assert result.exit_code == 0, result.output

    printed = json.loads(result.stdout)
    assert printed["form"] == "wulv" and len(printed["poems"]) == 1 and printed["seed"] == 2
    expected = poetgen.load(tiny_bundle).generate("秋", form="wulv", seed=2, no_repeat=False, traditional=True)
    assert printed["poems"][0]["text"] == expected[0].text
    assert "/acrostic VALUE" in result.stderr and "no-repeat = False" in result.stderr
    assert "poetgen: error" not in result.stderr


def test_interactive_bad_start_and_missing_model_are_one_line(tiny_bundle, tmp_path):
    result = CliRunner().invoke(cli, ["generate", "--interactive", "--model", str(tmp_path / "none")], input="")
    assert result.exit_code == 2 and result.stderr.startswith("poetgen: error:")
    assert len(result.stderr.strip().splitlines()) == 1
    result = CliRunner().invoke(cli, ["generate", "--interactive", "--model", str(tiny_bundle), "--top-p", "3"],
                                input="白日\n")
    assert result.exit_code == 2 and "top-p" in result.stderr and result.stdout == ""
    # a starting option only the model refuses (the tiny model has no titles): one line, exit 2, no session
    result = CliRunner().invoke(cli, ["generate", "--interactive", "--model", str(tiny_bundle), "--title", "送友人"],
                                input="\n白日\n")
    assert result.exit_code == 2 and "title" in result.stderr and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1


def test_interactive_refuses_a_bad_command_line_prompt_and_a_closed_stdin(tiny_bundle):
    """A bad prompt given with --interactive was answered as a typed line (exit 0), and a closed stdin was an
    internal error (None has no isatty) after the model loaded."""
    result = CliRunner().invoke(cli, ["generate", "--interactive", "--model", str(tiny_bundle), "hello"], input="")
    assert result.exit_code == 2 and "prompt" in result.stderr and result.stdout == "", result.output
    assert len(result.stderr.strip().splitlines()) == 1
    process = subprocess.run([sys.executable, "-m", "poetgen", "generate", "--interactive", "--model", str(tiny_bundle)],
                             capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                             preexec_fn=lambda: os.close(0))
    assert process.returncode == 2 and process.stderr.strip() == \
        "poetgen: error: standard input is closed: --interactive reads its prompts there", process.stderr


def completion(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "poetgen"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env}, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o nosort -F _poetgen_completion poetgen"),
                                           ("zsh", "#compdef poetgen"),
                                           ("fish", "complete --no-files --command poetgen")])
def test_completion_scripts(shell, marker):
    process = completion({"_POETGEN_COMPLETE": f"{shell}_source"})
    assert process.returncode == 0 and marker in process.stdout, process.stdout + process.stderr


def test_completion_completes_commands_and_options():
    process = completion({"_POETGEN_COMPLETE": "bash_complete", "COMP_WORDS": "poetgen gen", "COMP_CWORD": "1"})
    assert process.returncode == 0 and process.stdout.split() == ["plain,generate"]
    process = completion({"_POETGEN_COMPLETE": "bash_complete", "COMP_WORDS": "poetgen generate --inter",
                          "COMP_CWORD": "2"})
    assert process.stdout.split() == ["plain,--interactive"]


def test_interactive_prompt_argument_is_the_first_line(tiny_bundle):
    result = CliRunner().invoke(cli, ["generate", "--interactive", "--model", str(tiny_bundle), "--seed", "5",
                                      "明月"], input="/seed 6\n明月\n")
    assert result.exit_code == 0, result.output
    first, second = poems_in(result.stdout)
    assert first[0].startswith("明月") and second[0].startswith("明月") and first != second


def test_interactive_keeps_no_value_the_model_cannot_write(tiny_bundle):
    """A value only the model's checks refuse (Latin letters for an acrostic) is refused when set, not
    kept to fail every later poem."""
    session = "/acrostic abc\n\n"
    result = CliRunner().invoke(cli, ["generate", "--interactive", "--model", str(tiny_bundle), "--seed", "1"],
                                input=session)
    assert result.exit_code == 0, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("poetgen: error:")]
    assert len(errors) == 1 and "Latin letter" in errors[0]
    assert len(poems_in(result.stdout)) == 1   # the empty line still gets its poem


def test_the_readmes_example_outputs_are_what_the_shipped_model_prints():
    """Each ```-block of the README that starts with `$ poetgen …` or `$ printf … | poetgen …` shows the
    command's output: it must be what the command prints now (they went stale unseen once)."""
    import shlex

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```\n\$ (.+?)\n(.*?)```", readme, flags=re.S)
    assert len(blocks) >= 2
    for command, shown in blocks:
        feed = ""
        if command.startswith("printf "):
            printf, command = command.split(" | ", 1)
            feed = shlex.split(printf)[1].encode().decode("unicode_escape").encode("latin-1").decode("utf-8")
        args = shlex.split(command.replace("2>/dev/null", ""))
        assert args[0] == "poetgen", command
        result = CliRunner().invoke(cli, args[1:], input=feed)
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == shown.strip(), command


def test_bytes_that_are_not_utf8_are_one_line_and_the_session_goes_on(tiny_bundle):
    """They reached OpenCC as lone surrogates: `internal error`, exit 1; in a session the line ended it."""
    command = [sys.executable, "-m", "poetgen", "generate", "--model", str(tiny_bundle), "--seed", "1"]
    for extra in ([b"\xff\xe6\x98\xa5"], [b"--acrostic", b"\xff\xe6\x98\xa5"], [b"--theme", b"\xff\xe6\x98\xa5"]):
        result = subprocess.run([*command, *extra], capture_output=True)
        stderr = result.stderr.decode("utf-8", "replace")
        assert result.returncode == 2 and "is not valid text" in stderr and "Traceback" not in stderr, stderr
    session = subprocess.run([*command, "--interactive"], input=b"\xff\n" + "春风\n".encode(), capture_output=True)
    stderr = session.stderr.decode("utf-8", "replace")
    assert session.returncode == 0 and "prompt is not valid text" in stderr, stderr
    assert poems_in(session.stdout.decode())[0][0].startswith("春风")


def test_interactive_none_clears_a_tune_or_an_acrostic(tiny_bundle):
    """`/tune none` looked for a tune called none, and nothing cleared /acrostic but /acrostic default."""
    session = "/tune 浣溪沙\n/tune none\n/form qilv\n/acrostic 春夏秋冬远近高低\n/acrostic none\n/options\n"
    result = CliRunner().invoke(cli, ["generate", "--interactive", "--model", str(tiny_bundle), "--seed", "1"],
                                input=session)
    assert result.exit_code == 0, result.output
    assert "poetgen: error" not in result.stderr, result.stderr
    assert "tune = ''" in result.stderr and "acrostic = ''" in result.stderr and "form = 'qilv'" in result.stderr


def test_a_variant_goes_with_its_tune_in_an_interactive_session(tiny_bundle):
    """With a variant set, `/tune none` was refused (a variant needs a tune) and the session stayed on
    that tune; a new tune kept the old tune's variant number. Changing the tune now resets the variant."""
    session = "/tune none\n/form qilv\n/form default\n/tune 满江红\n/variant 2\n/tune 浣溪沙\n/options\n"
    result = CliRunner().invoke(cli, ["generate", "--interactive", "--model", str(tiny_bundle), "--seed", "1",
                                      "--tune", "浣溪沙", "--variant", "3"], input=session)
    assert result.exit_code == 0 and "poetgen: error" not in result.stderr, result.stderr
    assert "tune = ''\nvariant = None" in result.stderr and "form = 'qilv'" in result.stderr
    assert "variant = 2\ntune = '浣溪沙'\nvariant = None" in result.stderr
    assert result.stderr.rstrip().count("variant = None") == 3   # the two resets and /options
