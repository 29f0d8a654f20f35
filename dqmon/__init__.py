"""dqmon: streaming data-quality and observability monitor."""
