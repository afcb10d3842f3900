#!/usr/bin/env bash
# Fuzzing: a bounded run of every cargo-fuzz target of every fuzz workspace (crates/*/fuzz),
# one after the other, and a markdown table of what libFuzzer reports at the end of each.
#
# Per target TARGET of crates/CRATE/fuzz:
#   corpus   crates/CRATE/fuzz/corpus/TARGET (gitignored; kept between runs, so each run
#            starts where the last one stopped; new inputs are written here)
#   seeds    crates/CRATE/fuzz/seeds/TARGET  (committed, read-only: valid messages to start from)
#   dict     crates/CRATE/fuzz/dicts/TARGET.dict (committed, optional: libFuzzer -dict)
#   crashes  crates/CRATE/fuzz/artifacts/TARGET/crash-* (gitignored); the run of that target
#            stops at its first crash, the script goes on with the next target
# Columns: runs and execs/s (stat::number_of_executed_units, stat::average_exec_per_sec),
# cov and ft (libFuzzer's last status line: covered edges, and features: edges with hit
# counts, value profiles...), corpus (inputs in the corpus at the end), crashes (crash, oom,
# timeout or leak artifacts written by this run).
#
# Usage: bench/fuzz.sh [--seconds N] [--targets LIST] [--strict] [--write] [--keep]
#   --seconds N     libFuzzer -max_total_time per target (default 30)
#   --targets LIST  comma-separated CRATE/TARGET (e.g. configsync/call,carp/decode); default all
#   --strict        TANDEM_FUZZ_STRICT=1: the targets also check the contracts of findings
#                   still open (crates/configsync/tests/fuzz_findings.rs), to re-find or
#                   verify them
#   --write         replace the marked fuzz section of bench/README.md with the results
#   --keep          keep the temp dir with the build and libFuzzer logs
# Needs: a nightly toolchain (`rustup toolchain install nightly`); installs cargo-fuzz with
# `cargo install cargo-fuzz --locked` when it is missing. Builds and fuzzing run under
# `nice -n 10`. Exits 1 when any target crashed (after printing the table).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SECONDS_PER=30
TARGETS=""
STRICT=0
WRITE=0
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) SECONDS_PER=$2; shift 2 ;;
        --targets) TARGETS=$2; shift 2 ;;
        --strict) STRICT=1; shift ;;
        --write) WRITE=1; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
case "$SECONDS_PER" in ''|*[!0-9]*|0) echo "--seconds needs a positive integer" >&2; exit 2 ;; esac

log() { echo "[fuzz.sh] $*" >&2; }

rustup toolchain list 2>/dev/null | grep -q '^nightly' || {
    echo "no nightly toolchain (cargo-fuzz needs one): rustup toolchain install nightly" >&2
    exit 1
}
if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    nice -n 10 cargo install cargo-fuzz --locked
fi
if [ "$STRICT" = 1 ]; then export TANDEM_FUZZ_STRICT=1; else unset TANDEM_FUZZ_STRICT; fi

TMP=$(mktemp -d)
if [ "$KEEP" = 1 ]; then
    log "logs in $TMP"
else
    trap 'rm -rf "$TMP"' EXIT
fi
LOAD_AVG_START=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)

# Every fuzz workspace and its targets, in path order.
: >"$TMP/plan"
for dir in "$ROOT"/crates/*/fuzz; do
    [ -f "$dir/Cargo.toml" ] || continue
    crate=$(basename "$(dirname "$dir")")
    (cd "$dir/.." && cargo +nightly fuzz list) | while read -r t; do
        [ -n "$t" ] || continue
        if [ -z "$TARGETS" ] || case ",$TARGETS," in *",$crate/$t,"*) true ;; *) false ;; esac; then
            echo "$crate $t" >>"$TMP/plan"
        fi
    done
done
[ -s "$TMP/plan" ] || { echo "no fuzz targets match '${TARGETS:-all}'" >&2; exit 2; }

CRASHED=0
: >"$TMP/rows"
: >"$TMP/crashes"
built=""
while read -r crate t; do
    dir="$ROOT/crates/$crate/fuzz"
    if ! case " $built " in *" $crate "*) true ;; *) false ;; esac; then
        log "building the fuzz targets of crates/$crate (cargo +nightly fuzz build)"
        (cd "$dir/.." && nice -n 10 cargo +nightly fuzz build) >"$TMP/build-$crate.log" 2>&1 || {
            cat "$TMP/build-$crate.log" >&2
            exit 1
        }
        built="$built $crate"
    fi
    corpus="$dir/corpus/$t"
    mkdir -p "$corpus" "$dir/artifacts/$t"
    dirs=("$corpus")
    [ -d "$dir/seeds/$t" ] && dirs+=("$dir/seeds/$t")
    opts=(-max_total_time="$SECONDS_PER" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048)
    [ -f "$dir/dicts/$t.dict" ] && opts+=(-dict="$dir/dicts/$t.dict")
    before=$(find "$dir/artifacts/$t" -type f | wc -l)
    log "$crate/$t: ${SECONDS_PER} s"
    out="$TMP/run-$crate-$t.log"
    set +e
    (cd "$dir/.." && nice -n 10 cargo +nightly fuzz run "$t" "${dirs[@]}" -- "${opts[@]}") >"$out" 2>&1
    rc=$?
    set -e
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out" | tail -1)
    status=$(grep -E '^#[0-9]+.* cov: [0-9]+ ft: [0-9]+' "$out" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\) .*/\1/p' <<<"$status")
    ft=$(sed -n 's/.* ft: \([0-9]*\) .*/\1/p' <<<"$status")
    corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$status")
    written=$(grep -oE 'Test unit written to [^ ]+' "$out" | sed 's/Test unit written to //' || true)
    crashes=$(grep -cE '/(crash|oom|timeout|leak)-' <<<"$written" || true)
    after=$(find "$dir/artifacts/$t" -type f | wc -l)
    if [ "$rc" != 0 ] && [ "$crashes" = 0 ]; then
        # A failure without an artifact (e.g. the build): show it and count it.
        crashes=1
        written="(no artifact; exit status $rc)"
    fi
    if [ "$crashes" != 0 ]; then
        CRASHED=1
        {
            echo "### $crate/$t"
            echo "artifacts: $written ($((after - before)) new file(s) in fuzz/artifacts/$t)"
            echo '```'
            grep -A12 -E "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer" "$out" | head -40
            echo '```'
        } >>"$TMP/crashes"
        log "$crate/$t crashed: $written"
    fi
    echo "| $crate/$t | ${runs:-?} | ${eps:-?} | ${cov:-?} | ${ft:-?} | ${corp:-?} | $crashes |" >>"$TMP/rows"
done <"$TMP/plan"

REPORT=$(
    echo "Measured $(date -u +%Y-%m-%d) on Linux $(uname -r), $(nproc) CPUs (load average at start: $LOAD_AVG_START); commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- crates 2>/dev/null || echo ' (crates/ modified)'); $(cargo +nightly --version | cut -d' ' -f2-), cargo-fuzz $(cargo fuzz --version | awk '{print $2}'); ${SECONDS_PER} s per target under nice -n 10$([ "$STRICT" = 1 ] && echo ', strict (open findings checked too)'), one target at a time; corpora kept from earlier runs."
    echo
    echo "| target | runs | execs/s | cov | ft | corpus | crashes |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    cat "$TMP/rows"
)
echo "$REPORT"
if [ -s "$TMP/crashes" ]; then
    echo
    cat "$TMP/crashes"
fi

if [ "$WRITE" = 1 ]; then
    README="$HERE/README.md"
    BEGIN="<!-- fuzz:begin (generated by bench/fuzz.sh --write; do not edit by hand) -->"
    END="<!-- fuzz:end -->"
    if ! grep -qF "<!-- fuzz:begin" "$README"; then
        printf '\n%s\n%s\n' "$BEGIN" "$END" >>"$README"
    fi
    printf '%s\n' "$REPORT" >"$TMP/report.md"
    awk -v b="$BEGIN" -v f="$TMP/report.md" '
        index($0, "<!-- fuzz:begin") == 1 { print b; while ((getline l < f) > 0) print l; skip = 1; next }
        index($0, "<!-- fuzz:end") == 1 { skip = 0 }
        !skip { print }' "$README" >"$TMP/README.new"
    cat "$TMP/README.new" >"$README"
    log "updated the fuzz section of $README"
fi
exit "$CRASHED"
