"""The edges of the system: the PolyAI API client and the warehouse, as Dagster resources."""
