"""The pure core of polyai-sync: configuration, time windows, the API contract, the warehouse
schema and page normalization. Nothing here imports Dagster, opens a socket or a database, so
every piece can be tested and benchmarked on its own."""
