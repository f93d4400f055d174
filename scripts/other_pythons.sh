#!/usr/bin/env bash
# The suite on the other Pythons the package claims (pyproject: requires-python >= 3.10): .ci/run
# runs the whole suite on python3, then this. For each other minor version found (pyenv's
# versions, python3.X on PATH) it makes a venv (.venv-3.X) and runs SUBSET below, not the slow
# tests, under CI=true; scripts/subset_covers.py then checks that the subset imported every
# module of rolectl. The versions run in parallel, each with two workers.
set -euo pipefail
cd "$(dirname "$0")/.."

# Files and tests that together import every module of rolectl (checked), quick ones where there is a choice.
SUBSET=(
    tests/test_cache.py tests/test_store.py tests/test_schema.py tests/test_follower.py
    tests/test_pg_store.py tests/test_pg_tail.py tests/test_pg_checks.py
    tests/test_pg_access.py::test_bad_requests_are_one_line_and_change_nothing
    tests/test_help.py tests/test_doctor.py::test_dangling_references_are_integrity_errors
    tests/test_cli_pg_doctor.py::test_damage_is_an_error_and_exit_6
    tests/test_cli_copy.py::test_sqlite_to_postgres_keeps_everything_and_doctor_passes
    tests/test_pg_copy.py::test_copy_keeps_everything_and_doctor_passes
    tests/test_backup_restore.py tests/test_simulate_engine.py tests/test_simulate_chart.py
    tests/test_simulate_live.py tests/test_demo.py
    tests/test_integration_aiogram.py::test_unknown_role_is_refused_at_definition
    tests/test_integration_telegram.py tests/test_metrics.py tests/test_render.py tests/test_render_safe.py
    tests/test_bad_input.py::test_bad_batch_files tests/test_connect_aio.py tests/test_fork.py
    tests/test_stats_view.py tests/test_sqlite_tail.py tests/test_health.py tests/test_registry.py
    tests/test_simulate_moderation.py tests/test_grants_repository.py tests/test_cache_grants.py
)

main_version=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
declare -A found=()
for py in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/*/bin/python $(compgen -c python3. | sort -u); do
    path=$(command -v "$py" 2>/dev/null) || continue
    # only what requires-python admits: "3.X", or nothing
    version=$("$path" -c 'import sys; sys.version_info >= (3, 10) and print("%d.%d" % sys.version_info[:2])' \
              2>/dev/null) || continue
    [ -n "$version" ] && [ "$version" != "$main_version" ] && [ -z "${found[$version]:-}" ] || continue
    found[$version]=$path
done
if [ "${#found[@]}" -eq 0 ]; then
    echo "other Pythons: none found besides $main_version"
    exit 0
fi

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
# One install at a time: editable installs write the same rolectl.egg-info.
for version in "${!found[@]}"; do
    "${found[$version]}" -m venv ".venv-$version" && ".venv-$version/bin/pip" install -q -e '.[test]'
done
pids=()
for version in "${!found[@]}"; do
    (
        start=$SECONDS
        status=0
        CI=true TEST_MODULES_DIR="$logs/modules-$version" ".venv-$version/bin/python" -m pytest -q -n 2 \
            -m "not slow" -p no:cacheprovider "${SUBSET[@]}" >"$logs/$version.log" 2>&1 \
            && ".venv-$version/bin/python" scripts/subset_covers.py "$logs/modules-$version" >>"$logs/$version.log" 2>&1 \
            || status=$?
        echo "Python $version: $(grep -E '(passed|failed|error)' "$logs/$version.log" | tail -n 1)," \
             "$(tail -n 1 "$logs/$version.log") ($((SECONDS - start)) s)"
        exit $status
    ) &
    pids+=("$!:$version")
done
failed=0
for entry in "${pids[@]}"; do
    if ! wait "${entry%%:*}"; then
        failed=1
        echo "---- Python ${entry#*:} failed:"
        tail -n 40 "$logs/${entry#*:}.log"
    fi
done
exit $failed
