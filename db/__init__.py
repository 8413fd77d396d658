"""Storage: models, sessions, queue operations and Δm.  Imports nothing else of ours."""
