"""Customer engagement (seed 004): profiles, wallet, tiers, tags, events, campaigns and logs."""
