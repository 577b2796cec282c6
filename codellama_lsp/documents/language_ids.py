"""Editors' own names for languages, mapped to LSP's language identifiers.

LSP 3.17 lists the identifiers (`javascript`, `cpp`, `shellscript`, ...) that the `languages`
setting is written in, but Emacs (eglot) names a language after its major mode: `js`, `c++`,
`sh`, `python-ts`. Mapping at `didOpen` lets one `languages` object serve every editor.
"""

from __future__ import annotations

_LSP_IDS = {
    "js": "javascript",
    "js2": "javascript",
    "js-jsx": "javascriptreact",
    "rjsx": "javascriptreact",
    "typescript-tsx": "typescriptreact",
    "tsx": "typescriptreact",
    "c++": "cpp",
    "sh": "shellscript",
    "bash": "shellscript",
    "cperl": "perl",
    "objc": "objective-c",
    "objc++": "objective-cpp",
    "tuareg": "ocaml",
    "caml": "ocaml",
    "enh-ruby": "ruby",
    "js-json": "json",
    "mhtml": "html",
    "gfm": "markdown",
    "makefile-gmake": "makefile",
    "makefile-bsdmake": "makefile",
    "conf-toml": "toml",
}
_TREE_SITTER_SUFFIX = "-ts"
"""Emacs 29+ names tree-sitter modes `python-ts-mode`; eglot sends `python-ts`."""


def lsp_language_id(language_id: str) -> str:
    """LSP's identifier for an editor's `language_id`; unknown ones pass through unchanged."""
    name = language_id.removesuffix(_TREE_SITTER_SUFFIX) or language_id
    return _LSP_IDS.get(name, name)
