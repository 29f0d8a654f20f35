"""Checks across the datasets of a pipeline: end-to-end latency, reconciliation, online/offline parity.

They are declared in the pipeline's `links:` list, validated through their own registry
(`dqmon.registry.LINK_KINDS`), and judged by the runtime from what the datasets' micro-batches
already carry; their results are ordinary CheckResults on the downstream (or a pseudo-) dataset.
"""
