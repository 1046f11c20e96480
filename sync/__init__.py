"""What runs a window against the API and the warehouse, with no Dagster in it: the window
sync (:mod:`sync.window`), the QA sample's draw (:mod:`sync.qa_sample`) and the saved
searches (:mod:`sync.saved_searches`). The assets (:mod:`assets`) call them; so do tests and
the benchmark, without a Dagster instance."""
