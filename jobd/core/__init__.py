"""Layer 0, pure: states and the transition table, errors, records, events, times, templating."""
