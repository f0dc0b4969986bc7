#!/usr/bin/env bash
# The checkout that `bash bench/run --baseline REV` measures as the target "baseline":
#   bash bench/baseline_setup.sh REV [VENV_NAME]
# A git worktree of REV outside the repo, /tmp/bench-baseline-<first 12 digits of its sha>
# (BENCH_BASELINE_ROOT instead of /tmp), with a venv VENV_NAME (.venv by default) made by
# $PYTHON (python3 by default) and `pip install -e '.[fast]'` in it: REV's own dependencies.
# Both are reused when they exist for that sha.  Only the package registry is on the network.
# Prints the worktree's path on stdout; everything else goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

rev="${1:?usage: bash bench/baseline_setup.sh REV [VENV_NAME]}"
venv_name="${2:-.venv}"
python="${PYTHON:-python3}"

if ! sha=$(git rev-parse --verify --quiet "$rev^{commit}"); then
    echo "bench: --baseline $rev: not a commit of this repository" >&2
    exit 2
fi
dir="${BENCH_BASELINE_ROOT:-/tmp}/bench-baseline-${sha:0:12}"

if [ -e "$dir/.git" ]; then
    # reused: it must still be that revision, unmodified, or the figures would lie
    head=$(git -C "$dir" rev-parse HEAD)
    if [ "$head" != "$sha" ] || [ -n "$(git -C "$dir" status --porcelain --untracked-files=no)" ]; then
        echo "bench: $dir is not a clean checkout of $sha; remove it: git worktree remove --force $dir" >&2
        exit 2
    fi
elif [ -e "$dir" ]; then
    echo "bench: $dir exists and is not a git worktree; remove it" >&2
    exit 2
else
    echo "bench: checking out $sha in $dir" >&2
    # --force: the path may still be registered as a worktree whose directory is gone (a cleaned /tmp)
    git worktree add --force --detach "$dir" "$sha" >&2
fi

venv="$dir/$venv_name"
if [ ! -x "$venv/bin/python" ]; then
    echo "bench: creating $venv with $python" >&2
    "$python" -m venv "$venv"
fi
# the same stamp as bench/run's; a checked-out revision's pyproject.toml does not change, so once
if [ ! -e "$venv/.installed" ] || [ "$dir/pyproject.toml" -nt "$venv/.installed" ]; then
    echo "bench: installing the baseline gateway into $venv" >&2
    (cd "$dir" && "$venv/bin/pip" install -q -e '.[fast]') >&2
    touch "$venv/.installed"
fi
echo "$dir"
