#!/usr/bin/env bash
# mpirun's remote shell for the namespace cluster (netns_cluster.sh): called as
# `rsh_agent.sh HOST COMMAND...` like ssh, it runs COMMAND in HOST's network and
# UTS namespaces. HOST is a cluster address (as the hostfile names hosts);
# ATTNRES_CLUSTER_DIR maps it to the namespaces (HOST.net, HOST.uts).
set -euo pipefail
host="$1"
shift
dir="${ATTNRES_CLUSTER_DIR:?rsh_agent.sh: ATTNRES_CLUSTER_DIR is not set}"
[ -e "$dir/$host.net" ] || { echo "rsh_agent.sh: no host '$host' in $dir" >&2; exit 255; }
# Like ssh: the words are joined and run by a shell on the remote host.
exec nsenter --net="$dir/$host.net" --uts="$dir/$host.uts" -- /bin/sh -c "$*"
