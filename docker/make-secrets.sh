#!/bin/sh
# Make the secrets docker/compose.yaml mounts, once: random values in docker/secrets/ (or
# the directory given as $1). An existing file is never replaced: a new master key would
# leave every sealed secret in the database unreadable, a new signing key would split the
# ledger's history. Back the directory up apart from the database.
set -eu
dir="${1:-$(dirname "$0")/secrets}"
mkdir -p "$dir"
# The directory keeps other host users out; the files are readable inside the containers,
# whose users (sluis 10001, postgres, grafana, prometheus) differ.
chmod 0700 "$dir"
umask 022

random_token() {
    head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'
}

make() {
    name="$1"
    shift
    if [ -e "$dir/$name" ]; then
        echo "kept    $dir/$name"
        return 0
    fi
    "$@" > "$dir/$name.new"
    mv "$dir/$name.new" "$dir/$name"
    echo "made    $dir/$name"
}

make master_key sh -c 'head -c 32 /dev/urandom | base64'
make admin_token random_token
make metrics_token random_token
make db_password random_token
make grafana_admin_password random_token
make ledger-signing.key openssl genpkey -algorithm ed25519
