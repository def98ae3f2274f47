"""What outlives a run: run history, incremental cursors and the dead-letter queue."""
