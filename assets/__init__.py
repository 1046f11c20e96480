"""What data exists: the sync assets that keep the warehouse tables in step with the API."""
