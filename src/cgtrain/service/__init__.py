"""Training as a service: REST job API, persistent queue, workers (see README "Training as a service")."""
