"""Shared pieces every stage uses: errors, artifacts and manifests, data, models, metrics."""
