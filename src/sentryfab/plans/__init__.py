"""Pure plans: rollout batches, deploy order, failover steps, capacity math."""
