#!/usr/bin/env bash
# Run by Snakemake inside the freshly created env (`--sdm conda`): installs this workflow's `pipeline`
# package, editable (code edits reach the env) and without dependencies (the env file pins them).
# Snakemake runs it from the working directory; set DSR_WORKFLOW_ROOT when that is not the workflow root.
set -euo pipefail
root=${DSR_WORKFLOW_ROOT:-$PWD}
if [ ! -f "$root/pyproject.toml" ] || [ ! -d "$root/pipeline" ]; then
	echo "post-deploy: $root is not the DSR workflow root (no pyproject.toml and pipeline/);" \
		"run snakemake from the repository root or set DSR_WORKFLOW_ROOT" >&2
	exit 1
fi
python -m pip install --no-deps --no-build-isolation --editable "$root"
