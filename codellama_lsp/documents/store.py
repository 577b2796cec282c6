"""The documents the editor has open (and a few it closed), and which of them may be shared.

The store applies `didOpen`, `didChange` and `didClose`; it answers which document a completion
may run in, and which other documents' text may go into its prompt as extra context. The
workspace comes in as data (`Workspace`), taken on the event loop, so that the sharing checks,
which touch the file system, can run on another thread.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lsprotocol import types
from pygls.uris import to_fs_path

from codellama_lsp.documents.git_ignore import GitIgnored
from codellama_lsp.documents.text_document import Encoding, TextDocument
from codellama_lsp.settings import Settings

log = logging.getLogger(__name__)

RECENTLY_CLOSED = 8
"""Closed documents whose text stays a source of extra context, the most recent first."""


@dataclass(frozen=True)
class Source:
    """An other document as the chooser sees it: its lines and version when the request came."""

    document: TextDocument
    version: int
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Workspace:
    """The workspace's folders as the client named them (pygls keeps them up to date with
    `workspace/didChangeWorkspaceFolders`), and its root for a client that names none."""

    folder_uris: tuple[str, ...]
    root_uri: str | None
    root_path: str | None


def file_path(uri: str) -> Path | None:
    """The local file a `file:` URI names; None for another scheme (an unsaved buffer)."""
    path = to_fs_path(uri) if uri.startswith("file:") else None
    return Path(path) if path is not None else None


class DocumentStore:
    """The open documents by URI, and the recently closed ones (sources of extra context)."""

    def __init__(self) -> None:
        self._open: dict[str, TextDocument] = {}
        self._closed: OrderedDict[str, TextDocument] = OrderedDict()
        self._git_ignored = GitIgnored()

    def open(self, uri: str, language_id: str, version: int, text: str) -> None:
        self._open[uri] = TextDocument(uri, language_id, version, text)
        self._closed.pop(uri, None)

    def change(
        self,
        uri: str,
        version: int,
        changes: Sequence[types.TextDocumentContentChangeEvent],
        encoding: Encoding,
    ) -> None:
        """Apply one `didChange`; a change that cannot apply puts the document out of step."""
        document = self._open.get(uri)
        if document is None:
            log.warning("change to a document that is not open: %s", uri)
            return
        problem = None
        if version < document.version:
            problem = f"version {version} is older than the document's {document.version}"
        else:
            try:
                document.apply_changes(changes, encoding)
            except ValueError as error:
                problem = str(error)
        if problem is not None:
            # The editor's text and this copy now differ: completing from it would be wrong.
            log.warning(
                "refused a change to %s (%s): completions there stop until the editor sends "
                "the whole text again (reopen the file)",
                uri,
                problem,
            )
            document.in_step = False
            return
        whole = types.TextDocumentContentChangeWholeDocument
        if any(isinstance(change, whole) for change in changes):
            document.in_step = True
        document.version = version

    def close(self, uri: str) -> list[str]:
        """Close a document; the URIs of the closed ones that this pushed out of the store."""
        closed = self._open.pop(uri, None)
        if closed is None:
            return []
        self._closed[closed.uri] = closed
        gone = []
        while len(self._closed) > RECENTLY_CLOSED:
            gone.append(self._closed.popitem(last=False)[0])
        return gone

    def get(self, uri: str) -> TextDocument | None:
        """The open document at `uri`, in step with the editor or not."""
        return self._open.get(uri)

    def is_open(self, document: TextDocument) -> bool:
        """Whether this opening of the document lasts (it was neither closed nor opened again)."""
        return self._open.get(document.uri) is document

    def completable(self, uri: str, settings: Settings) -> TextDocument | None:
        """The document to complete in: open, in step with the editor, its language enabled."""
        document = self._open.get(uri)
        if document is None or not document.in_step:
            return None
        return document if settings.language_enabled(document.language_id) else None

    def sources(self, uri: str) -> list[Source]:
        """Snapshots of every document but `uri`: the open ones, then the closed, newest first.

        Taken on the event loop, so that later edits cannot race the thread that reads them.
        """
        return [
            Source(other, other.version, tuple(other.lines))
            for other in [*self._open.values(), *reversed(self._closed.values())]
            if other.uri != uri
        ]

    def may_share(self, document: TextDocument, settings: Settings, workspace: Workspace) -> bool:
        """Whether a document's text may go into another's prompt: not excluded, inside a
        workspace folder (after symlinks, unless `shareOutsideWorkspace`), and neither the file
        nor what it links to git-ignored. Safe from any thread; undecidable means no."""
        if not settings.language_enabled(document.language_id):
            return False
        path = file_path(document.uri)
        if path is None:
            return True
        try:
            real = path.resolve()
        except (OSError, RuntimeError, ValueError):  # RuntimeError: a symlink loop
            return False
        if not settings.share_outside_workspace and not any(
            real.is_relative_to(folder) for folder in _resolved_folders(workspace)
        ):
            return False
        ignored = self._git_ignored
        return not ignored(path) and (real == path or not ignored(real))


def shown_path(uri: str, workspace: Workspace) -> str:
    """A file's path as the prompt names it: relative to its workspace folder if under one."""
    path = file_path(uri)
    if path is None:
        return uri
    roots = [file_path(folder) for folder in workspace.folder_uris]
    root = workspace.root_path
    for folder in [*roots, Path(root) if root else None]:
        if folder is not None and path.is_relative_to(folder):
            return path.relative_to(folder).as_posix()
    return str(path)


def _resolved_folders(workspace: Workspace) -> list[Path]:
    """The workspace's folders, symlinks resolved: its folders, or its root if it names none."""
    uris = list(workspace.folder_uris)
    if not uris and workspace.root_uri:
        uris = [workspace.root_uri]
    folders = []
    for uri in uris:
        path = file_path(uri)
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            if path is not None:
                folders.append(path.resolve())
    return folders
