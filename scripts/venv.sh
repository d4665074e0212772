# Sourced by scripts/setup.sh and scripts/test_jax.sh: one way to keep a virtual environment current.
#
# ensure_venv VENV KEY PIP_ARGS [PIP_ARGS...]
#   Creates VENV (python3 -m venv) if it has no python, then runs one `pip install` per PIP_ARGS
#   argument (each split into words) unless VENV/.install-stamp already holds KEY. Callers put
#   in KEY everything the install depends on (the sha256 of pyproject.toml, the package list), so a
#   changed dependency reaches an existing VENV on the next run and an unchanged one costs nothing.
#   The stamp is written after pip succeeds, so a failed or interrupted install is retried.
ensure_venv() {
  local venv=$1 key=$2 args words
  shift 2
  if [ ! -x "$venv/bin/python" ]; then
    echo "setup: creating $venv (python3 -m venv)"
    python3 -m venv "$venv"
  fi
  if [ "$(cat "$venv/.install-stamp" 2>/dev/null)" = "$key" ]; then
    echo "setup: $venv is up to date"
    return 0
  fi
  echo "setup: upgrading pip in $venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  for args in "$@"; do
    echo "setup: pip install $args (into $venv)"
    # pip >= 25 shows setuptools' "Editable installation ... be careful with folders named like
    # your package" note, which every package-dir mapping (zoo/, export/) gets; it is no warning.
    read -r -a words <<< "$args"  # split on spaces, no glob expansion of ".[dev]"
    # pip's progress, one line per package it fetches (a first install takes minutes); its
    # errors go to stderr as they are.
    PYTHONWARNINGS="${PYTHONWARNINGS:+$PYTHONWARNINGS,}ignore:Editable installation" \
      "$venv/bin/python" -m pip install --progress-bar off "${words[@]}" | pip_progress
    if [ "${PIPESTATUS[0]}" != 0 ]; then  # whatever the caller's pipefail setting
      echo "setup: pip install $args failed" >&2
      return 1
    fi
  done
  printf '%s\n' "$key" > "$venv/.install-stamp"
}

# pip's stdout, less its "Requirement already satisfied" chatter: "Collecting NAME" per package
# fetched, then what was installed.
pip_progress() {
  grep --line-buffered -E '^(Collecting|Installing collected|Successfully installed)' | sed -u 's/^/setup:   pip: /' || true
}

# The sha256 of pyproject.toml: what the package's dependencies are.
pyproject_hash() {
  sha256sum pyproject.toml | cut -d' ' -f1
}
