"""When and how things run: partitions, jobs, Definitions and the command line."""
