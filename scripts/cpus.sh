# Sourced by echo-bench.sh and scale-bench.sh: the CPUs this process may use.

# expand_cpus "0-2,5" -> "0 1 2 5"
expand_cpus() {
    local part c out=()
    IFS=',' read -r -a parts <<<"$1"
    for part in "${parts[@]}"; do
        if [[ "$part" == *-* ]]; then
            # 10#: a leading zero is not octal (08 is CPU 8).
            for ((c = 10#${part%-*}; c <= 10#${part#*-}; c++)); do out+=("$c"); done
        else
            out+=("$((10#$part))")
        fi
    done
    echo "${out[@]}"
}

# allowed_cpus: this process's affinity as a list ("0 1"), every CPU without taskset.
allowed_cpus() {
    local allowed
    if command -v taskset >/dev/null; then
        allowed="$(taskset -pc $$ | sed 's/.*: //')"
    else
        allowed="0-$(($(nproc) - 1))"
    fi
    expand_cpus "$allowed"
}
