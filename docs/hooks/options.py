"""MkDocs hook: the options page shows every command's ``--help``, rendered from the command line's own
parsers when the site is built, so the page cannot drift from the code."""

import os

MARKER = "<!-- every command's --help -->"


def _command_help() -> str:
    from snnbench.cli.main import COMMANDS, build_parser

    os.environ["COLUMNS"] = "110"  # argparse wraps help text at the terminal's width
    sections = []
    for command, (_, description) in COMMANDS.items():
        # jsonargparse writes "--print_config \b[=flags]" for terminals, where the backspace joins the two
        help_text = build_parser(command).format_help().replace(" \b", "").rstrip()
        sections.append(f"## `{command}`\n\n{description[0].upper()}{description[1:]}.\n\n```text\n{help_text}\n```\n")
    return "\n".join(sections)


def on_page_markdown(markdown, page, **_):
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, _command_help())
