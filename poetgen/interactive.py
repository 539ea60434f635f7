"""`poetgen generate --interactive`: load the model once, then write a poem for each line typed.

A line starting with "/" sets an option as on the command line (`/form qilv`, `/seed 3`, `/tone on`);
the options are the generate command's own, read from its click parameters. Poems come from poetgen.api.
"""

from __future__ import annotations

import re

import click

from poetgen.errors import BadInput, PoetgenError
from poetgen.quiet import writing_stdout

FIXED = ("model_dir", "int8", "interactive", "prompt", "help")   # chosen once, when the session starts
RESET = ("default", "none")   # `/seed none`: back to the command's default
BELONGS = {"tune": ("variant",)}   # options that go back to their default when this one changes
COMMANDS = "/help, /options, /quit"
BOOLEAN_WORDS = ("", "on", "off", "yes", "no", "true", "false", "1", "0")   # what a flag accepts (empty: on)
UNBOUNDED = 2 ** 62   # a range's end beyond this (--seed's 2**63 - 1) is not worth naming
_OPTION_SPELLING = re.compile(r"(?<![\w/'\"-])--?([a-z][a-z0-9-]*)")   # --max-chars, -n; not '--x' quoted


def _settable(command: click.Command) -> dict[str, click.Option]:
    """Option spellings (without dashes, and the parameter's own name) → the option."""
    names = {}
    for param in command.params:
        if isinstance(param, click.Option) and param.name not in FIXED:
            for spelling in [*param.opts, *param.secondary_opts, param.name]:
                names[spelling.lstrip("-").replace("_", "-")] = param
    return names


def _spelling(param: click.Option) -> str:
    return param.opts[-1].lstrip("-")


def _takes(param: click.Option) -> str:
    """What a value of `param` may be, as the session says it: a whole number from 1 to 1000, one of
    text, json (click's own words name the command line's --n and "integer range")."""
    kind = param.type
    if isinstance(kind, click.Choice):
        return f"one of {', '.join(map(str, kind.choices))}"
    if not isinstance(kind, (click.IntRange, click.FloatRange)):
        return "a " + kind.name
    what = "a whole number" if isinstance(kind, click.IntRange) else "a number"
    low = kind.min if kind.min is not None and abs(kind.min) < UNBOUNDED else None
    high = kind.max if kind.max is not None and abs(kind.max) < UNBOUNDED else None
    if low is not None and high is not None and not kind.min_open and not kind.max_open:
        return f"{what} from {low} to {high}"
    ends = ([] if low is None else [f"above {low}" if kind.min_open else f"{low} or more"]) + \
        ([] if high is None else [f"below {high}" if kind.max_open else f"at most {high}"])
    return f"{what}, {' and '.join(ends)}" if ends else what


def _usage(param: click.Option) -> str:
    if param.secondary_opts:
        return f"/{param.opts[0].lstrip('-')} on|off"
    if param.is_flag:
        return f"/{param.opts[-1].lstrip('-')} on|off"
    return f"/{param.opts[-1].lstrip('-')} VALUE"


class Session:
    """The options of one interactive session and the commands that change them."""

    def __init__(self, command: click.Command, options: dict, check=None):
        self.command = command
        self.options = dict(options)
        self.check = check   # check(request) raises for a request the model cannot write (Generator.prepare)
        self.names = _settable(command)
        self.context = click.Context(command)

    def set(self, line: str) -> str:
        """Apply one "/name [value]" line; return what to tell the user."""
        name, _, value = line[1:].strip().partition(" ")
        name, value = name.replace("_", "-"), value.strip()
        param = self.names.get(name)
        if param is None:
            raise click.UsageError(f"unknown command or option /{name}; try /help")
        if value.lower() == "default" or (value.lower() in RESET and param.default in (None, "")):
            new = param.default   # `/seed none`, `/tune none`, `/acrostic none`: back to none
        elif f"--{name}" in param.secondary_opts:   # /no-tone, /allow-repeat
            if value:
                raise click.UsageError(f"/{name} takes no value")
            new = False
        elif param.is_flag or param.secondary_opts:
            if value.lower() not in BOOLEAN_WORDS:
                raise click.UsageError(f"/{name} takes on or off, not {value!r}")
            new = click.BOOL.convert(value or "on", param, self.context)
        elif not value:
            raise click.UsageError(f"/{name} needs a value: {_usage(param)}")
        else:
            try:
                new = param.type.convert(value, param, self.context)
            except click.BadParameter:
                raise click.UsageError(f"/{name} takes {_takes(param)}, not {value!r}") from None
        params = {p.name: p for p in self.names.values()}
        changed = {param.name: new}
        if new != self.options.get(param.name):   # a variant is its tune's: a new tune resets it
            changed.update({n: params[n].default for n in BELONGS.get(param.name, ())
                            if self.options.get(n) != params[n].default})
        request = _request("", {**self.options, **changed})[0]   # a value the request refuses is not kept,
        if self.check is not None:
            self.check(request)                                      # nor one the model cannot write
        self.options.update(changed)
        return "\n".join(f"{_spelling(params[n])} = {v!r}" for n, v in changed.items())

    def own_spelling(self, message: str) -> str:
        """`message` with the command line's spelling of a session option (--max-chars, -n) as the
        session's own (/max-chars, /n): a request's errors name the options as the command line does."""
        def spelled(match: re.Match) -> str:
            return f"/{match.group(1)}" if match.group(1) in self.names else match.group(0)

        return _OPTION_SPELLING.sub(spelled, message)

    def describe(self) -> str:
        params = {p.name: p for p in self.names.values()}
        return "\n".join(f"{_spelling(params[name]) if name in params else name} = {value!r}"
                         for name, value in self.options.items())

    def help(self) -> str:
        params = dict.fromkeys(self.names.values())
        lines = ["Type a prompt (or an empty line) for a poem; Ctrl-D ends the session.",
                 f"Commands: {COMMANDS}. Options, as on the command line (/NAME default puts one back to its "
                 f"default; /seed none, /tune none, /acrostic none clear them):"]
        lines += [f"  {_usage(p):24} {p.help or ''}" for p in params]
        return "\n".join(lines)


def run_session(command: click.Command, prompt: str, model_dir, int8: bool, options: dict) -> None:
    """Read lines from stdin until EOF or /quit; each prompt line gets its poems on stdout."""
    from poetgen import api

    session = Session(command, options)
    _request(prompt, session.options)   # bad starting options fail before the model loads
    stdin = click.get_text_stream("stdin", errors="surrogateescape")   # bytes that are not text: refused per line
    if stdin is None:
        raise BadInput("standard input is closed: --interactive reads its prompts there")
    poet = api.load(model_dir, int8)
    session.check = poet.generator.prepare
    # and those the model cannot write, with the command line's prompt, before the session: a bad one was
    # answered as a typed line is, and the command exited 0
    session.check(_request(prompt, session.options)[0])
    tty = stdin.isatty()
    if tty:
        click.echo(f"poetgen: model {poet.path}; type a prompt, /help for commands, Ctrl-D to quit", err=True)
    pending = [prompt] if prompt else []
    while True:
        if pending:
            line = pending.pop()
        else:
            if tty:
                click.echo("poetgen> ", nl=False, err=True)
            line = stdin.readline()
            if not line:   # EOF
                return
            line = line.strip()
        result = None
        try:
            if line in ("/quit", "/exit", "/q"):
                return
            if line in ("/help", "/?"):
                click.echo(session.help(), err=True)
            elif line == "/options":
                click.echo(session.describe(), err=True)
            elif line.startswith("/"):
                click.echo(session.set(line), err=True)
            else:
                request, fmt, traditional = _request(line, session.options)
                poems = poet.run(request, traditional)
                result = poems.to_json() if fmt == "json" else f"{poems}\n"
        except (click.ClickException, PoetgenError) as error:
            message = error.format_message() if isinstance(error, click.ClickException) else str(error)
            click.echo(f"poetgen: error: {session.own_spelling(' '.join(message.split()))}", err=True)
        if result is not None:   # outside the try: a stdout that fails ends the session, as a bad line does not
            with writing_stdout():
                click.echo(result)


def _request(prompt: str, options: dict):
    from poetgen import api

    options = dict(options)
    fmt, traditional = options.pop("fmt", "text"), options.pop("traditional", False)
    return api.poem_request(prompt, **options), fmt, traditional
