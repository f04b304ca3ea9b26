"""The eight allocation steps as a durable workflow, and the SSH work they do."""
