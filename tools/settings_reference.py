"""Write the settings' reference where editors and readers find it, from their one definition.

`codellama_lsp/settings.py` defines each setting (name, type, default, range, help text). This
writes the VS Code extension's `contributes.configuration` (editors/vscode/package.json) and the
settings table in README.md from it. `--check` writes nothing and exits 1 when either is out of
date (tests/test_settings.py runs it in CI).

    python tools/settings_reference.py           # after changing a setting
    python tools/settings_reference.py --check
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from codellama_lsp.settings import SettingSpec, setting_specs

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_JSON = ROOT / "editors" / "vscode" / "package.json"
README = ROOT / "README.md"
SECTION = "codellama"
LAUNCH_SETTINGS = ("serverPath", "serverArgs")
"""The extension's own settings (how to start the server), kept as package.json has them."""
TABLE_BEGIN = "<!-- settings table: written by tools/settings_reference.py -->"
TABLE_END = "<!-- end of the settings table -->"


def vscode_property(spec: SettingSpec) -> dict[str, Any]:
    """The JSON schema VS Code shows and checks for one setting."""
    prop: dict[str, Any]
    if spec.choices:
        prop = {"type": "string", "default": spec.default, "enum": list(spec.choices)}
    elif spec.kind is bool:
        prop = {"type": "boolean", "default": spec.default}
    elif spec.kind in (int, float):
        prop = {
            "type": "integer" if spec.kind is int else "number",
            "default": spec.default,
            "minimum": spec.minimum,
            "maximum": spec.maximum,
        }
    elif spec.kind is str:
        prop = {"type": "string", "default": spec.default}
        if spec.pattern is not None:
            prop["pattern"] = f"^({spec.pattern})$"
    elif spec.kind == dict[str, bool]:
        prop = {
            "type": "object",
            "default": spec.default,
            "additionalProperties": {"type": "boolean"},
        }
    else:
        prop = {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "default": spec.default,
        }
    prop["markdownDescription"] = spec.help
    return prop


def package_json(current: str) -> str:
    """`current` with its server settings replaced by those the server defines; a setting only
    the command line may set is left out (a workspace could otherwise supply it)."""
    package = json.loads(current)
    properties = package["contributes"]["configuration"]["properties"]
    written = {f"{SECTION}.{key}": properties[f"{SECTION}.{key}"] for key in LAUNCH_SETTINGS}
    for spec in setting_specs():
        if not spec.command_line_only:
            written[f"{SECTION}.{spec.key}"] = vscode_property(spec)
    package["contributes"]["configuration"]["properties"] = written
    return json.dumps(package, indent=2, ensure_ascii=False) + "\n"


def shown_default(spec: SettingSpec) -> str:
    if spec.kind is bool:
        return "`true`" if spec.default else "`false`"
    if spec.kind is str or spec.choices:
        return f"`{spec.default}`" if spec.default else '`""`'

    if spec.kind in (int, float):
        return f"`{spec.default:g}`"
    return f"`{json.dumps(spec.default)}`"


def readme_table() -> str:
    rows = [
        "| setting | command line | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for spec in setting_specs():
        name = "(command line only)" if spec.command_line_only else f"`{spec.key}`"
        meaning = spec.help.replace("|", "\\|")
        flag = "(none)" if spec.secret else f"`{spec.flag}`"
        rows.append(f"| {name} | {flag} | {shown_default(spec)} | {meaning} |")
    return "\n".join(rows)


def readme(current: str) -> str:
    """`current` with the text between the table's markers replaced."""
    head, begin, rest = current.partition(TABLE_BEGIN)
    _, end, tail = rest.partition(TABLE_END)
    if not (begin and end):
        raise SystemExit(f"{README}: the settings table's markers are missing")
    return f"{head}{TABLE_BEGIN}\n{readme_table()}\n{TABLE_END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether they are stale")
    args = parser.parse_args(argv)
    stale = []
    for path, rewrite in ((PACKAGE_JSON, package_json), (README, readme)):
        current = path.read_text(encoding="utf-8")
        wanted = rewrite(current)
        if wanted != current:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(wanted, encoding="utf-8")
    if args.check and stale:
        names = ", ".join(map(str, stale))
        print(f"out of date: {names}; run python tools/settings_reference.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
