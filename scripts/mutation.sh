#!/usr/bin/env bash
# Mutation testing of one module against only its own test files (mutmut), niced, in a scratch copy of the project
# so that nothing is written into the working tree. Not part of the default test run.
#   scripts/mutation.sh musicgen_core/patterns.py tests/test_patterns.py
#   scripts/mutation.sh all        # the modules below, one at a time
# Prints the mutants killed / total per module and lists the survivors (`mutmut show NAME` in the scratch folder
# prints a survivor's diff; the folder is kept for that and named on the last line).
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A TESTS=(
  [musicgen_core/patterns.py]="tests/test_patterns.py"
  [musicgen_core/conditioning/chroma.py]="tests/test_chroma.py"
  [musicgen_core/validation.py]="tests/test_validation.py"
  [musicgen_core/audio.py]="tests/test_audio_write.py tests/test_validation.py"
  [musicgen_core/sampling.py]="tests/test_generate.py tests/test_compiled.py"
)
if [[ "${1:-}" == all ]]; then
  for module in "${!TESTS[@]}"; do "$0" "$module" ${TESTS[$module]}; done
  exit 0
fi
module=$1; shift
if (($#)); then tests=("$@"); else read -ra tests <<< "${TESTS[$module]}"; fi
scratch=$(mktemp -d -t mutation.XXXXXX)
cp -r musicgen_core tests pyproject.toml "$scratch"/
find "$scratch" -name __pycache__ -prune -exec rm -rf {} +
{ echo "[mutmut]"; echo "source_paths = musicgen_core"; echo "only_mutate = $module"
  echo "pytest_add_cli_args_test_selection ="; printf '    %s\n' "${tests[@]}"
  echo "pytest_add_cli_args ="; printf '    %s\n' -p no:cacheprovider -m "not slow" --timeout=300
} > "$scratch/setup.cfg"
cd "$scratch"
# One thread: mutmut forks its test process per mutant, and a forked OpenMP thread pool hangs (every mutant
# would time out).
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 mutmut run --max-children "${MUTATION_JOBS:-1}" > mutmut.log 2>&1 || { tail -30 mutmut.log; exit 1; }
mutmut results --all true > results.txt 2>&1 || true
python - "$module" <<'PY'
import re, sys
lines = [l.strip() for l in open("results.txt") if ":" in l]
status = {l.rsplit(":", 1)[0]: l.rsplit(":", 1)[1].strip() for l in lines}
# a mutant that makes the tests hang is caught too (the run times out, as pytest-timeout would fail it)
killed = sum(s in ("killed", "timeout") for s in status.values())
survivors = sorted(k for k, s in status.items() if s not in ("killed", "timeout"))
print(f"{sys.argv[1]}: {killed}/{len(status)} killed or timed out ({100 * killed / max(1, len(status)):.1f} %)")
for name in survivors:
    print(f"  {status[name]}: {name}")
PY
echo "scratch folder: $scratch"
