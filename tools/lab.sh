#!/usr/bin/env bash
# JupyterLab on the book: chapters (py:percent) open as notebooks on a double click (jupytext), and it starts as root.
# usage: tools/lab.sh VENV_BIN [jupyter lab options ...]   (make lab passes .venv/bin and $(LAB_ARGS))
set -euo pipefail
bin=$1
shift
repo=$(cd "$(dirname "$0")/.." && pwd)
root=()
# jupyter refuses to start as root without --allow-root; root is the usual user in containers and on cloud machines.
[ "$(id -u)" = 0 ] && root=(--allow-root)
# app_settings_dir holds overrides.json: the default viewer of Python files is jupytext's notebook (the repo's copy,
# so nothing is written into the venv or the user's ~/.jupyter).
exec "$bin/jupyter" lab --notebook-dir="$repo/notebooks" --LabApp.app_settings_dir="$repo/tools/lab" ${root[@]+"${root[@]}"} "$@"
