#!/bin/sh
# For ../shared/bench/peers.sh -m 'bench/peers-store-off.sh {config}': the project with the query history
# off. peers.sh generates the config; this appends `store: false` and becomes the server (exec), so
# peers.sh measures the server process itself.
printf 'store: false\n' >> "$1"
exec node dist/cli.js run --config "$1"
