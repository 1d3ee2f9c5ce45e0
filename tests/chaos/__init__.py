"""Tasks for the chaos suite (`python -m scripts.chaos`, `make chaos`): one per front door,
recording runs."""
