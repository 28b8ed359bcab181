#!/usr/bin/env bash
# Fresh-machine setup of the project venv, idempotent: every step is skipped when the
# inputs it depends on (hashed into a stamp file) have not changed since the last run.
#   1. .venv with the pinned Python dependencies (library, ROS 2 Kilted wheels, dev tools)
#   2. the dsflash_ros package installed in editable mode (the `dsflash` command)
#   3. the dsflash_ros messages built with rosidl/cmake against the wheels, installed into .venv
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
stamps="$venv/.dsflash-stamps"
python="${PYTHON:-python3}"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

# Hash of files + a salt; a step reruns when this changes.
inputs_hash() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
is_done() { [ -f "$stamps/$1" ] && [ "$(cat "$stamps/$1")" = "$2" ]; }
mark_done() { mkdir -p "$stamps"; echo "$2" > "$stamps/$1"; }

# --- 1. venv + dependencies -------------------------------------------------------------
if [ ! -x "$venv/bin/python" ]; then
  command -v "$python" >/dev/null || die "$python not found; set PYTHON=/path/to/python3.11"
  "$python" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' 2>/dev/null \
    || die "Python 3.11 is required (found $("$python" --version 2>&1)); set PYTHON=..."
  say "creating $venv"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)

h=$(inputs_hash requirements/base.txt requirements/ros.txt requirements/dev.txt)
if ! is_done deps "$h"; then
  say "installing pinned dependencies (a few minutes on a fresh machine)"
  "${pip[@]}" install -q --upgrade pip setuptools wheel
  "${pip[@]}" install -q -r requirements/base.txt -r requirements/ros.txt -r requirements/dev.txt
  mark_done deps "$h"
else
  say "dependencies up to date"
fi

# --- 2. the package itself (editable) ------------------------------------------------------
h=$(inputs_hash setup.py <(echo "$h"))
if ! is_done package "$h"; then
  say "installing dsflash_ros (editable)"
  # compat mode: a plain path entry, so pkgutil.extend_path can join the generated messages.
  mkdir -p build
  "${pip[@]}" install --no-deps --no-build-isolation -e . --config-settings editable_mode=compat \
    >build/pip-editable.log 2>&1 || { tail -30 build/pip-editable.log; die "pip install -e . failed"; }
  mark_done package "$h"
else
  say "package up to date"
fi

# --- 3. messages ----------------------------------------------------------------------------
h=$(inputs_hash msg/*.msg CMakeLists.txt package.xml dsflash_ros/__init__.py scripts/setup.sh \
    <(echo "$h"))
if ! is_done msgs "$h"; then
  say "building dsflash_ros messages against the ROS 2 wheels"
  # The wheels' exported CMake files name the include dirs of the machine that built them;
  # point them at this venv's Python and numpy headers.
  py_inc=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("include"))')
  np_inc=$("$venv/bin/python" -c 'import numpy; print(numpy.get_include())')
  { grep -rlZ --include='*.cmake' '/opt/python/cp311-cp311' "$venv/share" 2>/dev/null || true; } \
    | xargs -0 -r sed -i \
        -e "s#/opt/python/cp311-cp311/include/python3.11#$py_inc#g" \
        -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_inc#g"
  generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  rm -rf build/venv && mkdir -p build
  AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv" \
    cmake -S . -B build/venv "${generator[@]}" \
      -DPython3_EXECUTABLE="$venv/bin/python" -DBUILD_TESTING=OFF \
      -DDSFLASH_INSTALL_PYTHON=OFF -DCMAKE_INSTALL_PREFIX="$venv" >build/venv-configure.log 2>&1 \
    || { tail -30 build/venv-configure.log; die "cmake configure failed (log: build/venv-configure.log)"; }
  cmake --build build/venv -j "$(nproc)" >build/venv-build.log 2>&1 \
    || { tail -30 build/venv-build.log; die "message build failed (log: build/venv-build.log)"; }
  cmake --install build/venv >build/venv-install.log 2>&1 \
    || { tail -30 build/venv-install.log; die "message install failed"; }
  # rosidl registers the generated package as a distribution named dsflash_ros, which
  # pip would take for our editable install and uninstall (deleting the messages).
  rm -rf "$venv"/lib/python3.*/site-packages/dsflash_ros-*.egg-info
  mark_done msgs "$h"
else
  say "messages up to date"
fi

"$venv/bin/python" - <<'EOF' || die "the venv is incomplete; remove .venv and run again"
import dsflash_ros
from dsflash_ros.msg import SceneGraph  # generated
import dsflash_ros.model.config  # hand-written
EOF
say "ready: $venv"
