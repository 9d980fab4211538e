"""Scheduling: how trial-time is spent. The budget and its ledger, the plan a budget buys, and
which methods still receive trials (issue 26). Ray-free except the Tune adapters."""
