"""Settings as data. A dataclass (a simulation, a calibration, a training recipe, the grid engine, a
model of the suite, a command's own settings) declares each setting once with :func:`option`: its
default, its help, the parser of its command-line text and its choices. A command's settings are
one frozen dataclass, its ``Options``, composed by :func:`command_options` of the option sets it
takes (:class:`Take`); :func:`add_options` makes a parser's options of those fields (``--name``,
underscores as dashes), :func:`from_args` builds a dataclass back from the parsed options (or from a
command's ``Options``, which holds every field of the sets it took), and :func:`check_choices` (a
``__post_init__`` calls it) is the one check of every field that has choices. The value types below
parse the command line's words.
"""

import argparse
from dataclasses import MISSING, dataclass, field, fields, make_dataclass

from snnbench.errors import ConfigError


def option(default, help: str, parse=None, *, choices=None, flag: str = "", group: str = "", **argparse_kwargs):
    """A dataclass field that is also a command-line option ``--flag`` (default: the field's name) in
    the parser's argument group titled ``group`` (none: the parser's own options). ``parse`` reads the
    option's text; ``choices`` are checked at parsing and by :func:`check_choices`."""
    metadata = {"help": help, "type": parse, "choices": choices, "flag": flag, "group": group, **argparse_kwargs}
    return _field(default, metadata)


def _field(default, metadata: dict):
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def _default(f):
    return f.default_factory() if f.default is MISSING else f.default


# metadata of an option field that is not an argparse keyword
_NOT_ARGPARSE = ("flag", "group", "declared_by", "exclusive")


def option_name(f) -> str:
    """The option name (no dashes) of a dataclass field."""
    return f.metadata.get("flag") or f.name


def options_of(cls, names=None) -> list:
    """The fields of ``cls`` declared with :func:`option`, all or those in ``names`` (their order)."""
    declared = {f.name: f for f in fields(cls) if "help" in f.metadata}
    return list(declared.values()) if names is None else [declared[name] for name in names]


def add_options(parser, cls, names=None, skip=(), **defaults):
    """Add the options of ``cls``'s fields (all, or ``names``) to a parser or argument group, less
    ``skip``; ``defaults`` replaces a field's default for this command. A field's ``group`` is the
    parser's group of that title (``parser.group``, snnbench.benchmarks.CommandParser)."""
    for f in options_of(cls, names):
        if f.name in skip:
            continue
        default = defaults.get(f.name, _default(f))
        kwargs = {k: v for k, v in f.metadata.items() if v is not None and k not in _NOT_ARGPARSE}
        target = parser.group(f.metadata["group"]) if f.metadata["group"] else parser
        if f.metadata.get("exclusive"):  # options of which one at most is given
            target = parser.exclusive(f.metadata["exclusive"], target)
        action = target.add_argument("--" + option_name(f).replace("_", "-"), default=default, **kwargs)
        action.declared_by = f.metadata.get("declared_by") or f"{cls.__name__}.{f.name}"


def from_args(cls, args, **values):
    """``cls`` from the options that its declared fields define, and ``values``: ``args`` is a parsed
    namespace or a command's ``Options``."""
    given = {f.name: getattr(args, option_name(f)) for f in options_of(cls) if hasattr(args, option_name(f))}
    return cls(**{**given, **values})


@dataclass(frozen=True)
class Take:
    """The options of the option set ``source`` (a dataclass) that a command takes: ``names`` (None:
    all) less ``skip``, in the parser's group titled ``group`` (default: each field's own), with
    ``defaults`` replacing fields' defaults and ``metadata`` (field name -> {"help": ..}) their help,
    choices or other argparse settings."""
    source: type
    names: tuple | None = None
    skip: tuple = ()
    group: str = ""
    defaults: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    def fields(self) -> list[tuple]:
        """(option name, type, dataclass field) of each option taken."""
        taken = []
        for f in options_of(self.source, self.names):
            if f.name in self.skip:
                continue
            metadata = {**f.metadata, "flag": "", "group": self.group or f.metadata["group"],
                        "declared_by": f.metadata.get("declared_by") or f"{self.source.__name__}.{f.name}",
                        **self.metadata.get(f.name, {})}
            taken.append((option_name(f), f.type, _field(self.defaults.get(f.name, _default(f)), metadata)))
        return taken


@dataclass(frozen=True)
class EveryCommand:
    """The options every command takes, after its own."""
    verbose: bool = option(False, "show the libraries' start-up messages (TensorFlow, nengo-dl, MLflow's database)",
                           action="store_true")


def command_options(name: str, *parts, doc: str, **attributes) -> type:
    """A command's settings: a frozen dataclass of every option of ``parts`` (each a dataclass, a
    :class:`Take` of one, or a (name, type, :func:`option`) field of this command's own) and of
    :class:`EveryCommand`, in the order its parser shows them, each field named as its option.
    ``attributes``: class attributes (not options)."""
    specs, seen = [], set()
    for part in (*parts, EveryCommand):
        taken = part.fields() if isinstance(part, Take) else [part] if isinstance(part, tuple) else Take(part).fields()
        for spec in taken:
            if spec[0] in seen:
                raise TypeError(f"{name}: option {spec[0]!r} taken twice")
            seen.add(spec[0])
            specs.append(spec)
    return make_dataclass(name, specs, frozen=True,
                          namespace={"__doc__": doc, "__post_init__": check_choices, **attributes})


def check_choice(name: str, value, choices):
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; use one of {', '.join(map(str, choices))}")


def check_choices(settings):
    """Every field of ``settings`` declared with choices holds one of them."""
    for f in options_of(type(settings)):
        if f.metadata["choices"] is not None:
            check_choice(option_name(f).replace("_", " "), getattr(settings, f.name), f.metadata["choices"])


# --- value types of the command line ------------------------------------------------------------

def float_list(text: str) -> list[float]:
    """'0,0.1,0.5' -> [0.0, 0.1, 0.5]"""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def boolean(text) -> bool:
    """'true' / 'false' (also 1 / 0, yes / no)."""
    if isinstance(text, bool):
        return text
    if text.strip().lower() in ("1", "true", "yes"):
        return True
    if text.strip().lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def choice(choices):
    """One word from ``choices``."""
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(choices)}")
        return text
    return parse


def choice_list(choices):
    """A non-empty comma-separated list whose items come from ``choices``."""
    def parse(text: str) -> list[str]:
        items = [v.strip() for v in text.split(",") if v.strip()]
        if not items or not set(items) <= set(choices):
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(choices)}")
        return items
    return parse


def auto(parse):
    """``parse(text)``, or None (the profile's value) for 'auto' or '' (what MLflow passes for an
    empty parameter)."""
    def parse_or_auto(text: str):
        if text.strip().lower() in ("auto", ""):
            return None
        try:
            return parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a value or 'auto', got {text!r}") from None
    parse_or_auto.profile_dependent = True  # snnbench.cli.mlproject: not an entry-point parameter
    return parse_or_auto


def non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def positive(kind=float):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
        return value
    return parse


def positive_or_none(text: str) -> float | None:
    """A number > 0, or None for none / 0 / ''."""
    return None if text.strip().lower() in ("none", "0", "") else positive(float)(text)
