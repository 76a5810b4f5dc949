#!/usr/bin/env bash
# Pushes an OCI image layout's manifest byte for byte to a plain-HTTP registry with the
# Registry API (monolithic blob uploads streamed from disk, then the manifest) — unlike skopeo,
# which may recompress layers on the way. Used by images.sh --push and cold_start.sh.
#
#   push.sh HOST:PORT LAYOUT REPO:TAG     (the layout's first manifest; prints its digest)
set -euo pipefail
[[ $# -eq 3 ]] || { echo "usage: push.sh HOST:PORT LAYOUT REPO:TAG" >&2; exit 2; }
reg=$1 layout=$2 repo=${3%:*} tag=${3##*:}
manifest=$(jq -r '.manifests[0].digest' "$layout/index.json")
mfile=$layout/blobs/sha256/${manifest#sha256:}
for digest in $(jq -r '.config.digest, .layers[].digest' "$mfile"); do
  # Skip blobs the registry already has (a shared base layer, a rerun).
  if curl -sf -o /dev/null -I "http://$reg/v2/$repo/blobs/$digest"; then continue; fi
  location=$(curl -sSf -X POST -D - -o /dev/null "http://$reg/v2/$repo/blobs/uploads/" |
    tr -d '\r' | awk 'tolower($1) == "location:" {print $2}')
  [[ $location == http* ]] || location=http://$reg$location
  [[ $location == *\?* ]] && location+="&digest=$digest" || location+="?digest=$digest"
  curl -sSf -T "$layout/blobs/sha256/${digest#sha256:}" \
    -H 'Content-Type: application/octet-stream' "$location" >/dev/null
done
curl -sSf -X PUT -H "Content-Type: $(jq -r .mediaType "$mfile")" --data-binary "@$mfile" \
  "http://$reg/v2/$repo/manifests/$tag" >/dev/null
echo "$manifest"
