"""Which files' text may go into another file's prompt: git-ignored ones never, files outside the
workspace only when asked, and no git configuration from a workspace ever runs a program."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from lsprotocol import types
from support.lsp_session import inline_params, open_document, prompt_at, session

from codellama_lsp.documents.git_ignore import GitIgnored

MAIN = "from shop.models import Invoice\n\n\ndef bill(number, total, rate):\n    return Invoice(\n"
SHARED = "class Invoice:\n    def with_tax(self, rate):\n        return self.total * (1 + rate)\n"
CURSOR = types.Position(4, 19)


def secret(name: str) -> str:
    """A file's text that names the cursor's words, so it is chosen whenever it may be."""
    return f"class Invoice:  # {name}\n    def with_tax(self, rate):  # {name}\n        return 0\n"


@pytest.fixture(autouse=True)
def own_home(tmp_path, monkeypatch):
    """The server (a subprocess) reads the user's git config: give it an empty home."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    return home


def make_repo(folder: Path, config: str = "") -> Path:
    """A repository as git sees one, made without git (nothing of git is needed to read it)."""
    (folder / ".git" / "objects").mkdir(parents=True)
    (folder / ".git" / "refs").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (folder / ".git" / "config").write_text(
        "[core]\n\trepositoryformatversion = 0\n\tbare = false\n" + config
    )
    return folder


def add_folder(client, folder: Path) -> None:
    event = types.WorkspaceFoldersChangeEvent(
        added=[types.WorkspaceFolder(folder.as_uri(), folder.name)], removed=[]
    )
    client.workspace_did_change_workspace_folders(types.DidChangeWorkspaceFoldersParams(event))


def remove_folder(client, folder: Path) -> None:
    event = types.WorkspaceFoldersChangeEvent(
        added=[], removed=[types.WorkspaceFolder(folder.as_uri(), folder.name)]
    )
    client.workspace_did_change_workspace_folders(types.DidChangeWorkspaceFoldersParams(event))


async def shared_text(client, main: Path) -> str:
    return (await prompt_at(client, main.as_uri(), CURSOR))["text"]


async def test_no_git_config_of_a_workspace_runs_a_program(tiny_model_dir, tmp_path):
    marker = tmp_path / "marker"
    script = tmp_path / "run-me.sh"
    script.write_text(f'#!/bin/sh\necho "$0 $*" >> "{marker}"\ncat >/dev/null 2>&1 || true\n')
    script.chmod(0o755)
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for hook in ("pre-commit", "post-checkout", "post-index-change", "reference-transaction"):
        (hooks / hook).symlink_to(script)
    repo = make_repo(
        tmp_path / "repo",
        f"\tfsmonitor = {script}\n\thooksPath = {hooks}\n\tpager = {script}\n"
        f"\teditor = {script}\n\tsshCommand = {script}\n"
        f'[diff]\n\texternal = {script}\n[filter "x"]\n\tprocess = {script}\n'
        f"\tclean = {script}\n\tsmudge = {script}\n",
    )
    (repo / ".gitattributes").write_text("* filter=x diff=x\n")
    main, models = repo / "main.py", repo / "models.py"
    async with session({"model": str(tiny_model_dir)}) as client:
        add_folder(client, repo)
        open_document(client, main.as_uri(), MAIN)
        open_document(client, models.as_uri(), SHARED)
        await client.text_document_inline_completion_async(inline_params(main.as_uri(), CURSOR))
        assert "models.py\n# class Invoice:" in await shared_text(client, main)
    assert not marker.exists(), marker.read_text()


async def test_git_ignored_and_undecidable_files_are_not_shared(tiny_model_dir, tmp_path):
    repo = make_repo(tmp_path / "repo")
    (repo / ".gitignore").write_text(".env\nbuild/\n!build/kept.py\n")
    (repo / "build").mkdir()
    (repo / "odd").mkdir()
    os.mkfifo(repo / "odd" / ".gitignore")  # reading it would block: undecidable
    (repo / "dir").mkdir()
    (repo / "dir" / ".gitignore").mkdir()  # a folder, not a file: undecidable
    (repo / ".git" / "info").mkdir()
    (repo / ".git" / "info" / "exclude").write_text("excluded.py\n")
    main = repo / "main.py"
    others = {
        "models.py": True,
        ".env": False,
        "build/kept.py": False,  # git cannot re-include a file of an ignored folder
        "excluded.py": False,
        "odd/fifo_side.py": False,
        "dir/beside.py": False,
        ".git/notes.py": False,
    }
    async with session({"model": str(tiny_model_dir)}) as client:
        add_folder(client, repo)
        open_document(client, main.as_uri(), MAIN)
        for index, name in enumerate(others):
            open_document(client, (repo / name).as_uri(), secret(f"SECRET{index}"))
        text = await shared_text(client, main)
    for index, (name, shared) in enumerate(others.items()):
        assert (f"SECRET{index}" in text) == shared, name
        assert (f"# Path: {name}\n" in text) == shared, name


async def test_files_outside_the_workspace_are_shared_only_when_asked(tiny_model_dir, tmp_path):
    workspace, elsewhere = tmp_path / "workspace", tmp_path / "elsewhere"
    workspace.mkdir()
    elsewhere.mkdir()
    (elsewhere / "id_rsa").write_text(secret("PRIVATE KEY"))
    (workspace / "link.py").symlink_to(elsewhere / "id_rsa")
    main = workspace / "main.py"

    async def shown(
        folder: Path | None, args: tuple[str, ...] = (), options: dict[str, object] | None = None
    ) -> str:
        options = {"model": str(tiny_model_dir), **(options or {})}
        async with session(options, args=args) as client:
            if folder is not None:
                add_folder(client, folder)
            open_document(client, main.as_uri(), MAIN)
            open_document(client, (elsewhere / "id_rsa").as_uri(), secret("PRIVATE KEY"))
            open_document(client, (workspace / "link.py").as_uri(), secret("LINKED KEY"))
            open_document(client, (workspace / "models.py").as_uri(), SHARED)
            text = await shared_text(client, main)
            if folder is not None:
                remove_folder(client, folder)
                removed = await shared_text(client, main)
                assert "# Path:" not in removed
            return text

    inside = await shown(workspace)
    assert "# Path: models.py\n" in inside
    assert "PRIVATE KEY" not in inside and "LINKED KEY" not in inside
    alone = await shown(None)  # a file opened with no folder: nothing else is shared
    assert "# Path:" not in alone
    asked = await shown(None, args=("--share-outside-workspace", "on"))
    assert "PRIVATE KEY" in asked and "LINKED KEY" in asked
    # From an editor it is refused: a workspace's own settings may send it.
    refused = await shown(None, options={"shareOutsideWorkspace": True})
    assert "# Path:" not in refused


GIT_BATTERY = {
    ".gitignore": (
        "*.log\n!keep.log\nbuild/\n!build/keep.py\n/anchored.py\ndocs/**/secret.py\n"
        "x/**\n!x/keep.py\n*.txt\n!/notes/\nfoo/*\n!foo/bar/\ngone\n# a comment\n\\#hash.py\n"
        "ignored_dir/\n"
    ),
    "sub/.gitignore": "!*.log\nlocal.py\n/only_here.py\n",
    "sub/deep/.gitignore": "*\n!*/\n!*.py\n",
    "ignored_dir/.gitignore": "!*\n",
    "nested/repo/.gitignore": "inner.py\n",
}
GIT_FILES = [
    "a.log", "keep.log", "sub/a.log", "build/a.py", "build/keep.py", "anchored.py",
    "sub/anchored.py", "docs/secret.py", "docs/a/b/secret.py", "x/keep.py", "x/b.py", "x/y/z.py",
    "a.txt", "notes/a.txt", "notes/a.py", "foo/c.py", "foo/bar/a.py", "foo/baz/a.py",
    "gone/a.py", "sub/gone", "#hash.py", "sub/local.py", "local.py", "sub/only_here.py",
    "sub/x/only_here.py", "sub/deep/a.py", "sub/deep/a.md", "sub/deep/more/b.py",
    "sub/deep/more/b.md", "ignored_dir/a.py", "by_info.py", "sub/by_info.py", "by_user.py",
    "x.bak", "plain.py", "nested/repo/inner.py", "nested/inner.py",
]  # fmt: skip


def git_check_ignore(repo: Path, home: Path, paths: list[str]) -> set[str]:
    """What a git that runs nothing of the repository's own says is ignored."""
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "PATH": os.environ.get("PATH", ""),
    }
    done = subprocess.run(
        ["git", "-c", "core.fsmonitor=false", "check-ignore", "--", *paths],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    return set(done.stdout.splitlines())


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_rules_are_gits_rules(tmp_path, own_home):
    repo = make_repo(tmp_path / "repo")
    for name, text in GIT_BATTERY.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    make_repo(repo / "nested" / "repo")  # its own repository: git leaves it to its own rules
    (repo / ".git" / "info").mkdir()
    (repo / ".git" / "info" / "exclude").write_text("/by_info.py\n")
    (own_home / ".gitconfig").write_text('[core]\n\texcludesFile = "~/user-ignore"\n')
    (own_home / "user-ignore").write_text("by_user.py\n*.bak\n")
    outer = [name for name in GIT_FILES if not name.startswith("nested/repo/")]
    for name in GIT_FILES:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).touch()
    expected = git_check_ignore(repo, own_home, outer)
    expected |= {
        f"nested/repo/{n}" for n in git_check_ignore(repo / "nested/repo", own_home, ["inner.py"])
    }
    ignored = GitIgnored()
    assert {name for name in GIT_FILES if ignored(repo / name)} == expected
    assert {"build/keep.py", "x/b.py", "sub/deep/a.md", "by_user.py", "by_info.py"} <= expected


def test_an_edited_gitignore_counts_and_the_cache_is_bounded_in_bytes(tmp_path):
    repo = make_repo(tmp_path / "repo")
    ignored = GitIgnored(cache_bytes=64 * 1024)
    (repo / ".gitignore").write_text("a.py\n")
    assert ignored(repo / "a.py") and not ignored(repo / "b.py")
    (repo / ".gitignore").write_text("b.py\n" + "# padding\n" * 10)
    assert ignored(repo / "b.py") and not ignored(repo / "a.py")
    for index in range(40):  # 40 folders of 4 KiB rules: more than the cache holds
        folder = repo / f"f{index}"
        folder.mkdir()
        (folder / ".gitignore").write_text("x.py\n" + "#" * 4096 + "\n")
        assert ignored(folder / "x.py") and not ignored(folder / "y.py")
        assert ignored.cached_bytes <= 64 * 1024


def test_a_file_whose_status_cannot_be_read_is_not_shared(tmp_path):
    repo = make_repo(tmp_path / "repo")
    (repo / ".gitignore").write_bytes(b"#" * (2 << 20))  # larger than any ignore file read
    ignored = GitIgnored()
    assert ignored(repo / "a.py")
    (repo / ".gitignore").unlink()
    (repo / ".gitignore").symlink_to(repo / ".gitignore")  # a loop
    assert ignored(repo / "a.py")
    (repo / ".gitignore").unlink()
    assert not ignored(repo / "a.py")
    assert not ignored(tmp_path / "outside" / "a.py")  # no repository: git ignores nothing
    (repo / "worktree").mkdir()
    (repo / "worktree" / ".git").write_text("not a gitdir line\n")
    assert ignored(repo / "worktree" / "a.py")
